"""The blocked edge kernels of ``tv_ratio`` against plain (dense) numpy on small graphs.

The block size and the per-thread minimum are shrunk so that a graph of a few hundred edges is
cut into several blocks dealt to two threads: the blocking and the thread split are what is tested.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from graphzoo.energies import tv_kernels
from graphzoo.energies.tv_kernels import EdgeOperators, operator_norm
from graphzoo.energies.tv_parts import incidence_matrix
from graphzoo.energies.tv_ratio import tv_ratio


def _random_graph(n: int, p: float, seed: int, dtype=np.float64) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    A = np.triu(rng.random((n, n)) * (rng.random((n, n)) < p), 1)
    return sp.csr_matrix(A + A.T, dtype=dtype)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(tv_kernels, "CHUNK_ELEMENTS", 128)
    monkeypatch.setattr(tv_kernels, "MIN_NNZ_PER_THREAD", 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("c", [1, 3, 5])
def test_kernels_match_dense_numpy(small_blocks, dtype, c):
    W = _random_graph(60, 0.3, 0, dtype)
    ops = EdgeOperators(W, dtype, n_threads=2)
    K = incidence_matrix(W).toarray()  # float64 reference
    m = K.shape[0]
    assert ops.n_threads == 2 and len(ops._plan(c)) == 2 and sum(len(b) for b in ops._plan(c)) > 4
    rng = np.random.default_rng(1)
    X = rng.random((60, c)).astype(dtype)
    out = np.full((m, c), np.nan, dtype=dtype)
    sums = ops.apply(X, out)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, K @ X, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(sums, np.abs(K @ X.astype(np.float64)).sum(axis=0), rtol=rtol)
    assert sums.dtype == np.float64

    P = rng.uniform(-1, 1, (m, c)).astype(dtype)
    A, A_old = (rng.normal(size=(m, c)).astype(dtype) for _ in range(2))
    expected = np.clip(P + 0.7 * A - 0.2 * A_old, -1, 1)
    ops.dual_ascent(P, A, A_old, 0.7, 0.2)
    np.testing.assert_allclose(P, expected, rtol=rtol, atol=rtol)
    expected = np.clip(P + 0.3 * A, -1, 1)
    ops.dual_ascent(P, A, np.full_like(A, np.nan), 0.3, 0.0)  # b = 0: A_old is not read
    np.testing.assert_allclose(P, expected, rtol=rtol, atol=rtol)

    np.testing.assert_allclose(ops.adjoint(P), K.T @ P.astype(np.float64), rtol=rtol * 10, atol=rtol * 10)
    factors = rng.random(c) + 0.5
    B = rng.normal(size=(m, c)).astype(dtype)
    expected = B * factors
    ops.scale_columns(B, factors)
    np.testing.assert_allclose(B, expected, rtol=rtol)


def test_apply_refuses_a_mismatched_dtype():
    ops = EdgeOperators(_random_graph(10, 0.5, 0), np.float32)
    with pytest.raises(TypeError, match="float32"):
        ops.apply(np.zeros((10, 2)), np.zeros((ops.n_edges, 2), dtype=np.float32))


def test_operator_norm_is_the_largest_singular_value():
    W = _random_graph(40, 0.2, 3)
    K = incidence_matrix(W)
    exact = np.linalg.svd(K.toarray(), compute_uv=False)[0]
    L = operator_norm(K, sp.csr_matrix(K.T))
    assert exact <= L <= exact * 1.011  # the 1 % margin, and never an underestimate


def test_float32_and_float64_edges_give_the_same_partition(small_blocks):
    W = _random_graph(80, 0.15, 5)
    y = np.full(80, -1)
    y[[0, 1, 2]] = [0, 1, 2]
    r64 = tv_ratio(W, y, 3, dtype=np.float64)
    r32 = tv_ratio(W.astype(np.float32), y, 3)  # dtype=None: the graph's float32
    assert r32.info["edge_dtype"] == "float32" and r64.info["edge_dtype"] == "float64"
    np.testing.assert_array_equal(r32.scores.argmax(1), r64.scores.argmax(1))
    np.testing.assert_allclose(r32.info["partition_energy"], r64.info["partition_energy"], rtol=1e-6)


def test_tv_ratio_refuses_a_non_float_edge_dtype():
    W = _random_graph(10, 0.5, 0)
    y = np.array([0, 1] + [-1] * 8)
    with pytest.raises(ValueError, match="dtype must be float32, float64 or None"):
        tv_ratio(W, y, 2, dtype=np.int32)
