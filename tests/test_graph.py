"""kNN search and graph construction against brute force."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist

from graphzoo import knn_graph, knn_search
from graphzoo.graph import edge_weights
from graphzoo.graph import faiss as _faiss

# faiss is a core dependency, but the library runs without it (the numpy / torch paths): where it is
# missing (a GPU machine's own Python, say) its tests skip instead of failing.
needs_faiss = pytest.mark.skipif(_faiss is None, reason="faiss is not installed: pip install faiss-cpu")


def brute_force(X, k, metric):
    D = cdist(X, X, metric=metric)
    np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, idx, axis=1), idx


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("backend", ["numpy", pytest.param("faiss", marks=needs_faiss)])
def test_knn_search_matches_brute_force(rng, metric, backend):
    X = rng.normal(size=(300, 16))
    dist, idx = knn_search(X, 7, metric=metric, backend=backend)
    ref_dist, ref_idx = brute_force(X, 7, metric)
    assert dist.dtype == np.float32 and idx.dtype == np.int64 and idx.shape == (300, 7)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    # Continuous random data has no ties, so the neighbour sets agree exactly.
    assert (np.sort(idx, 1) == np.sort(ref_idx, 1)).all()
    assert not (idx == np.arange(300)[:, None]).any(), "a point must not be its own neighbour"


@needs_faiss
def test_knn_search_numpy_blocks_agree_with_faiss(rng, monkeypatch):
    import graphzoo.graph as graph

    X = rng.normal(size=(500, 8))
    monkeypatch.setattr(graph, "_BLOCK_BYTES", 4 * 500 * 37)  # 37 queries per block: ragged last block
    d1, i1 = knn_search(X, 5, backend="numpy", metric="euclidean")
    d2, i2 = knn_search(X, 5, backend="faiss", metric="euclidean")
    np.testing.assert_allclose(d1, d2, atol=1e-4)
    assert (i1 == i2).all()


@needs_faiss
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_blocked_self_search_matches_brute_force(rng, monkeypatch, metric):
    """The faiss self-search over the upper block triangle of X Xᵀ (ragged last block, offers
    pushed to the column heaps) finds the brute-force neighbours, self excluded."""
    import graphzoo.graph as graph

    monkeypatch.setattr(graph, "_SELF_BLOCK", 37)
    X = rng.normal(size=(400, 12))
    X[:40] *= 0.2  # a tight cluster: its rows get many offers from other blocks' columns
    dist, idx = knn_search(X, 9, metric=metric, backend="faiss")
    ref_dist, ref_idx = brute_force(X, 9, metric)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-4)
    assert (np.sort(idx, 1) == np.sort(ref_idx, 1)).all()
    assert (np.diff(dist, axis=1) >= 0).all(), "nearest first"


@needs_faiss
def test_blocked_self_search_excludes_self_among_many_duplicates(rng, monkeypatch):
    import graphzoo.graph as graph

    monkeypatch.setattr(graph, "_SELF_BLOCK", 16)
    X = np.vstack([np.tile(rng.normal(size=(1, 5)), (30, 1)), rng.normal(size=(70, 5))])
    for metric in ("cosine", "euclidean"):
        dist, idx = knn_search(X, 6, metric=metric, backend="faiss")
        assert not (idx == np.arange(100)[:, None]).any()
        assert (idx[:30] < 30).all() and np.allclose(dist[:30], 0, atol=1e-3)


def test_knn_search_with_queries_and_duplicates(rng):
    X = rng.normal(size=(50, 4))
    X[1] = X[0]  # exact duplicate: must still exclude the point itself, not its twin
    dist, idx = knn_search(X, 3, metric="euclidean")
    assert idx[0, 0] == 1 and idx[1, 0] == 0 and dist[0, 0] == 0
    q = X[:5] + 1e-3
    _, qidx = knn_search(X, 1, queries=q, metric="euclidean")
    assert qidx[2, 0] == 2


@needs_faiss
def test_approximate_search_has_high_recall(rng):
    X = rng.normal(size=(2000, 16)).astype(np.float32)
    _, exact = knn_search(X, 10)
    _, approx = knn_search(X, 10, method="approximate")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, approx)])
    assert recall > 0.9


@pytest.mark.parametrize("symmetrize", ["sum", "max", "mean"])
@pytest.mark.parametrize(
    "metric,weight", [("cosine", "cosine"), ("euclidean", "self_tuning"), ("euclidean", "uniform")]
)
def test_knn_graph_invariants_and_weights(rng, symmetrize, metric, weight):
    X = rng.normal(size=(120, 6))
    k = 5
    W = knn_graph(X, k, metric=metric, weight=weight, symmetrize=symmetrize)
    assert sp.isspmatrix_csr(W) and W.shape == (120, 120)
    assert abs(W - W.T).max() < 1e-12
    assert W.diagonal().max() == 0
    assert W.data.min() > 0

    # Rebuild the directed kNN weights densely (fine at n = 120) and symmetrise by hand.
    ref_dist, ref_idx = brute_force(X, k, metric)
    A = np.zeros((120, 120))
    np.put_along_axis(A, ref_idx, edge_weights(ref_dist, weight, metric=metric), axis=1)
    expected = {"sum": A + A.T, "max": np.maximum(A, A.T), "mean": (A + A.T) / 2}[symmetrize]
    np.testing.assert_allclose(W.toarray(), expected, atol=1e-5)


def test_cosine_weight_formula():
    # Two points at 60 degrees: cos = 0.5, weight = 0.5**3
    w = edge_weights(np.array([[0.5]]), "cosine", gamma=3)
    assert w[0, 0] == pytest.approx(0.125)
    # Negative similarity is clipped to zero weight (LP-DeepSSL's max(s, 0)).
    assert edge_weights(np.array([[1.5]]), "cosine")[0, 0] == 0


def test_self_tuning_weight_formula():
    dist = np.array([[1.0, 2.0]])
    w = edge_weights(dist, "self_tuning")
    np.testing.assert_allclose(w, np.exp(-4 * (dist / 2.0) ** 2))


def test_precomputed_neighbours_skip_search(rng):
    X = rng.normal(size=(60, 3))
    knn = knn_search(X, 4, metric="euclidean")
    W1 = knn_graph(X, 4, metric="euclidean")
    W2 = knn_graph(knn=knn, metric="euclidean")
    assert abs(W1 - W2).max() < 1e-12


def test_graph_is_permutation_equivariant(rng):
    X = rng.normal(size=(80, 5))
    perm = rng.permutation(80)
    W = knn_graph(X, 6, metric="euclidean")
    Wp = knn_graph(X[perm], 6, metric="euclidean")
    assert abs(W[perm][:, perm] - Wp).max() < 1e-6


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(X=np.zeros((10, 2)) + np.nan), "NaN"),
        (dict(X=np.ones((10, 2)), n_neighbors=10), "too large"),
        (dict(X=np.ones((10,))), "2-D"),
        (dict(X=np.vstack([np.zeros((1, 2)), np.ones((9, 2))])), "all-zero rows"),
        (dict(X=np.ones((10, 2)), metric="manhattan"), "metric"),
    ],
)
def test_bad_input_is_named(kwargs, message):
    X = kwargs.pop("X")
    k = kwargs.pop("n_neighbors", 3)
    with pytest.raises(ValueError, match=message):
        knn_search(X, k, **kwargs)


@pytest.mark.parametrize("fmt", ["csr", "coo"])
def test_sparse_features_are_refused_with_the_way_out(rng, fmt):
    """Issue 11 #11: a sparse matrix used to become a 0-d object array ("got shape ()")."""
    W = sp.random(30, 30, density=0.2, format=fmt, random_state=0)
    with pytest.raises(ValueError) as err:
        knn_graph(W, 5)
    message = str(err.value)
    assert "X is a scipy sparse matrix" in message and "dense (n, d) features" in message
    assert "GraphSSLClassifier(metric='precomputed')" in message and "knn=(dist, idx)" in message
    assert "shape ()" not in message
    with pytest.raises(ValueError, match="queries is a scipy sparse matrix"):
        knn_search(rng.normal(size=(30, 4)), 5, queries=sp.csr_matrix(rng.normal(size=(3, 4))))


def test_bad_precomputed_neighbours():
    with pytest.raises(ValueError, match="equal shape"):
        knn_graph(knn=(np.zeros((5, 2)), np.zeros((5, 3), dtype=int)))
    with pytest.raises(ValueError, match="indices"):
        knn_graph(knn=(np.zeros((5, 2)), np.full((5, 2), 9)))


def test_graph_core_does_not_import_torch():
    code = "import sys, graphzoo, graphzoo.classifier, graphzoo.energies; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
