"""Energies against dense closed-form solves, invariants, bad input, and every registered energy."""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import mask_labels
from scipy.sparse.csgraph import connected_components
from sklearn.datasets import make_blobs, make_moons

from graphzoo import ENERGIES, ConvergenceWarning, UnlabelledComponentWarning, diffuse, diffuse_per_label
from graphzoo import knn_graph as _knn_graph
from graphzoo.energies import fit_class_offsets, one_hot
from graphzoo.graph_step import graph_step

QUADRATIC = ["label_spreading", "laplace", "poisson"]
#: Every registered energy: one added with ``@ENERGIES.register`` is tested below without editing a list.
REGISTERED = ENERGIES.names()

# float64 graphs: these tests compare against dense solves to 1e-6 and beyond.
knn_graph = partial(_knn_graph, dtype=np.float64)


@pytest.fixture
def small_problem(rng):
    """A 60-node connected kNN graph with 3 classes, 2 labels each."""
    X, y = make_blobs(60, centers=3, cluster_std=2.5, random_state=3)
    W = knn_graph(X, 8, metric="euclidean")
    return W, mask_labels(y, 2, seed=0), y


def test_label_spreading_matches_dense_inverse(small_problem):
    W, y, _ = small_problem
    alpha = 0.9
    d = np.asarray(W.sum(1)).ravel()
    S = W.toarray() / np.sqrt(np.outer(d, d))
    expected = np.linalg.solve(np.eye(len(y)) - alpha * S, one_hot(y, 3))
    result = diffuse(W, y, "label_spreading", alpha=alpha, tol=1e-12)
    np.testing.assert_allclose(result.scores, expected, atol=1e-6)
    assert result.converged and result.n_iter > 0


def test_label_spreading_class_balanced_seeds(small_problem):
    W, y, _ = small_problem
    y = y.copy()
    y[np.flatnonzero(y == -1)[:4]] = 0  # class 0 now has 6 labels, others 2
    Y = one_hot(y, 3)
    Y /= Y.sum(0)
    d = np.asarray(W.sum(1)).ravel()
    S = W.toarray() / np.sqrt(np.outer(d, d))
    expected = np.linalg.solve(np.eye(len(y)) - 0.99 * S, Y)
    result = diffuse(W, y, "label_spreading", class_balanced=True, tol=1e-12)
    np.testing.assert_allclose(result.scores, expected, atol=1e-6)


def test_laplace_matches_dense_harmonic_solution(small_problem):
    W, y, _ = small_problem
    A = W.toarray()
    L = np.diag(A.sum(1)) - A
    u, l = y < 0, y >= 0
    Y = one_hot(y, 3)
    expected = Y.copy()
    expected[u] = np.linalg.solve(L[np.ix_(u, u)], A[np.ix_(u, l)] @ Y[l])
    result = diffuse(W, y, "laplace", tol=1e-12)
    np.testing.assert_allclose(result.scores, expected, atol=1e-6)
    np.testing.assert_allclose(result.scores.sum(1), 1, atol=1e-6)  # harmonic rows stay stochastic


def test_poisson_matches_dense_solve(small_problem):
    W, y, _ = small_problem
    A = W.toarray()
    d = A.sum(1)
    L = np.diag(d) - A
    Y = one_hot(y, 3)
    b = np.zeros_like(Y)
    b[y >= 0] = Y[y >= 0] - Y[y >= 0].mean(0)
    u = np.linalg.lstsq(L, b, rcond=None)[0]
    u -= (d @ u) / d.sum()  # the paper's centring: sum_i d_i u_i = 0
    result = diffuse(W, y, "poisson", tol=1e-12)
    np.testing.assert_allclose(result.scores, u, atol=1e-6)
    np.testing.assert_allclose(L @ result.scores, b, atol=1e-6)


def test_poisson_on_two_components_is_solved_per_component(rng):
    X1, y1 = make_blobs(40, centers=2, random_state=0)
    W1 = knn_graph(X1, 6, metric="euclidean")
    W = sp.block_diag([W1, W1]).tocsr()
    y = np.concatenate([mask_labels(y1, 2, 0), mask_labels(y1, 1, 1)])
    result = diffuse(W, y, "poisson", tol=1e-12)
    # Each block is an independent Poisson problem with its own source mean and centring.
    for block, yb in ((slice(0, 40), y[:40]), (slice(40, 80), y[40:])):
        alone = diffuse(W1, yb, "poisson", tol=1e-12)
        np.testing.assert_allclose(result.scores[block], alone.scores, atol=1e-6)


