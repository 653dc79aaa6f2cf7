"""graphzoo.acquisition: every strategy's contract (parametrised over the registry), what uncertainty and
diversity pick on a two-cluster problem, and the front door's refusals."""

from __future__ import annotations

import numpy as np
import pytest

from graphzoo.acquisition import ACQUISITION, Picks, acquire, margin_uncertainty
from graphzoo.graph_step import build_graph, graph_step


@pytest.fixture(scope="module")
def two_clusters():
    """Two overlapping 2-D Gaussian clusters at x = ±2 (boundary x = 0), 3 labels per class, kNN graph."""
    rng = np.random.default_rng(0)
    n = 300
    y = np.arange(n) % 2
    X = rng.normal(0, 1, (n, 2)) + np.where(y[:, None] == 0, [-2.0, 0.0], [2.0, 0.0])
    W = build_graph(X, n_neighbors=8, metric="euclidean")
    labelled = np.zeros(n, bool)
    for k in (0, 1):  # labels far from the boundary, so that the boundary is the uncertain region
        far = np.flatnonzero((y == k) & (np.abs(X[:, 0]) > 2.5))
        labelled[rng.choice(far, 3, replace=False)] = True
    step = graph_step(None, np.where(labelled, y, -1), W=W, n_classes=2, energy_params={"alpha": 0.99})
    return X, y, W, labelled, step.proba


@pytest.mark.parametrize("name", ACQUISITION.names())
def test_strategy_returns_n_distinct_unlabelled_candidates_deterministically(name, two_clusters):
    X, y, W, labelled, proba = two_clusters
    candidates = (np.arange(len(y)) % 3 != 0) & ~labelled  # a third of the nodes may not be picked (test split)
    picks = acquire(name, proba, W=W, Z=X, candidates=candidates, labelled=labelled, n=12, seed=3)
    assert isinstance(picks, Picks) and picks.index.shape == (12,) and picks.score.shape == (12,)
    assert len(np.unique(picks.index)) == 12
    assert candidates[picks.index].all() and not labelled[picks.index].any()
    assert np.isfinite(picks.score).all()
    again = acquire(name, proba, W=W, Z=X, candidates=candidates, labelled=labelled, n=12, seed=3)
    np.testing.assert_array_equal(picks.index, again.index)
    # A labelled node is never picked, even when the caller leaves it among the candidates.
    everyone = acquire(name, proba, W=W, Z=X, candidates=np.ones(len(y), bool), labelled=labelled, n=40, seed=0)
    assert not labelled[everyone.index].any()


def test_random_depends_on_the_seed(two_clusters):
    X, y, W, labelled, proba = two_clusters
    a = acquire("random", proba, W=W, candidates=~labelled, labelled=labelled, n=10, seed=0).index
    b = acquire("random", proba, W=W, candidates=~labelled, labelled=labelled, n=10, seed=1).index
    assert set(a) != set(b)


def test_margin_uncertainty_formula():
    P = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.7, 0.1]])
    np.testing.assert_allclose(margin_uncertainty(P), [1.0, 0.0, 1 - (0.7 - 0.2)])
    assert margin_uncertainty(np.ones((4, 1))).tolist() == [0, 0, 0, 0]


def test_uncertainty_picks_the_boundary(two_clusters):
    X, y, W, labelled, proba = two_clusters
    picks = acquire("uncertainty", proba, W=W, candidates=~labelled, labelled=labelled, n=10, seed=0)
    dist = np.abs(X[:, 0])  # distance to the boundary x = 0
    assert dist[picks.index].max() < np.quantile(dist[~labelled], 0.25)
    rand = acquire("random", proba, W=W, candidates=~labelled, labelled=labelled, n=10, seed=0)
    assert dist[picks.index].mean() < dist[rand.index].mean()
    assert (np.diff(picks.score) <= 0).all()  # best first


def test_diverse_picks_are_not_graph_neighbours_while_plain_uncertainty_picks_are(two_clusters):
    X, y, W, labelled, proba = two_clusters
    kw = dict(W=W, candidates=~labelled, labelled=labelled, n=10, seed=0)
    diverse = acquire("uncertainty_diverse", proba, **kw).index
    assert W[diverse][:, diverse].nnz == 0
    plain = acquire("uncertainty", proba, **kw).index
    assert W[plain][:, plain].nnz > 0  # the constraint does something on this problem
    dist = np.abs(X[:, 0])
    assert dist[diverse].mean() < np.median(dist[~labelled])  # still near the boundary


def test_diverse_fills_up_when_too_few_nodes_are_mutually_apart(two_clusters):
    X, y, W, labelled, proba = two_clusters
    picks = acquire("uncertainty_diverse", proba, W=W, candidates=~labelled, labelled=labelled, n=250, seed=0)
    assert len(np.unique(picks.index)) == 250


