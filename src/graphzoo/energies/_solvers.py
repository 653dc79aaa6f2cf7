"""Linear solvers shared by the quadratic (p = 2) energies, and their sparse × dense product.

Speed notes (112k nodes, k = 50, 14 classes, 2 cores; ``bench/graph_bench.py``): one solve is a
few dozen products ``A @ P`` with ``A`` sparse (≈ 8M stored weights) and ``P`` dense (n, c). scipy
runs that product on one thread; :class:`SparseProduct` splits the rows over threads (scipy's
sparsetools release the GIL), and :func:`block_cg` works in preallocated buffers in the graph's
precision, with its step sizes and norms accumulated in float64.
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import scipy.sparse as sp

__all__ = ["block_cg", "coupled_block_cg", "SparseProduct", "spmm_threads"]

#: Below this many stored entries per thread, splitting a product costs more than it saves.
MIN_NNZ_PER_THREAD = 200_000
#: Threads for sparse products; None = the CPUs this process may run on (at most 8).
SPMM_THREADS: int | None = None

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0


def spmm_threads() -> int:
    """Threads :class:`SparseProduct` uses by default: ``SPMM_THREADS`` or the usable CPUs (≤ 8)."""
    if SPMM_THREADS is not None:
        return max(1, int(SPMM_THREADS))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _pool(n_threads: int) -> ThreadPoolExecutor:
    """One process-wide pool, grown when more threads are asked for (the old one finishes its work)."""
    global _POOL, _POOL_SIZE
    if _POOL is None or _POOL_SIZE < n_threads:
        _POOL, _POOL_SIZE = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="graphzoo-spmm"), n_threads
    return _POOL


class SparseProduct:
    """``P (n, c) -> A @ P`` for a CSR matrix ``A`` of shape (m, n), its rows split over threads.

    The row blocks are zero-copy CSR views holding about equal numbers of stored entries; each
    thread writes its rows of one output buffer that is reused from call to call (so the result of
    one call is overwritten by the next: copy it if you keep it). Every output row is summed in
    the same order as ``A @ P`` would, so the result is bit-identical to scipy's single-threaded
    product. ``P`` must have ``A``'s dtype, else scipy would copy ``A`` into the wider type on
    every call.
    """

    def __init__(self, A: sp.csr_matrix, n_threads: int | None = None):
        if not sp.isspmatrix_csr(A) and not isinstance(A, sp.csr_array):
            raise TypeError(f"SparseProduct needs a CSR matrix, got {type(A).__name__}")
        self.A = A
        self.shape = A.shape
        self.dtype = A.dtype
        n_threads = spmm_threads() if n_threads is None else max(1, int(n_threads))
        n_threads = max(1, min(n_threads, A.nnz // MIN_NNZ_PER_THREAD, A.shape[0]))
        cuts = np.searchsorted(A.indptr, np.linspace(0, A.nnz, n_threads + 1)[1:-1]) if n_threads > 1 else []
        bounds = np.unique(np.concatenate([[0], cuts, [A.shape[0]]])).astype(np.int64)
        self.blocks = [(int(a), int(b), self._rows(int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:])]
        self._out: np.ndarray | None = None

    def _rows(self, a: int, b: int) -> sp.csr_matrix:
        A = self.A
        lo, hi = A.indptr[a], A.indptr[b]
        return sp.csr_matrix((A.data[lo:hi], A.indices[lo:hi], A.indptr[a : b + 1] - lo), shape=(b - a, A.shape[1]))

    def __call__(self, P: np.ndarray) -> np.ndarray:
        if P.dtype != self.dtype:
            raise TypeError(f"P has dtype {P.dtype} but the matrix has {self.dtype}; cast one of them once")
        if len(self.blocks) == 1:
            return self.A @ P
        shape = (self.shape[0], *P.shape[1:])
        if self._out is None or self._out.shape != shape:
            self._out = np.empty(shape, dtype=self.dtype)
        out = self._out

        def run(block):
            a, b, M = block
            out[a:b] = M @ P

        for f in [_pool(len(self.blocks)).submit(run, blk) for blk in self.blocks]:
            f.result()  # re-raises a worker's exception here
        return out


def _col_dot(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Column-wise inner products ``sum_i A_ij B_ij`` of (n, c) arrays, accumulated in float64."""
    return np.einsum("ij,ij->j", A, B, dtype=np.float64)


