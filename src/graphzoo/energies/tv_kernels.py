r"""The edge-sized work of the p = 1 energy's primal-dual loop, done in cache-sized row blocks.

:func:`graphzoo.energies.tv_ratio.tv_ratio` spends its time on arrays with one row per undirected
edge and one column per class (``m × c``; 27.5k malaria cells, k = 50: m ≈ 1.0M; 112k × 14
classes: m ≈ 3.4M, 190 MB per array in float32). Per inner step it needs ``K X`` (with the column
sums of ``|K X|`` for the ratios), the dual ascent ``P ← clip(P + a·KX − b·KX_old, −1, 1)`` and
``Kᵀ P``. Written as whole-array numpy expressions these cost far more than their memory traffic:

* a reduction over axis 0 of an (m, c) array (``|KU|.sum(axis=0)``) and a broadcast against a
  length-c vector (the per-class dual box) run numpy's inner loop over the c entries of one row,
  so for small c every row pays the loop's overhead (measured, m = 1.0M, c = 2: 34 ms and 35 ms
  against 2-4 ms for a plain elementwise pass; m = 3.4M, c = 14: 1.0 s and 0.42 s);
* every temporary (``a * KU``) is another full pass over memory.

:class:`EdgeOperators` does the same arithmetic in row blocks of about ``CHUNK_ELEMENTS`` entries
(their temporaries stay in cache) with only scalar operands in the elementwise passes, computes
``Σ_e |(KX)_er|`` on each block of the product while it is still in cache (by one BLAS product
with a vector of ones, accumulated over blocks in float64), and splits the blocks over the threads
of :mod:`graphzoo.energies._solvers` (numpy and scipy release the GIL inside these loops). The
per-class dual box is removed from the edge-sized arrays altogether by storing the dual rescaled
to ``[−1, 1]`` (see tv_ratio's "Algorithm").
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigsh

from ._solvers import MIN_NNZ_PER_THREAD, SparseProduct, _pool, spmm_threads
from .tv_parts import _edge_list, incidence_matrix

__all__ = ["EdgeOperators", "operator_norm", "CHUNK_ELEMENTS"]

#: Entries of an (m, c) edge array per row block: 128K float32 = 512 KB, a few of which fit in L2.
CHUNK_ELEMENTS = 1 << 17


def _block_rows(c: int) -> int:
    """Rows of a block for c columns: about CHUNK_ELEMENTS entries, a multiple of 64 (see ``apply``)."""
    return max(64, CHUNK_ELEMENTS // c // 64 * 64)


def operator_norm(K: sp.csr_matrix, KT: sp.csr_matrix) -> float:
    """``‖K‖₂`` (largest singular value), with a 1 % safety margin for the step sizes.

    ``KᵀK`` is the Laplacian of the graph with weights ``w²``; Lanczos on it converges in a few
    dozen products. Falls back to the Gershgorin bound ``2 max_i Σ_j w_ij²`` if ARPACK fails.
    A Lanczos (Ritz) value lies below the true eigenvalue, within its tolerance 1e-4: the margin lifts it above.
    """
    n = K.shape[1]
    deg2 = np.asarray(abs(KT).power(2).sum(axis=1), dtype=np.float64).ravel() if K.nnz else np.zeros(n)
    bound = 2.0 * float(deg2.max()) if n else 0.0
    if n < 3 or bound == 0:
        return float(np.sqrt(bound))
    # Products in K's own precision: a float64 vector would make scipy copy a float32 K on every call.
    op = LinearOperator((n, n), matvec=lambda x: (KT @ (K @ x.astype(K.dtype))).astype(np.float64), dtype=np.float64)
    try:
        v0 = np.random.default_rng(0).standard_normal(n)
        lam = eigsh(op, k=1, which="LA", tol=1e-4, v0=v0, return_eigenvectors=False, maxiter=500)[0]
        return float(np.sqrt(min(lam * 1.01, bound)))
    except (ArpackNoConvergence, ArpackError):
        return float(np.sqrt(bound))


class EdgeOperators:
    """The incidence matrix ``K`` (m, n) of a graph, its norm, and the blocked kernels of the inner loop.

    Built once per graph and shared by the runs of several starts. All edge-sized arrays are
    (m, c) C-ordered in ``dtype``; the returned column sums are float64.

    Parameters
    ----------
    W : csr_matrix of shape (n, n)
        Symmetric non-negative weights.
    dtype : numpy dtype
        Precision of ``K`` and of every edge-sized array (float32 halves the memory traffic).
    n_threads : int, optional
        Threads for the blocked kernels; default :func:`graphzoo.energies._solvers.spmm_threads`,
        fewer on small graphs (below ``MIN_NNZ_PER_THREAD`` stored entries of ``K`` per thread).

    Attributes
    ----------
    K, KT : csr_matrix of shapes (m, n) and (n, m)
    norm : float
        ``‖K‖₂`` (0 without edges).
    edges : tuple (i, j, w)
        Endpoints and float64 weights of the m undirected edges (:func:`partition_ratios`).
    """

    def __init__(self, W: sp.csr_matrix, dtype=np.float64, n_threads: int | None = None):
        K = incidence_matrix(W, dtype=dtype)
        self.K, self.KT = K, sp.csr_matrix(K.T)
        self.n_edges, self.n = K.shape
        self.dtype = K.dtype
        self.norm = operator_norm(K, self.KT) if self.n_edges else 0.0
        self.edges = _edge_list(K)
        threads = spmm_threads() if n_threads is None else max(1, int(n_threads))
        self.n_threads = max(1, min(threads, K.nnz // MIN_NNZ_PER_THREAD))
        self._adjoint = SparseProduct(self.KT, self.n_threads) if self.n_edges else None
        self._plans: dict[int, list] = {}

    # ------------------------------------------------------------------ blocking
    def _plan(self, c: int) -> list[list[tuple[int, int, sp.csr_matrix]]]:
        """Row blocks of ~CHUNK_ELEMENTS entries for c columns, dealt to threads as contiguous runs.

        Each block carries a zero-copy CSR view of its rows of ``K`` (two stored entries per row).
        """
        if c not in self._plans:
            K, m = self.K, self.n_edges
            rows = _block_rows(c)
            starts = np.arange(0, m, rows)
            blocks = []
            for a in starts.tolist():
                b = min(a + rows, m)
                view = sp.csr_matrix((K.data[2 * a : 2 * b], K.indices[2 * a : 2 * b], K.indptr[a : b + 1] - 2 * a),
                                     shape=(b - a, self.n))
                blocks.append((a, b, view))
            per = -(-len(blocks) // self.n_threads)
            self._plans[c] = [blocks[t * per : (t + 1) * per] for t in range(self.n_threads) if blocks[t * per :]]
        return self._plans[c]

    def _run(self, c: int, work) -> list:
        """``work(blocks)`` on each thread's run of blocks; the results in thread order."""
        plan = self._plan(c)
        if len(plan) == 1:
            return [work(plan[0])]
        futures = [_pool(len(plan)).submit(work, blocks) for blocks in plan]
        return [f.result() for f in futures]  # re-raises a worker's exception here

    # ------------------------------------------------------------------ kernels
    def apply(self, X: np.ndarray, out: np.ndarray) -> np.ndarray:
        r"""``out ← K X`` for ``X`` (n, c) in ``dtype``; returns :math:`\sum_e |(KX)_{er}|` (c,), float64.

        The column sums of ``|K X|`` are taken block by block while each block of the product is
        in cache, exactly in float64 over a (rows/64, 64 c) view of the block: an axis-0 sum whose
        inner loop runs over 64 c entries instead of c (BLAS with a vector of ones was 2x faster
        but summed in float32, relative error ~1e-6, and starts its own threads inside ours).
        """
        if X.dtype != self.dtype or out.dtype != self.dtype:
            raise TypeError(f"apply needs {self.dtype} arrays, got X {X.dtype}, out {out.dtype}")
        c = X.shape[1]

        def work(blocks):
            total = np.zeros(c)
            tmp = np.empty(_block_rows(c) * c, dtype=self.dtype)
            for a, b, view in blocks:
                block = out[a:b]
                block[...] = view @ X
                absolute = np.abs(block, out=tmp[: (b - a) * c].reshape(b - a, c))
                whole = (b - a) // 64 * 64
                total += absolute[:whole].reshape(-1, 64 * c).sum(axis=0, dtype=np.float64).reshape(64, c).sum(axis=0)
                total += absolute[whole:].sum(axis=0, dtype=np.float64)
            return total

        return np.sum(self._run(c, work), axis=0)

    def adjoint(self, P: np.ndarray) -> np.ndarray:
        """``Kᵀ P`` (n, c) for ``P`` (m, c); a buffer reused by the next call (copy it to keep it)."""
        return self._adjoint(P)

    def dual_ascent(self, P: np.ndarray, A: np.ndarray, A_old: np.ndarray, a: float, b: float) -> None:
        """``P ← clip(P + a A − b A_old, −1, 1)`` in place, for (m, c) arrays (``A_old`` unread when b = 0)."""
        c = P.shape[1]
        a, b = self.dtype.type(a), self.dtype.type(b)

        def work(blocks):
            tmp = np.empty(_block_rows(c) * c, dtype=self.dtype)
            for lo, hi, _ in blocks:
                p, t = P[lo:hi], tmp[: (hi - lo) * c].reshape(hi - lo, c)
                p += np.multiply(A[lo:hi], a, out=t)
                if b:
                    p -= np.multiply(A_old[lo:hi], b, out=t)
                # One clip with scalar bounds: on a 128K-entry block in cache 26 µs, against 150 µs for
                # np.minimum then np.maximum (numpy 2.4, float32); the result is the same.
                np.clip(p, -1, 1, out=p)

        self._run(c, work)

    def scale_columns(self, X: np.ndarray, factors: np.ndarray) -> None:
        """``X[:, r] *= factors[r]`` in place for an (m, c) array, against a block-sized tile of the factors.

        Multiplying by a (c,) vector directly loops over c entries at a time (slow for small c);
        a (rows, c) tile of the factors makes it one long elementwise loop per block.
        """
        factors = np.asarray(factors, dtype=np.float64)
        if np.all(factors == 1.0):
            return
        c = X.shape[1]
        tile = np.tile(factors.astype(self.dtype), (_block_rows(c), 1))

        def work(blocks):
            for lo, hi, _ in blocks:
                X[lo:hi] *= tile[: hi - lo]

        self._run(c, work)