@pytest.mark.parametrize("energy", QUADRATIC)
def test_permutation_invariance(small_problem, rng, energy):
    W, y, _ = small_problem
    perm = rng.permutation(len(y))
    a = diffuse(W, y, energy, tol=1e-10).scores
    b = diffuse(W[perm][:, perm], y[perm], energy, tol=1e-10).scores
    np.testing.assert_allclose(a[perm], b, atol=1e-6)


@pytest.mark.parametrize("energy", QUADRATIC)
def test_every_energy_solves_separated_blobs(energy):
    X, y = make_blobs(400, centers=4, cluster_std=1.0, random_state=1)
    W = knn_graph(X, 10, metric="euclidean")
    pred = diffuse(W, mask_labels(y, 2, 0), energy).scores.argmax(1)
    assert (pred == y).mean() > 0.9


def test_poisson_beats_laplace_at_one_label_per_class():
    """The low-label-rate failure of Laplace learning that Poisson learning fixes (Calder 2020)."""
    # Overlapping blobs and the project's k = 50: the regime where Laplace's solution flattens
    # into spikes around the labels (measured: laplace ~0.69, poisson ~0.99 over 5 seeds).
    X, y = make_blobs(2000, centers=5, n_features=10, cluster_std=3.0, random_state=0)
    W = knn_graph(X, 50, metric="euclidean")
    acc = {e: [] for e in ("laplace", "poisson")}
    for seed in range(5):
        ym = mask_labels(y, 1, seed)
        for e in acc:
            acc[e].append((diffuse(W, ym, e).scores.argmax(1) == y)[ym < 0].mean())
    laplace, poisson = np.mean(acc["laplace"]), np.mean(acc["poisson"])
    print(f"1 label/class, 5 blobs in 10-d: laplace {laplace:.3f}, poisson {poisson:.3f}")
    assert poisson > laplace + 0.15
    assert poisson > 0.95


def test_poisson_component_with_one_labelled_class_gets_that_class():
    X, y = make_blobs(60, centers=2, random_state=0)
    W1 = knn_graph(X, 5, metric="euclidean")
    W = sp.block_diag([W1, W1]).tocsr()
    y_all = np.full(120, -1)
    y_all[:60] = mask_labels(y, 2, 0)
    y_all[60 + np.flatnonzero(y == 1)[0]] = 1  # the second copy only has a class-1 label
    res = diffuse(W, y_all, "poisson")
    assert (res.scores[60:].argmax(1) == 1).all()
    assert res.info["single_class_components"] == 1


def test_poisson_class_priors_match_requested_proportions():
    X, y = make_blobs([700, 300], n_features=4, cluster_std=2.5, random_state=2)
    W = knn_graph(X, 10, metric="euclidean")
    ym = mask_labels(y, 1, 0)
    res = diffuse(W, ym, "poisson", class_priors=np.array([0.7, 0.3]))
    frac = np.bincount(res.scores.argmax(1), minlength=2) / len(y)
    np.testing.assert_allclose(frac, [0.7, 0.3], atol=0.01)
    assert "class_offsets" in res.info


def test_fit_class_offsets_hits_priors(rng):
    scores = rng.normal(size=(1000, 3))
    offsets = fit_class_offsets(scores, np.array([0.5, 0.3, 0.2]))
    frac = np.bincount((scores + offsets).argmax(1), minlength=3) / 1000
    np.testing.assert_allclose(frac, [0.5, 0.3, 0.2], atol=0.01)


# ---------------------------------------------------------------- every registered energy
@pytest.fixture
def two_clusters():
    """Two separated clusters of 20 points in one connected 10-NN graph, 2 labels per cluster."""
    X, y = make_blobs(40, centers=[[-2, 1], [2, 1]], cluster_std=0.7, random_state=0)
    W = knn_graph(X, 10, metric="euclidean")
    assert connected_components(W)[0] == 1  # the energy must carry labels across one graph
    return X, W, mask_labels(y, 2, seed=0), y


