"""The device kNN path (graphzoo.knn_device) run on the CPU, against brute force and the CPU engines."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from graphzoo import graph_step, knn_search

torch = pytest.importorskip("torch")
import graphzoo.knn_device as knn_device  # noqa: E402


def points_with_duplicates(rng, n=500, d=12):
    """n points in d dims; 40 of them are 20 exact twin pairs, so some neighbours tie at distance 0."""
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[n - 20 :] = X[:20]
    return X


def assert_same_neighbours(dist, idx, D, k, metric, self_query=True, tol=1e-4):
    """``(dist, idx)`` is *a* correct exact top-k of the dense distances ``D`` (float64): the same
    sorted distances as brute force, every index really at its reported distance, no repeats, no self.
    Which of several tied points fills the last places is not fixed, as on the CPU paths.

    Euclidean distances are compared squared: ‖q‖² - 2 q·x + ‖x‖² in float32 has an absolute error
    near eps·‖x‖² (1e-6 here), which the square root turns into 1e-3 for twins at distance 0.
    """
    if metric == "euclidean":
        dist, D = dist.astype(np.float64) ** 2, D**2
    D = D.copy()
    if self_query:
        np.fill_diagonal(D, np.inf)
    ref_idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    ref_dist = np.take_along_axis(D, ref_idx, axis=1)
    assert dist.shape == idx.shape == (len(D), k) and idx.dtype == np.int64
    np.testing.assert_allclose(dist, ref_dist, atol=tol)
    np.testing.assert_allclose(np.take_along_axis(D, idx, axis=1), dist, atol=tol)
    assert (np.diff(np.sort(idx, 1), axis=1) > 0).all(), "a neighbour listed twice"
    # Where no tie straddles the k-th place, the neighbour sets are the brute-force ones exactly.
    clear = D[np.arange(len(D)), np.argsort(D, 1)[:, k]] - ref_dist[:, -1] > 10 * tol
    assert (np.sort(idx[clear], 1) == np.sort(ref_idx[clear], 1)).all()


def dense_distances(X, metric):
    return cdist(X.astype(np.float64), X.astype(np.float64), metric=metric)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("k", [1, 10])
def test_torch_search_matches_brute_force_and_the_cpu_engines(rng, metric, k):
    X = points_with_duplicates(rng)
    D = dense_distances(X, metric)
    info = {}
    dist, idx = knn_search(X, k, metric=metric, backend="torch", info=info)
    assert info["backend"] == "torch:cpu"
    assert dist.dtype == np.float32
    assert_same_neighbours(dist, idx, D, k, metric)
    assert not (idx == np.arange(len(X))[:, None]).any(), "a point must not be its own neighbour"
    twins = np.r_[np.arange(480, 500), np.arange(20)]  # each twin's nearest neighbour is its twin, at 0
    assert (idx[np.r_[np.arange(20), np.arange(480, 500)], 0] == twins).all()
    assert np.allclose(dist[:20, 0], 0, atol=2e-3)
    import graphzoo.graph as graph  # faiss is optional: compare with it where it is installed

    for backend in ("numpy", "faiss") if graph.faiss is not None else ("numpy",):
        d_cpu, i_cpu = knn_search(X, k, metric=metric, backend=backend)
        np.testing.assert_allclose(dist.astype(float) ** 2, d_cpu.astype(float) ** 2, atol=1e-5)
        differ = idx != i_cpu  # only between equally distant points
        np.testing.assert_allclose(np.take_along_axis(D, idx, 1)[differ], np.take_along_axis(D, i_cpu, 1)[differ],
                                   atol=1e-4)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_torch_search_with_queries(rng, metric):
    X = points_with_duplicates(rng, n=300)
    Q = np.vstack([X[:10], rng.normal(size=(25, 12)).astype(np.float32)])  # some queries sit on points
    X.setflags(write=False)  # e.g. memory-mapped features: torch must not warn about wrapping them
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dist, idx = knn_search(X, 6, queries=Q, metric=metric, backend="torch")
    D = cdist(Q.astype(np.float64), X.astype(np.float64), metric=metric)
    assert_same_neighbours(dist, idx, D, 6, metric, self_query=False)
    assert np.allclose(dist[:10, 0], 0, atol=2e-3) and set(idx[:10, :2].ravel()) >= set(range(10))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_blocked_torch_search_equals_unblocked(rng, monkeypatch, metric):
    """7 queries per block (ragged last block): the self-exclusion on each block's shifted diagonal
    and the stitching of blocks give the one-block result."""
    X = points_with_duplicates(rng)
    whole = knn_search(X, 10, metric=metric, backend="torch")
    monkeypatch.setattr(knn_device, "_BLOCK_BYTES", 4 * len(X) * 7)
    dist, idx = knn_search(X, 10, metric=metric, backend="torch")
    np.testing.assert_allclose(dist.astype(float) ** 2, whole[0].astype(float) ** 2, rtol=1e-6, atol=1e-5)
    assert_same_neighbours(dist, idx, dense_distances(X, metric), 10, metric)
    differ = idx != whole[1]
    assert differ.mean() < 0.01, "blocks changed more than the order of tied points"


def test_equal_distances_come_in_index_order():
    """Exact ties (integer points, exact arithmetic) are ordered by index, as a stable sort would."""
    X = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [5, 5]], dtype=np.float32)
    dist, idx = knn_search(X, 4, metric="euclidean", backend="torch")
    assert idx[0].tolist() == [1, 2, 3, 4] and np.allclose(dist[0], 1)


@pytest.fixture
def no_gpu(monkeypatch):
    """Behave as on a machine without a GPU, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(knn_device, "_faiss_gpus", lambda faiss: 0)