def _start(matmul, B: np.ndarray, x0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both CG solvers' start: ``X`` (x0 or zeros, B's dtype), ``R = B − A X`` (B itself for a zero start: no
    product) and the column norms of ``B`` (1 for a zero column, so relative residuals never divide by 0)."""
    X = np.zeros_like(B) if x0 is None else np.array(x0, dtype=B.dtype, copy=True)
    R = B - matmul(X) if x0 is not None else B.copy()
    b_norm = np.sqrt(_col_dot(B, B))
    b_norm[b_norm == 0] = 1.0
    return X, R, b_norm


def block_cg(
    matmul: Callable[[np.ndarray], np.ndarray],
    B: np.ndarray,
    *,
    x0: np.ndarray | None = None,
    precond: np.ndarray | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
    project: Callable[[np.ndarray], None] | None = None,
) -> tuple[np.ndarray, int, float, bool]:
    """Solve ``A X = B`` for all columns of ``B`` at once by (Jacobi-preconditioned) CG.

    Each column runs its own conjugate-gradient recursion (its own step sizes), but all columns
    share one sparse product ``A @ P`` per iteration: with c classes this reads the matrix once
    instead of c times, which is what makes the diffusion memory-bandwidth bound rather than
    c-times slower. ``A`` must be symmetric positive (semi-)definite on the span of ``B``.

    The vectors live in ``B``'s dtype (float32 halves the memory traffic); the step sizes
    ``α = rᵀz / pᵀAp``, ``β`` and the residual norms are accumulated in float64. The loop
    allocates no (n, c) array: every update is written into buffers made once.

    Parameters
    ----------
    matmul : callable
        ``P (n, c) -> A @ P (n, c)``, same dtype as ``P``. It may return the same buffer on every
        call (block_cg reads it before the next call).
    B : ndarray of shape (n, c), float32 or float64
    x0 : ndarray of shape (n, c), optional
        Starting point (default zeros).
    precond : ndarray of shape (n,), optional
        Inverse diagonal of A for Jacobi preconditioning.
    tol : float
        Stop when every column's relative residual ``‖b - A x‖ / ‖b‖`` is at most ``tol`` (the
        recursively updated residual, as in every CG code).
    max_iter : int
    project : callable, optional
        ``R -> None``, removing in place the components of a residual that ``A`` cannot reach
        (its null space, for a singular ``A`` with ``B`` in its range). Rounding puts such
        components into the updated residual; in float32 they stall CG near 1e-6 unless removed.

    Returns
    -------
    X : ndarray of shape (n, c), B's dtype
    n_iter : int
    residual : float
        Largest relative residual over columns.
    converged : bool
    """
    dtype = B.dtype
    X, R, b_norm = _start(matmul, B, x0)
    if project is not None:
        project(R)
    pre = None if precond is None else np.asarray(precond, dtype=dtype)[:, None]
    Z = R * pre if pre is not None else R  # without a preconditioner Z is R itself
    P = Z.copy()
    tmp = np.empty_like(B)
    rr = _col_dot(R, R)
    rz = _col_dot(R, Z) if pre is not None else rr
    residual = float((np.sqrt(rr) / b_norm).max())
    n_iter = 0
    while residual > tol and n_iter < max_iter:
        AP = matmul(P)
        pAp = _col_dot(P, AP)
        # A converged (or zero) column has pAp = 0: give it a zero step instead of 0/0.
        alpha = np.divide(rz, pAp, out=np.zeros_like(rz), where=pAp > 0).astype(dtype)
        X += np.multiply(P, alpha, out=tmp)
        R -= np.multiply(AP, alpha, out=tmp)
        if project is not None:
            project(R)
        n_iter += 1
        rr = _col_dot(R, R)
        residual = float((np.sqrt(rr) / b_norm).max())
        if pre is not None:
            np.multiply(R, pre, out=Z)
            rz_new = _col_dot(R, Z)
        else:
            rz_new = rr
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0).astype(dtype)
        P *= beta
        P += Z
        rz = rz_new
    return X, n_iter, residual, residual <= tol


def _gram(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``Uᵀ V`` of (n, k) and (n, m) arrays as a float64 (k, m) matrix, by one BLAS product in their dtype.

    For float32 vectors this accumulates in float32 (BLAS blocks the sum, so the error grows like
    √n·ε, ≈ 3e-5 relative at 112k nodes): the small matrices only choose the step inside the search
    space, and the residual is updated with the same step as the solution, so this costs no
    accuracy in ``X`` for a given residual; measured at 112k × 14 it changed neither the iteration
    count nor the final residual, and the float64 products were 2.5× slower.
    """
    return np.asarray(U.T @ V, dtype=np.float64)


def _orthonormal_columns(M: np.ndarray) -> np.ndarray:
    """An orthonormal basis (n, k) of the columns of ``M`` (n, m), k ≤ m, from the m × m Gram matrix.

    ``M Q Λ^{-1/2}`` with ``MᵀM = Q Λ Qᵀ``: one BLAS product for the Gram matrix and one for the
    basis, instead of a Householder QR (≈ 10-30× slower on a (112k, 14) array here). A direction
    of eigenvalue λ comes out with a relative error of about ε·√(λ_max/λ) (ε of M's dtype), so those
    with ``λ ≤ λ_max · max((100 ε)², 1e-14)`` are dropped (errors above 1 %; 1e-14: the float64
    eigensolver's own floor): where the columns have become linearly dependent (e.g. a class's
    residual is exhausted) the block shrinks instead of dividing by zero.
    """
    w, Q = np.linalg.eigh(_gram(M, M))
    keep = w > max(float(w[-1]), 0.0) * max((100 * np.finfo(M.dtype).eps) ** 2, 1e-14)
    if not keep.any():
        return M[:, :0]
    return M @ (Q[:, keep] / np.sqrt(w[keep])).astype(M.dtype)