@pytest.mark.parametrize("energy", REGISTERED)
def test_registered_energy_separates_two_clusters(two_clusters, energy):
    X, W, y, truth = two_clusters
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # default parameters: no iteration cap, no unreachable node
        res = diffuse(W, y, energy)
        step = graph_step(X, y, energy=energy, n_neighbors=10, metric="euclidean")
    assert res.scores.shape == (40, 2) and np.isfinite(res.scores).all()
    assert not res.unreachable.any()
    assert (res.scores.argmax(1) == truth).all()
    assert step.proba.shape == (40, 2) and np.isfinite(step.proba).all()
    np.testing.assert_allclose(step.proba.sum(1), 1)
    assert (step.predictions == truth).all() and step.reachable.all()
    assert ((step.certainty >= 0) & (step.certainty <= 1)).all() and step.certainty.max() > 0


@pytest.mark.parametrize("energy", REGISTERED)
def test_registered_energy_flags_an_unlabelled_component(two_clusters, energy):
    """A second copy of the graph without a label: flagged unreachable, finite scores, no NaN."""
    _, W1, y1, truth = two_clusters
    W = sp.block_diag([W1, W1]).tocsr()
    y = np.r_[y1, np.full(40, -1)]
    with pytest.warns(UnlabelledComponentWarning, match="40 of 80 nodes"):
        res = diffuse(W, y, energy)
    assert res.scores.shape == (80, 2) and np.isfinite(res.scores).all()
    assert res.unreachable[40:].all() and not res.unreachable[:40].any()
    assert (res.scores[40:] == 0).all()
    assert (res.scores[:40].argmax(1) == truth).all()
    with pytest.warns(UnlabelledComponentWarning):
        step = graph_step(None, y, energy=energy, W=W)
    assert not step.reachable[40:].any() and step.reachable[:40].all()
    assert (step.certainty[40:] == 0).all()
    # unreached nodes get the labelled class frequencies (2 and 2 labels here)
    np.testing.assert_allclose(step.proba[40:], 0.5)
    assert (step.predictions[:40] == truth).all()


def test_isolated_labelled_node_is_fine():
    W = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=float))
    res = diffuse(W, np.array([0, -1, 1]), "label_spreading")
    assert res.scores.argmax(1).tolist() == [0, 0, 1]


def test_convergence_warning_at_iteration_cap(small_problem):
    W, y, _ = small_problem
    with pytest.warns(ConvergenceWarning, match="iteration cap"):
        res = diffuse(W, y, "label_spreading", max_iter=2, tol=1e-14)
    assert not res.converged and res.n_iter == 2


def test_warm_start_cuts_iterations(small_problem):
    W, y, _ = small_problem
    cold = diffuse(W, y, "label_spreading", tol=1e-10)
    warm = diffuse(W, y, "label_spreading", tol=1e-10, x0=cold.scores)
    assert warm.n_iter < cold.n_iter // 2


def test_user_callable_energy(small_problem):
    W, y, _ = small_problem

    def nearest_label_energy(W, y, n_classes):
        return np.asarray(W @ one_hot(y, n_classes))  # a bare score array is accepted

    res = diffuse(W, y, nearest_label_energy)
    assert res.scores.shape == (len(y), 3) and res.converged


def test_registry_lookup_suggests_names():
    assert {"label_spreading", "laplace", "poisson"} <= set(ENERGIES.names())
    with pytest.raises(ValueError, match="Did you mean 'poisson'"):
        ENERGIES.get("poison")
    with pytest.raises(ValueError, match="already registered"):
        ENERGIES.register("poisson")(lambda *a: None)


@pytest.mark.parametrize(
    "y,kwargs,message",
    [
        (np.full(60, -1), {}, "no labelled node"),
        (np.r_[0, 1, np.full(58, -1)], {"n_classes": 3}, r"class\(es\) \[2\] have no labelled node"),
        (np.r_[0, 5, np.full(58, -1)], {"n_classes": 3}, "outside the 3 classes"),
        (np.r_[0, -2, np.full(58, -1)], {}, "below -1"),
        (np.zeros(59, dtype=int), {}, "shape"),
    ],
)
def test_bad_labels(small_problem, y, kwargs, message):
    W, _, _ = small_problem
    with pytest.raises(ValueError, match=message):
        diffuse(W, y, **kwargs)


def test_bad_graphs():
    y = np.array([0, -1])
    with pytest.raises(TypeError, match="sparse"):
        diffuse(np.ones((2, 2)), y)
    with pytest.raises(ValueError, match="not symmetric"):
        diffuse(sp.csr_matrix(np.array([[0.0, 1.0], [0.0, 0.0]])), y)
    with pytest.raises(ValueError, match="negative"):
        diffuse(sp.csr_matrix(np.array([[0.0, -1.0], [-1.0, 0.0]])), y)
    with pytest.raises(ValueError, match="alpha"):
        diffuse(sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 0.0]])), y, alpha=1.0)