def test_cuda_without_a_gpu_is_a_clear_error(rng, no_gpu):
    X = rng.normal(size=(50, 4))
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=r"sees no CUDA GPU.*device='cpu'.*device='auto'"):
            knn_search(X, 3, device=device)
    with pytest.raises(ValueError, match=r"sees no Apple GPU"):
        knn_search(X, 3, device="mps")


def test_auto_device_without_a_gpu_runs_the_cpu_path(rng, no_gpu):
    X = rng.normal(size=(80, 5))
    info = {}
    dist, idx = knn_search(X, 4, device="auto", info=info)
    assert info["backend"] in ("faiss:cpu", "numpy:cpu")
    d_cpu, i_cpu = knn_search(X, 4)
    assert (idx == i_cpu).all() and (dist == d_cpu).all()
    knn_search(X, 4, device="auto", backend="torch", info=info)
    assert info["backend"] == "torch:cpu"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(device="gpu"), r"device='gpu' is not one of"),
        (dict(device="cuda", backend="numpy"), r"backend='numpy' runs on the CPU only"),
        (dict(device="cuda", backend="faiss"), r"needs a faiss build with GPU support.*backend='auto' or 'torch'"),
        (dict(device="cuda", method="approximate"), r"runs on the CPU only.*method='exact'"),
        (dict(backend="torch", method="approximate"), r"runs on the CPU only"),
    ],
)
def test_bad_device_requests_are_named(rng, no_gpu, kwargs, message):
    with pytest.raises(ValueError, match=message):
        knn_search(rng.normal(size=(30, 3)), 2, **kwargs)


def test_plan_prefers_faiss_gpu_where_faiss_has_one(no_gpu, monkeypatch):
    monkeypatch.setattr(knn_device, "_faiss_gpus", lambda faiss: 2)
    assert knn_device.plan_device("auto", "exact", "cuda:1", 51, None) == ("faiss", "cuda:1")
    assert knn_device.plan_device("faiss", "exact", "auto", 51, None) == ("faiss", "cuda:0")
    # k beyond faiss's GPU selection, an index faiss does not see, or torch asked for: the torch path
    for backend, device, k in [("auto", "cuda", 2000), ("auto", "cuda:2", 51), ("torch", "cuda", 51)]:
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            knn_device.plan_device(backend, "exact", device, k, None)


def test_faiss_gpu_glue_with_a_stand_in_index(rng, monkeypatch):
    """The faiss-GPU branch of knn_search (k + 1 search, own index dropped among duplicates), with
    faiss's CPU flat index standing in for the GPU one: this machine's faiss has no GPU build."""
    import types

    import graphzoo.graph as graph

    faiss = pytest.importorskip("faiss")
    made = []
    stand_in = types.SimpleNamespace(
        StandardGpuResources=lambda: None, get_num_gpus=lambda: 1, GpuIndexFlatConfig=types.SimpleNamespace,
        GpuIndexFlatIP=lambda res, d, config: made.append(config.device) or faiss.IndexFlatIP(d),
        GpuIndexFlatL2=lambda res, d, config: made.append(config.device) or faiss.IndexFlatL2(d))
    monkeypatch.setattr(graph, "faiss", stand_in)
    X = points_with_duplicates(rng, n=200)
    for metric in ("cosine", "euclidean"):
        info = {}
        dist, idx = knn_search(X, 5, metric=metric, device="cuda", info=info)
        assert info["backend"] == "faiss:cuda:0" and made[-1] == 0
        assert_same_neighbours(dist, idx, dense_distances(X, metric), 5, metric)
        assert not (idx == np.arange(200)[:, None]).any()


def test_full_fp32_restores_the_callers_matmul_precision(rng):
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")  # what a mixed-precision training loop may set
    try:
        knn_search(rng.normal(size=(40, 4)), 3, backend="torch")
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_graph_step_reports_the_knn_backend(rng):
    Z = rng.normal(size=(60, 5))
    y = np.full(60, -1)
    y[:3], y[3:6] = 0, 1
    step = graph_step(Z, y, n_neighbors=5, device="cpu", backend="torch")
    assert step.info["knn_backend"] == "torch:cpu"
    assert graph_step(Z, y, n_neighbors=5).info["knn_backend"] in ("faiss:cpu", "numpy:cpu")
    assert graph_step(None, y, W=step.W).info["knn_backend"] is None
