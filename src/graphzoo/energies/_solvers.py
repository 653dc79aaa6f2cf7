"""Linear solvers shared by the quadratic (p = 2) energies."""

from __future__ import annotations

from typing import Callable

import numpy as np


def block_cg(
    matmul: Callable[[np.ndarray], np.ndarray],
    B: np.ndarray,
    *,
    x0: np.ndarray | None = None,
    precond: np.ndarray | None = None,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> tuple[np.ndarray, int, float, bool]:
    """Solve ``A X = B`` for all columns of ``B`` at once by (Jacobi-preconditioned) CG.

    Each column runs its own conjugate-gradient recursion (its own step sizes), but all columns
    share one sparse product ``A @ P`` per iteration: with c classes this reads the matrix once
    instead of c times, which is what makes the diffusion memory-bandwidth bound rather than
    c-times slower. ``A`` must be symmetric positive (semi-)definite on the span of ``B``.

    Parameters
    ----------
    matmul : callable
        ``P (n, c) -> A @ P (n, c)``.
    B : ndarray of shape (n, c)
    x0 : ndarray of shape (n, c), optional
        Starting point (default zeros).
    precond : ndarray of shape (n,), optional
        Inverse diagonal of A for Jacobi preconditioning.
    tol : float
        Stop when every column's relative residual ``‖b - A x‖ / ‖b‖`` is at most ``tol``.
    max_iter : int

    Returns
    -------
    X : ndarray of shape (n, c)
    n_iter : int
    residual : float
        Largest relative residual over columns.
    converged : bool
    """
    X = np.zeros_like(B) if x0 is None else np.array(x0, dtype=B.dtype, copy=True)
    R = B - matmul(X) if x0 is not None else B.copy()
    b_norm = np.linalg.norm(B, axis=0)
    b_norm[b_norm == 0] = 1.0
    Z = R * precond[:, None] if precond is not None else R
    P = Z.copy()
    rz = np.einsum("ij,ij->j", R, Z)
    residual = float((np.linalg.norm(R, axis=0) / b_norm).max())
    n_iter = 0
    while residual > tol and n_iter < max_iter:
        AP = matmul(P)
        pAp = np.einsum("ij,ij->j", P, AP)
        # A converged (or zero) column has pAp = 0: give it a zero step instead of 0/0.
        alpha = np.divide(rz, pAp, out=np.zeros_like(rz), where=pAp > 0)
        X += P * alpha
        R -= AP * alpha
        n_iter += 1
        residual = float((np.linalg.norm(R, axis=0) / b_norm).max())
        Z = R * precond[:, None] if precond is not None else R
        rz_new = np.einsum("ij,ij->j", R, Z)
        beta = np.divide(rz_new, rz, out=np.zeros_like(rz), where=rz > 0)
        P = Z + P * beta
        rz = rz_new
    return X, n_iter, residual, residual <= tol