def test_moons_one_label_per_class_report():
    """Not a threshold test: prints the numbers quoted in the docs (two moons, 1 label/class)."""
    X, y = make_moons(1000, noise=0.1, random_state=0)
    W = knn_graph(X, 10, metric="euclidean")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no solver may hit its cap here
        for e in QUADRATIC:
            accs = [(diffuse(W, mask_labels(y, 1, s), e).scores.argmax(1) == y).mean() for s in range(10)]
            print(f"moons {e}: {np.mean(accs):.3f} ± {np.std(accs):.3f}")
            assert np.mean(accs) > 0.5


@pytest.mark.parametrize("energy", QUADRATIC)
def test_locality_reordering_does_not_change_results(energy):
    X, y = make_blobs(500, centers=3, cluster_std=2.0, random_state=0)
    W = knn_graph(X, 10, metric="euclidean")
    ym = mask_labels(y, 2, 0)
    x0 = {"x0": np.full((500, 3), 0.1)} if energy == "label_spreading" else {}
    a = diffuse(W, ym, energy, reorder=False, tol=1e-10, **x0).scores
    b = diffuse(W, ym, energy, reorder=True, tol=1e-10, **x0).scores
    np.testing.assert_allclose(a, b, atol=1e-7)


def test_induced_subgraph_matches_fancy_indexing(rng):
    from graphzoo.energies import induced_subgraph

    W = knn_graph(rng.normal(size=(200, 3)), 6, metric="euclidean")
    subsets = (rng.permutation(200), np.sort(rng.choice(200, 70, replace=False)), rng.choice(200, 70, replace=False))
    for nodes in subsets:
        expected = W[nodes][:, nodes].toarray()
        np.testing.assert_array_equal(induced_subgraph(W, nodes).toarray(), expected)


def test_float32_graph_gives_float32_label_spreading(small_problem):
    W, y, _ = small_problem
    X, _ = make_blobs(60, centers=3, cluster_std=2.5, random_state=3)
    assert _knn_graph(X, 8).dtype == np.float32  # the default graph precision
    ref = diffuse(W, y, "label_spreading", tol=1e-10).scores
    res = diffuse(W.astype(np.float32), y, "label_spreading", tol=1e-5)
    assert res.scores.dtype == np.float32
    np.testing.assert_allclose(res.scores, ref, atol=1e-4)
    assert (res.scores.argmax(1) == ref.argmax(1)).all()


@pytest.mark.parametrize("reorder", [False, True])
def test_diffuse_per_label_matches_diffuse_per_column(reorder):
    """Multi-label: one shared check / components / renumbering, the same result as L diffuse calls,
    unlabelled components included; None for a label with a single value among the labelled nodes."""
    rng = np.random.default_rng(0)
    X, _ = make_blobs(60, centers=3, random_state=1)
    W1 = knn_graph(X, 6, metric="euclidean")
    W = sp.block_diag([W1, W1]).tocsr()  # the second copy has no labelled node
    Y = (rng.random((120, 3)) < 0.4).astype(int)
    Y[:, 2] = 1
    lab = np.zeros(120, bool)
    lab[rng.choice(60, 20, replace=False)] = True
    Ym = np.where(lab[:, None], Y, -1)
    with pytest.warns(UnlabelledComponentWarning):
        out = diffuse_per_label(W, Ym, "poisson", reorder=reorder)
    assert out[2] is None and len(out) == 3
    for j in (0, 1):
        with pytest.warns(UnlabelledComponentWarning):
            ref = diffuse(W, Ym[:, j], "poisson", n_classes=2, reorder=reorder)
        np.testing.assert_allclose(out[j].scores, ref.scores, atol=1e-12)
        assert (out[j].unreachable == ref.unreachable).all() and out[j].unreachable[60:].all()
    Ybad = Ym.copy()
    Ybad[~lab, 1] = 0
    with pytest.raises(ValueError, match="same rows unlabelled"):
        diffuse_per_label(W, Ybad)
    with pytest.raises(ValueError, match="0 / 1"):
        diffuse_per_label(W, np.where(lab[:, None], 2 * Y, -1))
