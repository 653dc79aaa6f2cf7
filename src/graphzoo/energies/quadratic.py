"""The p = 2 energies: label spreading, Laplace (harmonic) learning and Poisson learning.

All three minimise a quadratic form of the graph Laplacian and reduce to one sparse symmetric
linear system solved by :func:`block_cg` on all classes at once.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp

from ._base import ENERGIES, EnergyResult, one_hot
from ._graph import graph_components, induced_subgraph
from ._solvers import SparseProduct, block_cg, coupled_block_cg

__all__ = ["label_spreading", "laplace", "poisson", "fit_class_offsets"]


def _degrees(W: sp.csr_matrix) -> np.ndarray:
    """Weighted degrees ``d_i = sum_j w_ij``, summed in float64 (a float32 graph's rows hold ~100 terms)."""
    rows = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
    # astype: bincount of an empty graph (no stored weight) returns int64 zeros
    return np.bincount(rows, weights=W.data, minlength=W.shape[0]).astype(np.float64, copy=False)


def _solve_dtype(W: sp.csr_matrix) -> type:
    """The precision an energy solves in: the graph's own when it is float32, else float64.

    A float32 graph halves the memory traffic of every sparse product; measured at 112k nodes x 14
    classes its accuracy is that of the float64 solve (``bench/graph_bench.py``). Pass a float64
    graph for solutions accurate to 1e-10 (the dense-solve tests do).
    """
    return np.float32 if W.dtype == np.float32 else np.float64


def _laplacian_product(W: sp.csr_matrix, d: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``P -> D P - W P`` (``d`` of shape (n,), W's dtype) in two reused buffers, W's rows threaded."""
    W_prod = SparseProduct(W)
    d = d[:, None]
    buf: list[np.ndarray] = []

    def matmul(P: np.ndarray) -> np.ndarray:
        WP = W_prod(P)
        if not buf or buf[0].shape != P.shape:
            buf[:] = [np.empty_like(P)]
        return np.subtract(np.multiply(d, P, out=buf[0]), WP, out=buf[0])

    return matmul


def _component_mean_remover(comp: np.ndarray, n_comp: int) -> Callable[[np.ndarray], None]:
    """``R -> R - (its per-component column means)`` in place: projects out the null space of L.

    ``L = D - W`` maps into the vectors summing to zero on every connected component; a residual
    of Poisson's system must stay there, and rounding (float32 especially) drifts it out.
    """
    if n_comp == 1:
        return lambda R: np.subtract(R, R.mean(axis=0, dtype=np.float64).astype(R.dtype), out=R)
    n = len(comp)
    counts = np.bincount(comp, minlength=n_comp).astype(np.float64)
    member = sp.csr_matrix((1.0 / counts[comp], (comp, np.arange(n))), shape=(n_comp, n))

    def project(R: np.ndarray) -> None:
        R -= (member @ R.astype(np.float64))[comp].astype(R.dtype)

    return project


@ENERGIES.register("label_spreading")
def label_spreading(
    W: sp.csr_matrix,
    y: np.ndarray,
    n_classes: int,
    *,
    alpha: float = 0.99,
    class_balanced: bool = False,
    tol: float = 1e-6,
    max_iter: int = 1000,
    x0: np.ndarray | None = None,
    solver: str = "auto",
) -> EnergyResult:
    r"""Label spreading (Zhou et al., NIPS 2004): :math:`H = (I - \alpha S)^{-1} Y`.

    Minimises :math:`\tfrac12 \sum_{ij} w_{ij} \| h_i/\sqrt{d_i} - h_j/\sqrt{d_j} \|^2
    + \mu \sum_i \|h_i - Y_i\|^2` with :math:`\alpha = 1/(1+\mu)`, whose minimiser solves
    :math:`(I - \alpha S) H = Y` with :math:`S = D^{-1/2} W D^{-1/2}`. The matrix is symmetric
    positive definite (eigenvalues in :math:`[1-\alpha, 1+\alpha]`), so CG converges in
    :math:`O(\sqrt{(1+\alpha)/(1-\alpha)} \log(1/\mathrm{tol}))` iterations; block CG over all classes'
    directions (:func:`coupled_block_cg`) needs fewer.

    Parameters
    ----------
    W : csr_matrix of shape (n, n)
    y : ndarray of int, shape (n,); -1 = unlabelled
    n_classes : int
    alpha : float in (0, 1), default=0.99
        Weight of the graph term. scikit-learn's ``LabelSpreading`` iterates
        ``F <- αSF + (1-α)Y``, whose fixed point is ``(1-α)`` times ours: the same ranking for
        the same α, but its default α is 0.2, ours the 0.99 of LP-DeepSSL / LaplaceNet.
    class_balanced : bool, default=False
        Seed ``Y_ij = 1/|L_j|`` instead of 1 (LP-DeepSSL), so that a class with many labels does
        not flood the graph.
    tol, max_iter : CG stopping rule (relative residual) and cap.
    x0 : ndarray of shape (n, n_classes), optional
        Warm start (e.g. the previous epoch's solution in Dynamic Pass).
    solver : "auto", "block" or "per_column", default="auto"
        ``"block"``: :func:`coupled_block_cg`, every class's step taken in the span of all classes'
        search directions (112k nodes × 14 classes: 11 sparse products instead of 17; digits,
        10 classes: 30 instead of 69). ``"per_column"``: :func:`block_cg`, one CG recursion per class
        sharing the products (the solver before; kept for ``tv_ratio``'s loose-tolerance start, whose
        partition depends on the start's last digits). ``"auto"``: block from 3 classes on; with 2
        it saved no iteration (two moons: 81.5 both) and costs its small dense algebra. Both reach
        ``tol``; their solutions differ within it.

    Returns
    -------
    EnergyResult
        ``scores`` = H, non-negative up to solver tolerance.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    if solver not in ("auto", "block", "per_column"):
        raise ValueError(f"solver must be 'auto', 'block' or 'per_column', got {solver!r}")
    if solver == "auto":
        solver = "block" if n_classes >= 3 else "per_column"
    solve = coupled_block_cg if solver == "block" else block_cg
    # Work in the graph's precision: a float32 graph halves the memory traffic of each product,
    # and this system is well conditioned enough for float32 CG down to ~1e-6.
    dtype = _solve_dtype(W)
    Y = one_hot(y, n_classes).astype(dtype)
    if class_balanced:
        Y /= Y.sum(axis=0, keepdims=True)
    d = _degrees(W)
    # An isolated node (d = 0) has no edges: its row of S is zero and H_i = Y_i.
    d_inv_sqrt = np.divide(1.0, np.sqrt(d), out=np.zeros_like(d), where=d > 0).astype(dtype)
    # S = D^-1/2 W D^-1/2 by scaling the stored weights in place of two sparse products.
    data = W.data.astype(dtype, copy=True)
    data *= np.repeat(d_inv_sqrt, np.diff(W.indptr))  # row i's stored weights all take d_i^-1/2
    data *= d_inv_sqrt[W.indices]
    S = SparseProduct(sp.csr_matrix((data, W.indices, W.indptr), shape=W.shape))
    if x0 is not None:
        x0 = np.asarray(x0, dtype=dtype)

    def matmul(P: np.ndarray) -> np.ndarray:
        AP = S(P)  # S's reused buffer: turned into P - alpha S P in place
        AP *= -alpha
        AP += P
        return AP

    H, n_iter, residual, converged = solve(matmul, Y, x0=x0, tol=tol, max_iter=max_iter)
    info = {"alpha": alpha, "class_balanced": class_balanced, "solver": solver}
    return EnergyResult(H, n_iter, residual, converged, info=info)


@ENERGIES.register("laplace")
def laplace(
    W: sp.csr_matrix,
    y: np.ndarray,
    n_classes: int,
    *,
    tol: float = 1e-6,
    max_iter: int = 2000,
) -> EnergyResult:
    r"""Laplace (harmonic) learning (Zhu, Ghahramani, Lafferty, ICML 2003).

    Minimises the Dirichlet energy :math:`\tfrac12 \sum_{ij} w_{ij} \|u_i - u_j\|^2` with the
    labelled rows clamped to their one-hot labels. The unlabelled block solves
    :math:`L_{UU} u_U = W_{UL} Y_L` with :math:`L = D - W`, which is SPD when every connected
    component holds a label (guaranteed by :func:`diffuse`); solved by Jacobi-preconditioned CG
    on all classes at once, in the graph's precision (float32 vectors for a float32 graph, float64
    step sizes).

    Known weakness: at very low label rates u is nearly constant away from the labels and the
    argmax degenerates (Calder et al. 2020); see :func:`poisson`.

    Returns
    -------
    EnergyResult
        ``scores`` in [0, 1], rows summing to 1 (up to tolerance); labelled rows are one-hot.
    """
    dtype = _solve_dtype(W)
    Y = one_hot(y, n_classes)
    unl = np.flatnonzero(y < 0)
    U = Y.astype(dtype)
    if len(unl) == 0:
        return EnergyResult(U, 0, 0.0, True)
    W = W.astype(dtype, copy=False)
    # The unlabelled rows of W @ Y are W_UL Y_L: Y's unlabelled rows are zero.
    rhs = SparseProduct(W)(Y.astype(dtype))[unl]
    d_u = _degrees(W)[unl].astype(dtype)
    matmul = _laplacian_product(induced_subgraph(W, unl), d_u)

    X, n_iter, residual, converged = block_cg(matmul, rhs, precond=1.0 / d_u, tol=tol, max_iter=max_iter)
    U[unl] = X
    return EnergyResult(U, n_iter, residual, converged)


def fit_class_offsets(scores: np.ndarray, priors: np.ndarray, *, max_iter: int = 200, tol: float = 1e-3) -> np.ndarray:
    r"""Per-class offsets ``t`` so that ``argmax(scores + t)`` predicts classes in proportion ``priors``.

    A volume constraint in the spirit of graphlearning's ``volume_label_projection``: raise the
    offset of classes predicted too rarely, lower it for those predicted too often. Offsets
    (rather than scale factors) are used because Poisson scores are signed.

    Parameters
    ----------
    scores : ndarray of shape (n, c)
    priors : ndarray of shape (c,), summing to 1

    Returns
    -------
    offsets : ndarray of shape (c,)
    """
    n, c = scores.shape
    offsets = np.zeros(c)
    step = scores.std() + 1e-12
    for _ in range(max_iter):
        frac = np.bincount(np.argmax(scores + offsets, axis=1), minlength=c) / n
        gap = priors - frac
        if np.abs(gap).max() <= tol:
            break
        offsets += 0.5 * step * gap
        step *= 0.97  # shrinking steps: the counts are a step function of the offsets
    return offsets


@ENERGIES.register("poisson")
def poisson(
    W: sp.csr_matrix,
    y: np.ndarray,
    n_classes: int,
    *,
    class_priors: str | np.ndarray | None = None,
    tol: float = 1e-6,
    max_iter: int = 2000,
) -> EnergyResult:
    r"""Poisson learning (Calder, Cook, Thorpe, Slepčev, ICML 2020).

    Solves :math:`L u = \sum_{i \in L} (e_{y_i} - \bar y)\, \delta_i` with :math:`L = D - W`,
    :math:`\bar y` the mean label vector, and :math:`u` centred so that
    :math:`\sum_i d_i u_i = 0`. It is the minimiser of
    :math:`\tfrac12 \sum_{ij} w_{ij}\|u_i - u_j\|^2 - \sum_{i\in L} (e_{y_i} - \bar y) \cdot u_i`.
    Unlike Laplace learning it stays informative at one label per class.

    With several connected components (each holding a label, see :func:`diffuse`) the source
    mean and the centring are taken per component, which is what makes each component's system
    solvable. A component whose labels are all of one class has zero source; its nodes get that
    class with the largest score magnitude seen elsewhere (``info["single_class_components"]``).
    All classes are solved in one block CG, in the graph's precision: for a float32 graph the
    residual is projected back onto each component's zero-sum space every step, which rounding
    otherwise leaves and which stalled float32 CG near 1e-6.

    Long: its signature and this docstring take 40 of its 92 lines; the code is 52.

    Parameters
    ----------
    class_priors : None, "labelled" or array of shape (n_classes,)
        If given, per-class offsets are fitted so the predicted class proportions match the
        priors (``"labelled"``: the class frequencies of the labelled nodes). The offsets are
        added to ``scores`` and reported in ``info["class_offsets"]``.
    tol, max_iter : CG relative-residual tolerance and cap.

    Returns
    -------
    EnergyResult
        ``scores`` = u (signed; larger is more likely), plus offsets when priors are used.
    """
    n = W.shape[0]
    dtype = _solve_dtype(W)
    W = W.astype(dtype, copy=False)
    Y = one_hot(y, n_classes)
    lab = y >= 0
    d = _degrees(W)
    _, comp = graph_components(W)
    # Per-component mean of the labelled one-hot vectors: (n_components, c)
    n_comp = comp.max() + 1
    lab_per_comp = np.bincount(comp[lab], minlength=n_comp).astype(float)
    mean_per_comp = np.zeros((n_comp, n_classes))
    np.add.at(mean_per_comp, comp[lab], Y[lab])
    mean_per_comp /= np.maximum(lab_per_comp, 1)[:, None]
    source = np.zeros((n, n_classes), dtype=dtype)
    source[lab] = Y[lab] - mean_per_comp[comp[lab]]
    matmul = _laplacian_product(W, d.astype(dtype))
    # L is singular (constants per component), but the source sums to zero on each component,
    # so CG from zero stays in the range of L and converges to the minimum-norm solution.
    precond = np.divide(1.0, d, out=np.ones_like(d), where=d > 0)
    u, n_iter, residual, converged = block_cg(
        matmul, source, precond=precond, tol=tol, max_iter=max_iter, project=_component_mean_remover(comp, n_comp)
    )
    # Centre: sum_i d_i u_i = 0 on each component.
    mass = np.bincount(comp, weights=d, minlength=n_comp)
    weighted = sp.csr_matrix((d, (comp, np.arange(n))), shape=(n_comp, n)) @ u.astype(np.float64)
    u -= (weighted / np.where(mass > 0, mass, 1)[:, None])[comp]

    # A component whose labels all belong to one class has a zero source (e_y - ȳ_C = 0), hence
    # u = 0 there and a meaningless argmax. It is that class with certainty (the limit of
    # Poisson learning as its links to the rest of the graph vanish), so say so explicitly.
    classes_per_comp = np.zeros((n_comp, n_classes), dtype=bool)
    classes_per_comp[comp[lab], y[lab]] = True
    single = classes_per_comp.sum(axis=1) == 1
    if single.any():
        scale = max(float(np.abs(u).max()), 1.0)
        rows = single[comp]
        u[rows] = scale * classes_per_comp[comp[rows]]
    info: dict = {"single_class_components": int(single.sum())}
    if class_priors is not None:
        if isinstance(class_priors, str):
            if class_priors != "labelled":
                raise ValueError(f"class_priors must be None, 'labelled' or an array, got {class_priors!r}")
            priors = np.bincount(y[lab], minlength=n_classes) / lab.sum()
        else:
            priors = np.asarray(class_priors, dtype=float)
            if priors.shape != (n_classes,) or (priors < 0).any() or not np.isclose(priors.sum(), 1):
                raise ValueError(f"class_priors must be {n_classes} non-negative numbers summing to 1, got {priors}")
        offsets = fit_class_offsets(u, priors)
        u = u + offsets
        info["class_offsets"] = offsets
        info["class_priors"] = priors
    return EnergyResult(u, n_iter, residual, converged, info=info)
