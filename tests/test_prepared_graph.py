"""prepare_graph / PreparedGraph: one check, components and renumbering, the same results as a plain W."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import mask_labels
from scipy.sparse.csgraph import connected_components
from sklearn.datasets import make_blobs

from graphzoo import PreparedGraph, UnlabelledComponentWarning, diffuse, diffuse_per_label, knn_graph, prepare_graph
from graphzoo.energies import check_graph
from graphzoo.energies._graph import graph_components
from graphzoo.graph_step import graph_step

ENERGIES = ["label_spreading", "laplace", "poisson", "poisson_mbo"]


@pytest.fixture(scope="module")
def two_blocks():
    """A 3-class kNN graph plus a disjoint copy of its first 40 nodes: 340 nodes, two or more components."""
    X, y = make_blobs(300, centers=3, cluster_std=2.0, random_state=0)
    W1 = knn_graph(X, 8, metric="euclidean", dtype=np.float64)
    W = sp.block_diag([W1, W1[:40, :40]]).tocsr()
    return W, np.concatenate([y, y[:40]])


@pytest.mark.parametrize("reorder", [False, True])
@pytest.mark.parametrize("energy", ENERGIES)
def test_prepared_graph_gives_bit_identical_results(two_blocks, energy, reorder):
    """Two label sets on one prepared graph (one reaching every component, one not) equal diffuse on W."""
    W, y = two_blocks
    G = prepare_graph(W, reorder=reorder)
    assert (G.order is not None) == reorder and G.shape == W.shape and G.nnz == W.nnz
    y_all = mask_labels(y, 3, seed=1)
    y_all[300:] = -1
    y_all[[300, 301, 305]] = y[[300, 301, 305]]  # the copy holds labels too (if its kNN block is connected)
    y_part = mask_labels(y[:300], 3, seed=2)
    y_part = np.concatenate([y_part, np.full(40, -1)])
    for ym in (y_all, y_part):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnlabelledComponentWarning)
            ref = diffuse(W, ym, energy, reorder=reorder)
            got = diffuse(G, ym, energy)
        np.testing.assert_array_equal(got.scores, ref.scores)
        np.testing.assert_array_equal(got.unreachable, ref.unreachable)
        assert got.n_iter == ref.n_iter
    assert got.unreachable[300:].all() and not got.unreachable[:300].any()


def test_prepared_graph_still_warns_about_unlabelled_components(two_blocks):
    W, y = two_blocks
    ym = np.concatenate([mask_labels(y[:300], 2, seed=0), np.full(40, -1)])
    with pytest.warns(UnlabelledComponentWarning, match="no labelled node"):
        diffuse(prepare_graph(W), ym)


def test_prepared_graph_in_diffuse_per_label_and_graph_step(two_blocks):
    W, y = two_blocks
    G = prepare_graph(W, reorder=True)
    rng = np.random.default_rng(0)
    lab = np.zeros(340, bool)
    lab[rng.choice(300, 30, replace=False)] = True
    Y = np.where(lab[:, None], (rng.random((340, 2)) < 0.5).astype(int), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnlabelledComponentWarning)
        for a, b in zip(diffuse_per_label(G, Y, "poisson"), diffuse_per_label(W, Y, "poisson", reorder=True)):
            np.testing.assert_array_equal(a.scores, b.scores)
        ym = np.where(lab, y, -1)
        ref = graph_step(None, ym, W=W, energy="label_spreading")
        G = prepare_graph(W)  # graph_step's own choice for a plain W ("auto": no renumbering at 340 nodes)
        got = graph_step(None, ym, W=G, energy="label_spreading")
    np.testing.assert_array_equal(got.proba, ref.proba)
    np.testing.assert_array_equal(got.certainty, ref.certainty)
    assert got.W is G.W and sp.issparse(got.W)  # the step hands back the plain graph


def test_prepare_graph_returns_a_prepared_graph_unless_asked_to_change_its_order(two_blocks):
    W, _ = two_blocks
    G = prepare_graph(W)  # 340 nodes: below REORDER_MIN_NODES, so no renumbering
    assert isinstance(G, PreparedGraph) and G.order is None and G.W_ordered is G.W
    assert prepare_graph(G) is G and prepare_graph(G, reorder=False) is G
    R = prepare_graph(G, reorder=True)
    assert R.order is not None and sorted(R.order) == list(range(340))
    np.testing.assert_array_equal(R.W_ordered.toarray(), W.toarray()[np.ix_(R.order, R.order)])
    assert check_graph(G) is G.W


def test_graph_components_are_the_undirected_components(rng):
    """Strongly connected components of a symmetric pattern = its connected components (same partition)."""
    A = sp.random(400, 400, density=0.004, random_state=1, format="csr")
    W = (A + A.T).tocsr()
    n_ref, ref = connected_components(W, directed=False)
    n, got = graph_components(W)
    assert n == n_ref > 5
    # Same partition: the map from one labelling to the other is a bijection.
    pairs = np.unique(np.stack([ref, got]), axis=1)
    assert pairs.shape[1] == n and len(np.unique(pairs[0])) == n and len(np.unique(pairs[1])) == n


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.nan, "NaN or inf"),
        (np.inf, "NaN or inf"),
        (-0.5, "negative weights"),
    ],
)
def test_prepare_graph_checks_like_diffuse(bad, message):
    W = sp.csr_matrix(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 2.0], [0.0, 2.0, 0.0]]))
    W.data[[0, 1]] = bad  # w_01 = w_10 = bad: symmetric, so only the value check can catch it
    with pytest.raises(ValueError, match=message):
        prepare_graph(W)
    W.data[:] = [1.0, 1.0, 2.0, 2.0]
    W.data[0] = 1.0 + 1e-3  # no longer symmetric
    with pytest.raises(ValueError, match="not symmetric"):
        prepare_graph(W)
    W.data[0] = 1.0 + 1e-12  # within the relative tolerance
    assert prepare_graph(W).n_components == 1
