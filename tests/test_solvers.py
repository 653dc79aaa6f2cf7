"""The graph core's fast paths: threaded sparse products, float32 solves, blocked CG buffers, coupled block CG."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import make_blobs

import graphzoo.energies._solvers as solvers
from graphzoo import knn_graph
from graphzoo.energies import diffuse
from graphzoo.energies._solvers import SparseProduct, block_cg, coupled_block_cg


@pytest.fixture
def graph64():
    X, y = make_blobs(600, centers=4, cluster_std=2.0, random_state=0)
    W = knn_graph(X, 10, metric="euclidean", dtype=np.float64)
    rng = np.random.default_rng(0)
    y_lab = np.full(600, -1)
    for c in range(4):
        y_lab[rng.choice(np.flatnonzero(y == c), 3, replace=False)] = c
    return W, y_lab, y


@pytest.mark.parametrize("n_threads", [2, 3, 7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threaded_product_equals_plain_product(monkeypatch, graph64, n_threads, dtype):
    monkeypatch.setattr(solvers, "MIN_NNZ_PER_THREAD", 100)
    W = graph64[0].astype(dtype)
    P = np.random.default_rng(1).normal(size=(600, 5)).astype(dtype)
    prod = SparseProduct(W, n_threads=n_threads)
    assert len(prod.blocks) == n_threads
    # Each row is summed in scipy's order: bit-identical, not just close.
    np.testing.assert_array_equal(prod(P), W @ P)
    np.testing.assert_array_equal(prod(2 * P), W @ (2 * P))  # the reused buffer is rewritten
    with pytest.raises(TypeError, match="dtype"):
        prod(P.astype(np.float64 if dtype == np.float32 else np.float32))


def test_small_products_stay_on_one_thread(graph64):
    assert len(SparseProduct(graph64[0], n_threads=8).blocks) == 1  # 600 rows: splitting costs more


def test_block_cg_matches_dense_solve_with_preconditioner_and_warm_start():
    rng = np.random.default_rng(2)
    M = rng.normal(size=(40, 40))
    A = M @ M.T + 40 * np.eye(40)
    B = rng.normal(size=(40, 3))
    ref = np.linalg.solve(A, B)
    for x0 in (None, ref + 1e-3):
        X, n_iter, res, ok = block_cg(lambda P: A @ P, B, precond=1 / np.diag(A), x0=x0, tol=1e-12, max_iter=200)
        assert ok and res <= 1e-12
        np.testing.assert_allclose(X, ref, atol=1e-10)


@pytest.mark.parametrize("energy", ["label_spreading", "laplace", "poisson"])
def test_float32_graph_solves_agree_with_float64(monkeypatch, graph64, energy):
    """The float32 path (threaded products, float32 vectors, float64 step sizes) gives the float64
    answer up to its tolerance, and the same predictions."""
    monkeypatch.setattr(solvers, "MIN_NNZ_PER_THREAD", 1000)  # exercise the threaded product too
    W, y_lab, _ = graph64
    ref = diffuse(W, y_lab, energy, tol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default tolerance must be reached in float32
        res = diffuse(W.astype(np.float32), y_lab, energy)
    assert res.scores.dtype == np.float32 and res.converged
    scale = np.abs(ref.scores).max()
    np.testing.assert_allclose(res.scores, ref.scores, atol=1e-4 * scale)
    assert (res.scores.argmax(1) == ref.scores.argmax(1)).mean() > 0.995


def test_float32_poisson_reaches_tight_tolerance_on_two_components(graph64):
    """Rounding drifts a float32 residual into L's null space (constants per component); without
    projecting it out, CG stalled near 1e-6 for hundreds of iterations."""
    W, y_lab, _ = graph64
    W2 = sp.block_diag([W, W]).tocsr().astype(np.float32)
    y2 = np.r_[y_lab, y_lab]
    res = diffuse(W2, y2, "poisson", tol=1e-6, reorder=False)
    ref = diffuse(W2.astype(np.float64), y2, "poisson", tol=1e-6, reorder=False)
    assert res.converged and res.n_iter <= ref.n_iter + 5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_graph_without_edges_keeps_the_labels(dtype):
    y = np.array([0, -1, 1, -1])
    res = diffuse(sp.csr_matrix((4, 4), dtype=dtype), y, "label_spreading", reorder=False)
    np.testing.assert_array_equal(res.scores, [[1, 0], [0, 0], [0, 1], [0, 0]])


def _spd(n: int, seed: int) -> np.ndarray:
    M = np.random.default_rng(seed).normal(size=(n, n))
    return M @ M.T / n + 0.05 * np.eye(n)  # condition number in the hundreds


def test_coupled_block_cg_matches_dense_solve_from_zero_and_warm_start():
    A = _spd(80, 3)
    B = np.random.default_rng(4).normal(size=(80, 5))
    ref = np.linalg.solve(A, B)
    for x0 in (None, ref + 1e-3):
        X, n_iter, res, ok = coupled_block_cg(lambda P: A @ P, B, x0=x0, tol=1e-12, max_iter=200)
        assert ok and res <= 1e-12
        np.testing.assert_allclose(X, ref, atol=1e-9)
    # Every column's step uses all 5 columns' directions: the block Krylov space after j steps has
    # dimension 5j, so it needs far fewer steps than one CG recursion per column.
    _, per_column_iter, _, _ = block_cg(lambda P: A @ P, B, tol=1e-12, max_iter=200)
    assert n_iter < per_column_iter


def test_coupled_block_cg_with_dependent_and_zero_columns():
    """Equal columns, a zero column and more columns than unknowns: the block shrinks instead of
    dividing by zero, and every column is still solved."""
    A = _spd(30, 5)
    b = np.random.default_rng(6).normal(size=(30, 1))
    B = np.hstack([b, 2 * b, np.zeros((30, 1)), b])
    X, _, res, ok = coupled_block_cg(lambda P: A @ P, B, tol=1e-12, max_iter=100)
    assert ok
    np.testing.assert_allclose(X, np.linalg.solve(A, B), atol=1e-9)
    A4 = _spd(4, 7)
    B4 = np.random.default_rng(8).normal(size=(4, 6))
    X4, _, _, ok = coupled_block_cg(lambda P: A4 @ P, B4, tol=1e-12, max_iter=20)
    assert ok
    np.testing.assert_allclose(X4, np.linalg.solve(A4, B4), atol=1e-9)


def test_coupled_block_cg_leaves_blas_threads_as_they_were():
    """One BLAS thread while it runs, the original limits after, also when solves overlap in threads."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    A = _spd(200, 9)
    seen = []

    def matmul(P):
        seen.append(max(blas_threads()))
        return A @ P

    coupled_block_cg(matmul, np.ones((200, 3)), tol=1e-10)
    assert set(seen) == {1} and blas_threads() == before
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda s: coupled_block_cg(lambda P: A @ P, np.full((200, 3), float(s)), tol=1e-10), range(1, 9)))
    assert blas_threads() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_spreading_block_and_per_column_solvers_agree(dtype):
    """Both solve (I - αS) H = Y to the tolerance; on 8 classes the block solver needs fewer products."""
    X, y = make_blobs(800, centers=8, cluster_std=2.5, random_state=2)
    W = knn_graph(X, 10, metric="euclidean", dtype=dtype)
    rng = np.random.default_rng(0)
    y_lab = np.full(800, -1)
    for c in range(8):
        y_lab[rng.choice(np.flatnonzero(y == c), 2, replace=False)] = c
    tol = 1e-5 if dtype == np.float32 else 1e-10
    per_column = diffuse(W, y_lab, "label_spreading", solver="per_column", tol=tol)
    block = diffuse(W, y_lab, "label_spreading", tol=tol)
    assert block.info["solver"] == "block" and block.converged and block.scores.dtype == dtype
    assert block.n_iter < per_column.n_iter
    scale = np.abs(per_column.scores).max()
    np.testing.assert_allclose(block.scores, per_column.scores, atol=(1e-3 if dtype == np.float32 else 1e-7) * scale)
    assert (block.scores.argmax(1) == per_column.scores.argmax(1)).all()
    assert diffuse(W, np.where(y < 2, y_lab, -1), "label_spreading").info["solver"] == "per_column"  # 2 classes
    with pytest.raises(ValueError, match="solver"):
        diffuse(W, y_lab, "label_spreading", solver="lu")