def test_model_change_matches_a_dense_reference_and_its_batch_is_sequential(two_clusters):
    """Pick 1 maximises u·‖Cv_k‖/(γ² + v_kᵀCv_k) computed densely; pick j+1 is pick 1 once picks 1..j
    are labelled."""
    X, y, W, labelled, proba = two_clusters
    m, g2 = 50, 0.5 ** 2
    d = np.asarray(W.sum(1)).ravel()
    L = np.eye(len(d)) - W.toarray() / np.sqrt(np.outer(d, d))  # 300 nodes: a dense reference is affordable
    lam, V = np.linalg.eigh(L)
    lam, V = lam[:m], V[:, :m]
    C = np.linalg.inv(np.diag(lam + 1e-3) + V[labelled].T @ V[labelled] / g2)
    CV = V @ C
    ref = margin_uncertainty(proba) * np.linalg.norm(CV, axis=1) / (g2 + np.einsum("ij,ij->i", CV, V))
    ref[labelled] = -np.inf
    cache: dict = {}
    kw = dict(W=W, candidates=~labelled, seed=0, cache=cache)
    batch = acquire("model_change", proba, labelled=labelled, n=4, **kw)
    assert batch.index[0] == np.argmax(ref)
    np.testing.assert_allclose(batch.score[0], ref.max(), rtol=1e-4)
    for j in range(1, 4):  # the covariance update does not depend on the (unknown) label
        lab = labelled.copy()
        lab[batch.index[:j]] = True
        one = acquire("model_change", proba, labelled=lab, n=1, **kw)
        assert one.index[0] == batch.index[j]
        np.testing.assert_allclose(one.score[0], batch.score[j], rtol=1e-6)
    assert any(k[0] == "spectrum" for k in cache)


@pytest.mark.parametrize("n, match", [(0, "positive integer"), (-3, "positive integer"), (2.5, "positive integer"),
                                      (10_000, "only .* unlabelled candidate")])
def test_acquire_refuses_a_bad_n(n, match, two_clusters):
    X, y, W, labelled, proba = two_clusters
    with pytest.raises(ValueError, match=match):
        acquire("uncertainty", proba, W=W, candidates=~labelled, labelled=labelled, n=n)


def test_acquire_refuses_unknown_names_and_bad_masks(two_clusters):
    X, y, W, labelled, proba = two_clusters
    with pytest.raises(ValueError, match="Did you mean 'uncertainty'"):
        acquire("uncertainty_", proba, W=W, candidates=~labelled, n=3)
    with pytest.raises(ValueError, match="boolean masks of shape"):
        acquire("random", proba, W=W, candidates=np.ones(5, bool), n=3)


def test_acquire_catches_a_strategy_that_picks_a_labelled_node(two_clusters):
    X, y, W, labelled, proba = two_clusters

    def cheat(proba, *, candidates, n, labelled, **_):
        return Picks(np.flatnonzero(labelled)[:n], np.zeros(n))

    with pytest.raises(RuntimeError, match="not 3 distinct candidates"):
        acquire(cheat, proba, W=W, candidates=~labelled, labelled=labelled, n=3)


@pytest.mark.parametrize("module", ["graphzoo.acquisition", "graphzoo.suggest"])
def test_importing_does_not_import_torch(module):
    """The strategies run on plain features; the command's module is imported by every ``graphzoo`` call."""
    import subprocess
    import sys

    code = f"import sys, {module}; sys.exit(1 if 'torch' in sys.modules else 0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"importing {module} imports torch{done.stderr[-500:]}"


# ----------------------------------------------------------------------------------------------
# simulate: labels revealed from the hidden truth round by round (graph only)
# ----------------------------------------------------------------------------------------------
def moons(seed: int, n: int = 600):
    """Two noisy moons, a random 70/30 candidate/test split and 2 start labels per class."""
    from sklearn.datasets import make_moons

    from graphzoo.acquisition import start_labels

    X, y = make_moons(n, noise=0.15, random_state=seed)
    rng = np.random.default_rng(seed)
    cand = rng.random(n) < 0.7
    return X, y, cand, ~cand, start_labels(y, cand, 2, rng)


def test_simulate_reveals_only_candidates_and_grows_by_batch():
    from graphzoo.acquisition import simulate

    X, y, cand, test, lab0 = moons(0, 300)
    seen = []

    def spy(proba, *, labelled, candidates, **kw):  # the strategy sees the mask of the labels revealed so far
        seen.append((labelled.copy(), candidates.copy()))
        return ACQUISITION.get("uncertainty")(proba, labelled=labelled, candidates=candidates, **kw)

    curve = simulate(spy, y, lab0, cand, test, Z=X, rounds=3, batch=7, n_neighbors=8, metric="euclidean",
                     energy_params={"alpha": 0.99})
    assert [r.n_labels for r in curve] == [4, 11, 18, 25] and len(seen) == 3
    for i, (lab, c) in enumerate(seen):
        assert lab.sum() == 4 + 7 * i and not (lab & test).any() and (lab <= cand).all()
        assert not (c & (test | lab)).any()  # neither a test image nor a labelled one can be picked
    assert all(0 <= r.accuracy <= 1 and 0 <= r.auc <= 1 for r in curve)
    with pytest.raises(ValueError, match="disjoint"):
        simulate("random", y, lab0, cand | test, test, Z=X, rounds=1, batch=2, metric="euclidean")
    with pytest.raises(ValueError, match="ask for fewer"):
        simulate("random", y, lab0, cand, test, Z=X, rounds=10, batch=100, metric="euclidean")


def test_uncertainty_beats_random_on_two_moons():
    """Test accuracy after 6 rounds of 3 labels (20 in all), mean over 4 seeds. Measured when written:
    uncertainty 0.98, random 0.94. (Averaged over the rounds, or with batches of 6, plain uncertainty
    is behind random after its first round: a batch of the most uncertain nodes sits in one stretch of
    the boundary; the last round is what the report's sentence compares too.)"""
    from graphzoo.acquisition import simulate

    last = {}
    for s in ("random", "uncertainty"):
        acc = []
        for seed in range(4):
            X, y, cand, test, lab0 = moons(seed)
            curve = simulate(s, y, lab0, cand, test, Z=X, rounds=6, batch=3, n_neighbors=10, metric="euclidean",
                             energy_params={"alpha": 0.99}, seed=seed)
            acc.append(curve[-1].accuracy)
        last[s] = np.mean(acc)
    assert last["uncertainty"] > last["random"] + 0.02, last