def coupled_block_cg(
    matmul: Callable[[np.ndarray], np.ndarray],
    B: np.ndarray,
    *,
    x0: np.ndarray | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> tuple[np.ndarray, int, float, bool]:
    r"""Solve ``A X = B`` (A symmetric positive definite) by block CG in the joint Krylov space of all columns.

    O'Leary's block conjugate gradient (1980) with an orthonormal search block (Dubrulle 2001):
    where :func:`block_cg` runs one CG recursion per column, here every column's update is chosen
    in the span of all columns' search directions,

    .. math::
        α = (PᵀAP)^{-1} PᵀR,\quad X \mathrel{+}= Pα,\quad R \mathrel{-}= APα,\quad
        β = -(PᵀAP)^{-1} (AP)ᵀR,\quad P ← \mathrm{orth}(R + Pβ),

    so after j steps each column is optimal over the block Krylov space of dimension j·c, not j.
    For c classes this removes the c smallest eigenvalues of A from the convergence rate: label
    spreading at 112k nodes × 14 classes converged in 11 products instead of 17 (512-d synthetic
    kNN graph) and 16 instead of 51 (32-d), each step adding a few (n, c) × (c, c) BLAS products.
    The columns' results differ from :func:`block_cg`'s by at most the tolerance.

    Those small products run with BLAS on one thread (:func:`_one_blas_thread`): OpenBLAS splits a
    (14 × 112k) · (112k × 14) product over its threads, which then spin against the sparse
    product's threads; measured at 112k × 14 (load ≈ 7 on 2 cores) the whole solve took 3.4 s of CPU
    with BLAS threads against 1.1 s without.

    Parameters
    ----------
    matmul : callable
        ``P (n, k) -> A @ P (n, k)``, same dtype, for any k ≤ c; it may return a reused buffer.
    B : ndarray of shape (n, c), float32 or float64
    x0 : ndarray of shape (n, c), optional
        Starting point (default zeros).
    tol : float
        Stop when every column's relative residual ``‖b - A x‖ / ‖b‖`` (the recursively updated
        one, as in :func:`block_cg`) is at most ``tol``.
    max_iter : int

    Returns
    -------
    X : ndarray of shape (n, c), B's dtype
    n_iter : int
    residual : float
        Largest relative residual over columns.
    converged : bool
    """
    with _one_blas_thread():
        return _coupled_block_cg(matmul, B, x0, tol, max_iter)


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMITER = None


@contextlib.contextmanager
def _one_blas_thread():
    """Context in which BLAS (numpy's OpenBLAS / MKL) uses one thread; a no-op without threadpoolctl.

    threadpoolctl comes with scikit-learn (a dependency of graphzoo). The limit is process-wide, so
    it is counted: the first of several concurrent solves (e.g. graph steps run from threads) sets
    it and the last one out restores the original limits; meanwhile other BLAS work of the process
    also runs on one thread.
    """
    global _BLAS_USERS, _BLAS_LIMITER
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn requires it
        yield
        return
    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_LIMITER = threadpool_limits(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0:
                _BLAS_LIMITER.restore_original_limits()
                _BLAS_LIMITER = None


def _coupled_block_cg(matmul, B, x0, tol, max_iter):
    dtype = B.dtype
    X, R, b_norm = _start(matmul, B, x0)
    residual = float((np.sqrt(_col_dot(R, R)) / b_norm).max())
    n_iter = 0
    P = _orthonormal_columns(R) if residual > tol else R[:, :0]
    while residual > tol and n_iter < max_iter and P.shape[1]:
        Q = matmul(P)  # may be matmul's reused buffer: used up before the next call
        PQ = _gram(P, Q)
        PQ = (PQ + PQ.T) / 2  # PᵀAP is symmetric; rounding of the float32 product is not
        alpha = np.linalg.solve(PQ, _gram(P, R)).astype(dtype)
        X += P @ alpha
        R -= Q @ alpha
        n_iter += 1
        residual = float((np.sqrt(_col_dot(R, R)) / b_norm).max())
        if residual <= tol:
            break
        beta = -np.linalg.solve(PQ, _gram(Q, R)).astype(dtype)
        P = _orthonormal_columns(R + P @ beta)
    return X, n_iter, residual, residual <= tol
