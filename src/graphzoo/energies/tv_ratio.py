r"""The p = 1 energy: multiclass graph total-variation ratio (Bresson et al., NIPS 2013).

Minimises the sum of ratios

.. math::

    \min_{U \in \mathcal C} \; \sum_{r=1}^{c} \frac{T(u_r)}{B_{\lambda_r}(u_r)}

over score matrices ``U`` of shape (n, c) whose rows lie on the probability simplex, labelled
rows fixed to their one-hot label (the set :math:`\mathcal C`). It is the tight continuous
relaxation of the multiclass asymmetric Cheeger cut
:math:`\sum_r \mathrm{cut}(A_r, A_r^c) / \min(\lambda_r |A_r|, |A_r^c|)`: its minimisers are close
to indicator functions of a partition, which is why it stays sharp at one label per class where
the p = 2 energies blur (GraphXNet, Aviles-Rivero et al. 2019, uses it for ChestX-ray14).

Conventions (documented because a factor 2 and a swapped weight are easy to get wrong)
--------------------------------------------------------------------------------------
* **Total variation.** ``T(u) = Σ_{i<j} w_ij |u_i − u_j| = ½ Σ_{i,j} w_ij |u_i − u_j|``, a sum
  over *undirected* edges, so that ``T(1_A) = cut(A, A^c)`` exactly. :func:`incidence_matrix`
  builds ``K`` with **one row per undirected edge** ``e = (i, j), i < j`` and
  ``(K u)_e = w_ij (u_j − u_i)``, hence ``T(u) = ‖K u‖₁``. A sum ``Σ_{i,j}`` over ordered pairs
  next to ``‖Ku‖₁``, as statements of the algorithm sometimes write it, is twice as large. The
  factor scales every ratio alike, so it changes neither the minimiser nor the algorithm's
  iterates beyond the prox step, but ``energy_history`` uses the undirected (cut) convention.
* **Balance.** ``B_λ(u) = λ Σ_{u_i > m} (u_i − m) + Σ_{u_i < m} (m − u_i)`` with ``m`` the
  λ-median, the (k+1)-th *largest* entry of ``u`` with ``k = ⌊n / (λ + 1)⌋``. The weight λ sits
  on the entries *above* the median: then ``B_λ(1_A) = min(λ|A|, n − |A|)``, the paper's
  asymmetric balance. A public Python port puts λ on the entries below the median in its value
  function (while its subgradient has it above): harmless for c = 2 (λ = 1), wrong for c > 2.
  ``B_λ(u) = min_t [λ Σ (u_i − t)⁺ + Σ (t − u_i)⁺]`` (the λ-median is the minimising ``t``),
  which is how the tests check it by brute force.
* **Class priors.** Per-class ``λ_r = 1/π_r − 1`` (equal priors give the paper's ``λ = c − 1``),
  so the balanced set size ``n/(λ_r+1) = π_r n`` matches the prior. This is our reading of
  GraphXNet, not taken from its code.

Algorithm
---------
Proximal steepest descent on the ratio (Bresson et al. 2013) with an accelerated primal-dual
inner solver (Chambolle & Pock 2011, Alg. 2). At the outer iterate ``U^k`` with
``B_r = B(u_r^k)``, ``E_r = T(u_r^k)/B_r``, ``v_r ∈ ∂B(u_r^k)`` and ``δ = max_r B_r``, the next
iterate approximately solves the strongly convex problem

.. math::

    \min_{U \in \mathcal C} \; \sum_r \frac{\delta}{B_r} \|K u_r\|_1 + \tfrac12 \|U - G\|_F^2,
    \qquad G = U^k + \delta\, V \,\mathrm{diag}(E_r / B_r),

i.e. a proximal step of size ``δ`` on the linearised ratios. Its exact solution ``Û`` satisfies
the *descent inequality* (from strong convexity, ``⟨v_r, û_r⟩ ≤ B(û_r)`` and
``⟨v_r, u^k_r⟩ = B_r``)

.. math::

    \sum_r \frac{B(\hat u_r)}{B_r} \bigl(E_r - \hat E_r\bigr) \;\ge\; \frac{\|\hat U - U^k\|_F^2}{\delta},

and the inner loop stops as soon as its iterate satisfies it up to a factor ``1 − ε``
("sufficient decrease"), or at ``max_inner``. Note what this does and does not promise: the
*B-weighted* decrease is non-negative, but the plain sum ``Σ_r E_r`` may rise slightly when the
``B_r`` change unevenly between classes; both are recorded in ``EnergyResult.info``.

Two implementation choices that differ from the plain primal-dual iteration (Chambolle & Pock
2011, with one dual step ``σ`` for all classes) without changing the fixed points:

* The dual variable is stored rescaled, ``Q = P · diag(δ/B_r)`` with ``|Q_er| ≤ δ/B_r``; this is
  the same iteration as using a per-class dual step ``σ_r = 1/(τ L² (δ/B_r)²)`` instead of the
  single worst-case ``σ = δ₀²/(τ δ² L²)``, so classes with a large ``B_r`` are not slowed down
  by the smallest one (diagonal preconditioning, Pock & Chambolle 2011).
* ``K U`` is computed once per inner step and reused for the ratio check and for the
  extrapolated point (``K Ū = (1+θ) K U − θ K U_old``), so an inner step costs one product with
  ``K`` and one with ``Kᵀ``: O(|E| · c) time, and memory O(|E| · c) for the dual, ``K U`` and
  ``K U_old``.

How it is stored (speed; the iterates are those of the formulas above up to rounding): the edge
arrays hold ``P = Q · diag(B_r/δ)`` in ``[−1, 1]`` and ``K U diag(B_r/δ)`` instead of ``Q`` and
``K U``, so the dual ascent and its clip take scalar operands only (``Kᵀ Q = (Kᵀ P) diag(δ/B_r)``
and ``T(u_r) = (δ/B_r) Σ_e |(K U diag(B_r/δ))_er|`` are recovered on n- and c-sized arrays); ``P``
is unchanged when ``δ/B_r`` changes between outer steps, and ``K U diag(B_r/δ)`` is rescaled once.
The passes over these arrays run in cache-sized row blocks over threads
(:class:`~graphzoo.energies.tv_kernels.EdgeOperators`), in the graph's precision.

Why these defaults (measured; issue 12)
---------------------------------------
With the paper's loop alone (label-spreading start, run to the ``tol`` rule) tv_ratio lost to
label spreading at one label per class on scikit-learn digits (cosine kNN, k = 10). Measured
causes, in order of weight:

* **The relaxation is not tight for c > 2, and the continuous energy keeps paying for it.** Over
  the simplex the ratio sum can fall below that of every partition. Late in the descent it still
  falls (digits, seed 2: 0.47 → 0.42) while the rounded partition ``argmax_r U_ir`` gets *worse*
  (its ratio energy 0.46 → 1.25, accuracy 0.90 → 0.77): a class column drifts to a fractional
  plateau that wins no argmax. Hence the energy of the rounded partition (the multiclass
  asymmetric Cheeger cut, :func:`partition_ratios`, O(|E|)) is tracked every outer step, the
  iterate with the lowest one is returned, and the descent stops ``partition_patience`` steps after
  it last improved.
* **At one label per class the energy's minimiser is not the class partition** on every graph. On
  digits the true classes have ratio energy 0.62; the descent finds partitions at 0.46-0.50 that
  merge parts of two digits (accuracy ≈ 0.90, where iterates on the way reached 0.95). A long
  descent therefore hurts there, a short one from a good p = 2 start helps; on two moons the
  opposite holds (the energy's minimiser is the moons, and from label spreading's start the
  boundary needs > 100 outer steps to move). Two starts, label spreading and Poisson, each with
  the short descent, and keeping the one whose partition has the lower ratio energy, serves both:
  on digits the label-spreading run wins, on moons the Poisson run (already ≈ the moons).
* **Cost.** ``np.partition`` (the λ-median) on columns where most entries tie at 0, as after a
  simplex projection, was about 7x slower than a full sort and took half the time; the inner cap of 100
  steps was spent late, after the partition had stopped changing; and the adaptive prox step takes
  fewer outer steps early. The graph operators (``K``, ``Kᵀ``, ``‖K‖₂``) are built once for both
  starts.

References
----------
X. Bresson, T. Laurent, D. Uminsky, J. H. von Brecht, "Multiclass Total Variation Clustering",
NIPS 2013. X. Bresson, X.-C. Tai, T. F. Chan, A. Szlam, "Multi-class transductive learning based
on ℓ1 relaxations of Cheeger cut and Mumford-Shah-Potts model", JMIV 2014. A. Chambolle,
T. Pock, "A first-order primal-dual algorithm for convex problems with applications to
imaging", JMIV 2011.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ._base import ENERGIES, EnergyResult, check_labels, one_hot
from .tv_kernels import EdgeOperators
from .tv_parts import (  # the building blocks stay importable from here, as before the split
    _initial_scores,
    _resolve_priors,
    balance,
    class_lambdas,
    incidence_matrix,
    lambda_median,
    partition_ratios,
    project_simplex_rows,
    total_variation,
)

__all__ = [
    "tv_ratio",
    "incidence_matrix",
    "total_variation",
    "balance",
    "lambda_median",
    "project_simplex_rows",
    "class_lambdas",
    "partition_ratios",
]

# Floor for B_r relative to n. B_r > 0 whenever column r is not constant; with every class
# labelled and c >= 2 each column holds a fixed 1 and a fixed 0, so the floor only guards
# against rounding and against direct calls that bypass check_labels.
_B_FLOOR = 1e-12


def _edge_dtype(W: sp.csr_matrix, dtype) -> np.dtype:
    """Precision of the edge-sized arrays: ``dtype`` if given, else the graph's (float32 stays float32)."""
    if dtype is None:
        return np.dtype(np.float32) if W.dtype == np.float32 else np.dtype(np.float64)
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32, float64 or None (the graph's), got {dtype!r}")
    return np.dtype(dtype)


# --------------------------------------------------------------------------- the energy


def _best_of_starts(W, y, n_classes, starts, **params) -> EnergyResult:
    """Run :func:`tv_ratio` from each start and keep the result whose partition has the lowest ratio energy."""
    if len(starts) == 0:
        raise ValueError("warm_start given as a list must name at least one start")
    t0 = time.perf_counter()
    W = sp.csr_matrix(W)
    graph = EdgeOperators(W, _edge_dtype(W, params.get("dtype")))  # shared by all runs
    runs = [tv_ratio(W, y, n_classes, warm_start=s, _graph=graph, **params) for s in starts]
    best = min(runs, key=lambda r: r.info.get("partition_energy", np.inf))
    best.info["starts"] = [(r.info.get("warm_start"), r.info.get("partition_energy")) for r in runs]
    best.info["time_s"] = time.perf_counter() - t0
    return best


@ENERGIES.register("tv_ratio")
def tv_ratio(
    W: sp.csr_matrix,
    y: np.ndarray,
    n_classes: int,
    *,
    class_priors: str | np.ndarray | None = None,
    warm_start: bool | str | np.ndarray | tuple | list | None = ("label_spreading", "poisson"),
    max_outer: int = 300,
    max_inner: int = 20,
    tol: float = 1e-4,
    inner_eps: float = 1e-6,
    energy_tol: float = 1e-3,
    patience: int = 10,
    step: float = 1.0,
    adaptive_step: bool = True,
    min_inner: int = 1,
    dtype=None,
    verbose: bool = False,
    partition_patience: int = 5,
    partition_rtol: float = 5e-3,
    keep_best_partition: bool = True,
    _graph: EdgeOperators | None = None,  # private: the graph's operators, shared by several starts
) -> EnergyResult:
    r"""Multiclass total-variation ratio (p = 1; Bresson et al. NIPS 2013; GraphXNet).

    Minimises :math:`\sum_r T(u_r)/B_{\lambda_r}(u_r)` over ``U`` with rows on the simplex and
    labelled rows fixed, by proximal steepest descent with an accelerated Chambolle-Pock inner
    solver (see the module docstring for the formulas and conventions).

    The outer and inner loops stay in one function on purpose: they share a dozen arrays
    (``U``, ``KU``, the dual ``Q``, the ratios ``T``, ``B``, ``E``) whose in-place updates and
    reuse (one product with ``K`` per inner step) are the point of the implementation; split into
    helpers they would be passed around as long argument lists without becoming easier to check
    against the formulas.

    Parameters
    ----------
    W : csr_matrix of shape (n, n)
        Symmetric non-negative weights.
    y : ndarray of int, shape (n,)
        Class index for labelled nodes, ``-1`` for unlabelled. Every class must be labelled
        (``ValueError`` otherwise, as in :func:`graphzoo.diffuse`).
    n_classes : int
    class_priors : None, "equal", "labelled" or ndarray of shape (n_classes,), default=None
        Class proportions ``π`` that set the balance weights ``λ_r = 1/π_r − 1``. ``None`` /
        ``"equal"``: ``λ = c − 1`` for all classes (the paper); ``"labelled"``: the class
        frequencies among the labelled nodes; an array: given proportions in (0, 1).
    warm_start : str, True, None/False, ndarray of shape (n, n_classes), or a list/tuple of these, \
default=("label_spreading", "poisson")
        Starting point. ``True`` (= ``"label_spreading"``) starts from the row-normalised label
        spreading solution; ``"poisson"`` from Poisson learning's scores projected row-wise onto
        the simplex (same argmax); ``None`` from uniform rows (the paper); an array from the given
        scores (e.g. the previous epoch's solution), projected onto the constraint set. A list or
        tuple runs the descent from each and returns the run whose partition has the lowest ratio
        energy (``info["starts"]`` lists each start with that energy); the graph operators are
        built once for all. The default is the best of the two p = 2 starts (module docstring,
        "Why these defaults").
    max_outer : int, default=300
        Cap on proximal (outer) steps; hitting it sets ``converged=False`` and
        :func:`graphzoo.diffuse` then warns with ``ConvergenceWarning``.
    max_inner : int, default=20
        Cap on Chambolle-Pock steps per outer step (was 100: the steps the cap cuts short come
        late, after the partition has stopped improving, and cost most of the time).
    tol : float, default=1e-4
        Stop when ``‖U^{k+1} − U^k‖_F < tol · √(n c)`` (the paper's rule): the mean change of
        an entry falls below ``tol``.
    inner_eps : float, default=1e-6
        Slack ``ε`` of the sufficient-decrease test that ends an inner loop.
    dtype : {None, numpy.float64, numpy.float32}, default=None
        Precision of the edge-sized arrays (``K``, the dual variable, ``K U``); None = the graph's
        (float32 for the float32 graphs of :func:`graphzoo.knn_graph`, else float64). float32
        halves their memory traffic; ``U``, the balance terms, the column sums of ``|K U|`` and the
        ratios stay float64.
    step : float, default=1.0
        Prox step factor: ``δ = step · max_r B_r`` (the paper's choice at 1).
    adaptive_step : bool, default=True
        Double the prox step (up to ``2¹⁰ · step``) after an outer step whose inner loop passed its
        test within two iterations, halve it (down to ``step``) after one that hit ``max_inner``. The
        descent inequality holds for any step, so this changes speed, not what is proven.
    min_inner : int, default=1
        Inner steps before the sufficient-decrease test may end the inner loop.
    partition_patience : int, default=5
        Stop when ``partition_patience`` outer steps in a row did not lower the ratio energy of the
        rounded partition (``stop_reason="partition_plateau"``); 0 disables the rule. It trades
        accuracy for time: 15 gave 0.888 / 0.953 on digits at 1 / 3 labels per class (10 seeds)
        against 0.871 / 0.935 with 5, at 3-4x the time; 5 keeps digits near 0.5 s per solve.
    partition_rtol : float, default=5e-3
        For the plateau rule, an outer step lowers the rounded partition's ratio energy only if it
        brings it below ``1 − partition_rtol`` times the last such value (the returned iterate is
        still the lowest one seen). At 112k nodes × 14 classes the energy crept down by 0.01-0.1 %
        per step for 10 steps after the partition had settled (accuracy 0.9979 → 0.9977), which
        kept the default-start run going from outer step 7 to 18 (87 → 147 inner steps); on the
        benchmark's draws (digits and moons 120, malaria 10) 5e-3 changed two returned partitions,
        both for the better (moons 0.15 seed 15: 0.869 → 0.890; malaria 3 labels seed 0: 0.937 → 0.939).
        0 counts every decrease, as before.
    keep_best_partition : bool, default=True
        Return the iterate whose rounded partition had the lowest ratio energy (ties: the later,
        sharper one), not the last iterate. The start counts as a candidate, so the returned
        partition's ratio energy is never above the start's.
    verbose : bool, default=False
        Print one line per outer step.

    Returns
    -------
    EnergyResult
        ``scores`` = U of shape (n, n_classes): rows on the simplex, labelled rows one-hot (the
        best-partition iterate, see ``keep_best_partition``).
        ``n_iter`` = outer steps, ``residual`` = last ``‖ΔU‖_F / √(n c)``. ``info`` holds:

        * ``energy_history``: ``Σ_r T(u_r)/B(u_r)`` at the start and after every outer step;
        * ``rounded_history``: the same energy of the rounded partition ``argmax_r U_ir``
          (:func:`partition_ratios`), at the start and after every outer step; ``best_outer``: the
          outer step whose iterate is returned (0 = the start); ``partition_energy``: its value;
        * ``descent_history``: the weighted decrease ``Σ_r B(û_r)/B_r (E_r − Ê_r)`` of each
          outer step (non-negative when the inner loop stopped on sufficient decrease);
        * ``inner_iterations`` (per outer step), ``n_outer``, ``n_inner_total``,
          ``inner_cap_hits`` (steps accepted at ``max_inner`` without the decrease test);
        * ``stop_reason``: ``"tol"``, ``"max_outer"``, ``"energy_plateau"``, ``"partition_plateau"``,
          ``"zero_energy"``
          (the start already has zero energy, a global minimum), ``"no_edges"``,
          ``"all_labelled"`` or ``"single_class"``;
        * ``lambdas``, ``class_priors``, ``lipschitz`` (``‖K‖₂``), ``n_edges``, ``edge_dtype``, ``warm_start``,
          ``class_ratios`` (final ``E_r``), ``time_s``; ``starts`` when several starts ran.

    Notes
    -----
    Degenerate cases:

    * ``B(u_r) = 0`` means column ``r`` is constant. With ``c ≥ 2`` and every class labelled it
      cannot happen (each column holds a fixed 1 and a fixed 0), and uniform starting rows are
      fine; ``B_r`` is still floored at ``1e-12 · n`` so rounding never divides by zero.
    * A class with no labelled node is refused (``ValueError``), because nothing ties a column
      to a class and the column can collapse to a constant (``0/0``).
    * Disconnected graph: :func:`graphzoo.diffuse` runs the energy on the labelled components
      only. Called directly, a component without a labelled node is still solved safely (no
      division by degrees is involved): it carries no TV cost for any constant assignment, so it
      is typically given wholesale to the class whose balance it improves; its labels carry no
      information.
    * A graph with no edges returns the projected starting point (``stop_reason="no_edges"``).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = np.ones((4, 4)) - np.eye(4)                       # two 4-cliques ...
    >>> W = sp.block_diag([A, A]).tolil(); W[3, 4] = W[4, 3] = 1  # ... joined by one edge
    >>> y = np.array([0, -1, -1, -1, -1, -1, -1, 1])
    >>> tv_ratio(sp.csr_matrix(W), y, 2).scores.argmax(1).tolist()
    [0, 0, 0, 0, 1, 1, 1, 1]
    """
    t_start = time.perf_counter()
    if isinstance(warm_start, (list, tuple)):
        return _best_of_starts(
            W, y, n_classes, warm_start, class_priors=class_priors, max_outer=max_outer, max_inner=max_inner, tol=tol,
            inner_eps=inner_eps, energy_tol=energy_tol, patience=patience, step=step, adaptive_step=adaptive_step,
            min_inner=min_inner, dtype=dtype, verbose=verbose, partition_patience=partition_patience,
            partition_rtol=partition_rtol, keep_best_partition=keep_best_partition)
    W = sp.csr_matrix(W)
    n = W.shape[0]
    y, n_classes = check_labels(y, n, n_classes)
    c = n_classes
    lab = np.flatnonzero(y >= 0)
    Y_lab = one_hot(y[lab], c) if len(lab) else np.zeros((0, c))
    priors = _resolve_priors(class_priors, y, c)
    info: dict = {"class_priors": priors, "lambdas": None}

    if c == 1:
        info["stop_reason"] = "single_class"
        return EnergyResult(np.ones((n, 1)), 0, 0.0, True, info=info)
    lam = class_lambdas(c, priors)
    info["lambdas"] = lam

    def project(X: np.ndarray) -> np.ndarray:
        X = project_simplex_rows(X)
        X[lab] = Y_lab  # labelled rows are fixed: projection onto C is row-wise
        return X

    U0, start_kind = _initial_scores(W, y, c, warm_start)
    U = project(U0)
    info["warm_start"] = start_kind
    ops = _graph if _graph is not None else EdgeOperators(W, _edge_dtype(W, dtype))
    m = ops.n_edges
    info.update(n_edges=m, edge_dtype=ops.dtype.name)
    if len(lab) == n or m == 0:
        info["stop_reason"] = "all_labelled" if len(lab) == n else "no_edges"
        info.update(energy_history=[], descent_history=[], inner_iterations=[], n_outer=0, n_inner_total=0)
        return EnergyResult(U, 0, 0.0, True, info=info)
    L = ops.norm
    info["lipschitz"] = L
    b_floor = _B_FLOOR * n

    def balances(U: np.ndarray):
        B, V = balance(U, lam)
        return np.maximum(B, b_floor), V

    # Edge-sized state, all (m, c) in the edge dtype: KX = K (U diag(s)) for the current column
    # scale s = B_r/δ = 1/box (so that the dual P = Q/box lives in [-1, 1] and every pass over an
    # edge array has scalar operands), the previous such product, and P.
    KX, KX_old = np.empty((m, c), dtype=ops.dtype), np.empty((m, c), dtype=ops.dtype)
    scale = np.ones(c)
    T = ops.apply(U.astype(ops.dtype), out=KX)
    B, V = balances(U)
    E = T / B
    energy_history = [float(E.sum())]
    rounded_history = [float(partition_ratios(U.argmax(1), ops.edges, lam, n).sum())]
    best_U, best_outer = U, 0
    plateau_ref, last_gain = rounded_history[0], 0  # the partition energy the plateau rule measures gains from
    descent_history: list[float] = []
    inner_iterations: list[int] = []
    P = np.zeros((m, c), dtype=ops.dtype)  # dual variable over the box, |P| <= 1 (P = Q / box)
    scale_nc = np.sqrt(n * c)
    stop_reason = "max_outer"
    residual = np.inf
    cap_hits = 0
    if energy_history[0] == 0.0:
        # The ratios are non-negative, so a start with zero total variation in every class (each
        # class a union of connected components) is already a global minimiser.
        stop_reason, residual, max_outer = "zero_energy", 0.0, 0
    n_outer = 0
    prox_step = step
    max_step = 2.0**10 * step
    for n_outer in range(1, max_outer + 1):
        delta = prox_step * float(B.max())
        box = delta / B  # per-class TV weight δ/B_r of the prox problem = bound of the dual Q
        ops.scale_columns(KX, (1.0 / box) / scale)  # KX = K U diag(1/box); P = Q/box carries over
        scale = 1.0 / box
        G = U + V * (delta * E / B)
        tau = 1.0 / L
        sigma = 1.0 / (tau * L * L)
        U_k, E_k, B_k = U, E, B
        U_cur = U
        theta = 0.0
        accepted = False
        for it in range(1, max_inner + 1):
            # Dual ascent at the extrapolated point K Ū = (1+θ) K U − θ K U_old (products reused),
            # then the primal prox of ½‖U − G‖² + ι_C (strongly convex, hence the acceptance).
            ops.dual_ascent(P, KX, KX_old, sigma * (1.0 + theta), sigma * theta)
            U_new = project((U_cur - tau * (ops.adjoint(P) * box) + tau * G) / (1.0 + tau))
            theta = 1.0 / np.sqrt(1.0 + 2.0 * tau)
            tau *= theta
            sigma /= theta
            # KX_old is spent: the new product goes there, and the current one becomes the old
            T_new = ops.apply((U_new * scale).astype(ops.dtype), out=KX_old) * box
            KX, KX_old, U_cur = KX_old, KX, U_new
            B_new, V_new = balances(U_new)
            E_new = T_new / B_new
            step2 = float(np.sum((U_new - U_k) ** 2))
            descent = float(np.sum(B_new / B_k * (E_k - E_new)))
            # An iterate that has not moved passes the test trivially (0 >= 0) without being the
            # prox point, so it may only end the inner loop at the cap.
            if it >= min_inner and step2 > 0 and descent >= (1.0 - inner_eps) * step2 / delta:
                accepted = True
                break
        cap_hits += not accepted
        if adaptive_step:
            # The descent inequality holds for any prox step, so adapt it: grow it while one or
            # two primal-dual steps already give sufficient decrease (early, far from a
            # minimum), shrink it when the inner solver needs its whole budget.
            if accepted and it <= 2:
                prox_step = min(prox_step * 2.0, max_step)
            elif not accepted:
                prox_step = max(prox_step / 2.0, step)
        inner_iterations.append(it)
        descent_history.append(descent)
        U, T, B, V, E = U_new, T_new, B_new, V_new, E_new
        energy_history.append(float(E.sum()))
        rounded_history.append(float(partition_ratios(U.argmax(1), ops.edges, lam, n).sum()))
        if rounded_history[-1] <= min(rounded_history[:-1]):
            best_U, best_outer = U, n_outer  # ties: the later iterate, same partition but sharper
        if rounded_history[-1] <= (1.0 - partition_rtol) * plateau_ref:
            plateau_ref, last_gain = rounded_history[-1], n_outer
        residual = np.sqrt(step2) / scale_nc
        if verbose:
            print(f"tv_ratio outer {n_outer:4d}  energy {E.sum():.6g}  inner {it:3d}  step {residual:.2e}")
        if residual < tol:
            stop_reason = "tol"
            break
        if partition_patience and n_outer - last_gain >= partition_patience:
            stop_reason = "partition_plateau"
            break
        if energy_tol > 0 and n_outer >= patience:
            # Relative decrease of the energy over the last `patience` outer steps.
            past, now = energy_history[-1 - patience], energy_history[-1]
            if past - now <= energy_tol * abs(now):
                stop_reason = "energy_plateau"
                break

    info.update(
        energy_history=energy_history,
        rounded_history=rounded_history,
        descent_history=descent_history,
        inner_iterations=inner_iterations,
        n_outer=n_outer,
        n_inner_total=int(np.sum(inner_iterations)),
        inner_cap_hits=cap_hits,
        stop_reason=stop_reason,
        class_ratios=E,
        best_outer=best_outer,
        partition_energy=rounded_history[best_outer] if keep_best_partition else rounded_history[-1],
        time_s=time.perf_counter() - t_start,
    )
    if keep_best_partition:
        U = best_U
    return EnergyResult(U, n_outer, float(residual), stop_reason != "max_outer", info=info)
