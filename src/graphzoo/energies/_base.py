"""What every energy shares: the registry, the result type, input checks and the front door.

An *energy* is a plain function

    energy(W, y, n_classes, **params) -> EnergyResult

with ``W`` a symmetric non-negative CSR matrix of shape (n, n), ``y`` an int array of shape (n,)
holding a class index in ``[0, n_classes)`` for labelled nodes and ``-1`` for unlabelled ones.
``EnergyResult.scores`` has shape (n, n_classes); the prediction is its row-wise argmax.

Energies may assume that every connected component of ``W`` holds at least one labelled node:
:func:`diffuse`, the front door used by the classifier and the models, guarantees it by running the
energy on the labelled components only and reporting the rest in ``EnergyResult.unreachable``.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp

from ..registry import Registry, did_you_mean
from ._graph import PreparedGraph, check_graph, induced_subgraph, prepare_graph  # noqa: F401 (re-exported)

__all__ = [
    "ENERGIES",
    "EnergyResult",
    "ConvergenceWarning",
    "DegenerateSolutionWarning",
    "UnlabelledComponentWarning",
    "diffuse",
    "diffuse_per_label",
    "check_graph",
    "check_labels",
    "check_energy_params",
    "one_hot",
]

#: Registry of energies by name; ``ENERGIES.get("poisson")`` returns the function.
ENERGIES: Registry[Callable[..., "EnergyResult"]] = Registry("energy")


def check_energy_params(energy: str, params: dict) -> None:
    """Refuse ``params`` that energy ``energy`` would reject, before any graph is built.

    Names are checked against the energy's signature (the keywords after ``W, y, n_classes``),
    with a "did you mean". Values are checked by the energy's own argument checks: it runs once on
    a six-node toy graph (milliseconds), so a rule such as label spreading's ``0 < alpha < 1`` is
    stated in one place. List values (e.g. ``class_priors``) depend on the data's classes and are
    checked when the run diffuses. Raises ``ValueError`` naming the key and the fix.
    """
    fn = ENERGIES.get(energy)
    sig = inspect.signature(fn)
    names = [p.name for p in list(sig.parameters.values())[3:] if p.kind != p.VAR_KEYWORD]
    takes_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    for key in params:
        if key not in names and not takes_any:
            raise ValueError(f"energy_params: energy {energy!r} has no parameter {key!r}.{did_you_mean(key, names)} "
                             f"Its parameters: {', '.join(names) or 'none'}.")
    scalars = {k: v for k, v in params.items() if not isinstance(v, (list, tuple, dict))}
    # Two triangles joined by one edge, one label in each: every energy's assumptions hold.
    rows, cols = [0, 0, 1, 3, 3, 4, 2], [1, 2, 2, 4, 5, 5, 3]
    W = sp.coo_matrix((np.ones(7), (rows, cols)), shape=(6, 6))
    W = (W + W.T).tocsr()
    y = np.array([0, -1, -1, 1, -1, -1])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence on a toy graph says nothing about the run
            fn(W, y, 2, **scalars)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"energy_params for {energy!r}: {exc}") from None


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped at its iteration cap before reaching its tolerance."""


class DegenerateSolutionWarning(UserWarning):
    """An energy put every unlabelled node in one class although several classes are labelled."""


class UnlabelledComponentWarning(UserWarning):
    """Some nodes lie in connected components that hold no labelled node."""


@dataclass
class EnergyResult:
    """Output of an energy minimisation.

    Attributes
    ----------
    scores : ndarray of shape (n, n_classes)
        Per-class scores; the prediction is ``scores.argmax(1)``. Their scale depends on the
        energy (label spreading: non-negative; Poisson: centred, signed).
    n_iter : int
        Iterations the solver ran (outer iterations for nested solvers).
    residual : float
        Final relative residual (or the energy's own stopping quantity).
    converged : bool
        Whether the stopping tolerance was reached before the iteration cap.
    unreachable : ndarray of bool, shape (n,)
        Nodes in components without a labelled node; their ``scores`` rows are zero.
        Set by :func:`diffuse`.
    info : dict
        Energy-specific diagnostics (energy history, stop reason, class weights, ...).
    """

    scores: np.ndarray
    n_iter: int = 0
    residual: float = 0.0
    converged: bool = True
    unreachable: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


def check_labels(y, n: int, n_classes: int | None = None) -> tuple[np.ndarray, int]:
    """Validate node labels: ints, shape (n,), ``-1`` or a class index; every class labelled.

    Returns ``(y as int64, n_classes)``. ``n_classes`` defaults to ``max(y) + 1``.
    """
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match W, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"y must hold integer class indices (-1 = unlabelled), got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    labelled = y >= 0
    if not labelled.any():
        raise ValueError("no labelled node: at least one entry of y must be a class index (not -1)")
    if (y < -1).any():
        raise ValueError(f"y has values below -1 ({np.unique(y[y < -1])[:5].tolist()}); use -1 for unlabelled")
    if n_classes is None:
        n_classes = int(y.max()) + 1
    if y.max() >= n_classes:
        raise ValueError(f"y has labels outside the {n_classes} classes: {np.unique(y[y >= n_classes])[:5].tolist()}")
    counts = np.bincount(y[labelled], minlength=n_classes)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"class(es) {missing} have no labelled node; label at least one sample of each class")
    return y, int(n_classes)


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Return the (n, n_classes) float64 matrix with a 1 at (i, y_i) for labelled i, 0 elsewhere."""
    Y = np.zeros((len(y), n_classes))
    labelled = np.flatnonzero(y >= 0)
    Y[labelled, y[labelled]] = 1.0
    return Y


def diffuse(
    W,
    y,
    energy: str | Callable[..., Any] = "label_spreading",
    n_classes: int | None = None,
    *,
    reorder: bool | str = "auto",
    **params,
) -> EnergyResult:
    """Minimise a graph energy: the one entry point the classifier and models use.

    Parameters
    ----------
    W : scipy sparse matrix of shape (n, n), or a :class:`PreparedGraph`
        Symmetric non-negative weights (:func:`graphzoo.knn_graph`). A sparse matrix is checked,
        its components found and (if large) its locality order computed on every call; pass
        :func:`prepare_graph`'s result to do that once for many calls on one graph.
    y : array-like of int, shape (n,)
        Class index for labelled nodes, ``-1`` for unlabelled ones.
    energy : str or callable, default="label_spreading"
        A name in :data:`ENERGIES` or a callable with the energy signature. A callable may
        return an :class:`EnergyResult` or just the (n, n_classes) score array.
    n_classes : int, optional
        Number of classes; default ``max(y) + 1``. Every class needs a labelled node.
    reorder : bool or "auto", default="auto"
        Renumber the nodes for cache locality (:func:`locality_order`) before running the
        energy and restore the order afterwards; ``"auto"`` does it from
        ``REORDER_MIN_NODES`` nodes on. Results are the same up to solver tolerance. For a
        PreparedGraph, "auto" keeps its choice.
    **params
        Passed to the energy. Array parameters with one row per node (e.g. a warm start
        ``x0``) are renumbered with the graph.

    Returns
    -------
    EnergyResult
        With ``unreachable`` set. Nodes in a connected component that holds no labelled node
        cannot receive information from any label: their score rows are all zero, they are
        flagged in ``unreachable``, and an :class:`UnlabelledComponentWarning` says how many there
        are. (scikit-learn returns NaN there, its issue #9292; we never do.)

    Raises
    ------
    FloatingPointError
        If the energy returns NaN or inf scores, naming the energy.

    Warns
    -----
    DegenerateSolutionWarning
        If at least two classes are labelled but every reachable unlabelled node (at least
        ``DEGENERATE_MIN_NODES`` of them) gets the same class: an answer that ignores all labels but
        one's, e.g. Laplace learning at one label per class (Calder et al. 2020), or a solver stuck
        at its start.
    """
    G = prepare_graph(W, reorder=reorder)
    y, n_classes = check_labels(y, G.shape[0], n_classes)
    fn = _energy_fn(energy)
    plan = _plan(G, y >= 0)
    result = _run(plan, fn, y, n_classes, params)
    free = (y < 0) & ~result.unreachable
    labelled_classes = np.unique(y[y >= 0])
    if len(labelled_classes) >= 2 and free.sum() >= DEGENERATE_MIN_NODES:
        predicted = np.unique(result.scores[free].argmax(1))
        if len(predicted) == 1:
            warnings.warn(
                f"energy {_name(fn)} put all {int(free.sum())} unlabelled nodes in class {int(predicted[0])} "
                f"although {len(labelled_classes)} classes are labelled: its answer ignores the other labels. "
                "Try energy='poisson' (made for very few labels), class_priors=..., more labels per class, "
                "or another n_neighbors.",
                DegenerateSolutionWarning,
                stacklevel=2,
            )
    return result


#: :func:`diffuse` judges an all-one-class answer degenerate from this many unlabelled nodes on.
DEGENERATE_MIN_NODES = 10


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def diffuse_per_label(
    W,
    Y,
    energy: str | Callable[..., Any] = "label_spreading",
    *,
    reorder: bool | str = "auto",
    **params,
) -> list[EnergyResult | None]:
    """Multi-label diffusion: one two-class :func:`diffuse` per label, on one graph.

    Parameters
    ----------
    W : scipy sparse matrix of shape (n, n), or a :class:`PreparedGraph`
        As in :func:`diffuse`.
    Y : array-like of int, shape (n, L)
        ``1`` / ``0`` where label ``j`` is present / absent on a labelled node, ``-1`` on the
        unlabelled nodes; the same rows are labelled in every column (one labelled image has all
        its labels).
    energy, reorder, **params
        As in :func:`diffuse`.

    Returns
    -------
    list of L EnergyResult or None
        Result ``j`` has scores of shape (n, 2) (absent, present). ``None`` where the labelled nodes
        all carry the same value of label ``j``: no two-class problem to solve there.

    Same results as calling :func:`diffuse` per column, but the graph check, the connected
    components and the locality renumbering (≈ 0.3 s together at 112k nodes) are done once, not L
    times (:func:`prepare_graph`).
    """
    G = prepare_graph(W, reorder=reorder)
    n = G.shape[0]
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ValueError(f"Y must have shape ({n}, n_labels) to match W, got {Y.shape}")
    labelled = Y[:, 0] >= 0
    if not (np.all((Y >= 0) == labelled[:, None])):
        raise ValueError("Y must mark the same rows unlabelled (-1) in every column")
    if Y[labelled].size and not np.isin(Y[labelled], (0, 1)).all():
        raise ValueError("Y must hold 0 / 1 on labelled rows (label absent / present)")
    fn = _energy_fn(energy)
    plan = _plan(G, labelled)
    out: list[EnergyResult | None] = []
    for j in range(Y.shape[1]):
        y = Y[:, j]
        if np.unique(y[labelled]).size < 2:
            out.append(None)
            continue
        y, _ = check_labels(y, n, 2)
        out.append(_run(plan, fn, y, 2, params))
    return out


@dataclass
class _Plan:
    """What :func:`diffuse` works out from the graph and the labelled nodes, before any energy runs."""

    W: sp.csr_matrix  # the checked graph, (n, n)
    reachable: np.ndarray  # (n,) bool: in a connected component that holds a labelled node
    nodes: np.ndarray | None  # the nodes the energy runs on, in its order; None = all, as they are
    W_run: sp.csr_matrix  # W restricted to / renumbered by `nodes`


def _energy_fn(energy) -> Callable[..., Any]:
    fn = ENERGIES.get(energy) if isinstance(energy, str) else energy
    if not callable(fn):
        raise TypeError(f"energy must be a registered name or a callable, got {type(energy).__name__}")
    return fn


def _plan(G: PreparedGraph, labelled: np.ndarray) -> _Plan:
    n = G.shape[0]
    has_label = np.bincount(G.components[labelled], minlength=G.n_components) > 0
    reachable = has_label[G.components]
    if not reachable.all():
        warnings.warn(
            f"{int((~reachable).sum())} of {n} nodes lie in {int((~has_label).sum())} connected component(s) "
            "with no labelled node; they get zero scores and are flagged in `unreachable`. "
            "Label a node there or increase n_neighbors.",
            UnlabelledComponentWarning,
            stacklevel=3,
        )
    # The energy runs on `nodes`: the reachable ones, in the prepared locality order if there is one.
    if G.order is None:
        if reachable.all():
            return _Plan(G.W, reachable, None, G.W)
        nodes = np.flatnonzero(reachable)
        return _Plan(G.W, reachable, nodes, induced_subgraph(G.W, nodes))
    keep = reachable[G.order]
    if keep.all():
        return _Plan(G.W, reachable, G.order, G.W_ordered)
    # Cutting the reordered graph gives the same arrays as renumbering W by order[keep].
    return _Plan(G.W, reachable, G.order[keep], induced_subgraph(G.W_ordered, np.flatnonzero(keep)))


def _run(plan: _Plan, fn, y: np.ndarray, n_classes: int, params: dict) -> EnergyResult:
    n, nodes = plan.W.shape[0], plan.nodes
    if nodes is None:
        result = fn(plan.W, y, n_classes, **params)
        result = result if isinstance(result, EnergyResult) else EnergyResult(np.asarray(result))
    else:
        per_node = {k: np.asarray(v)[nodes] for k, v in params.items() if isinstance(v, np.ndarray) and len(v) == n}
        sub = fn(plan.W_run, y[nodes], n_classes, **{**params, **per_node})
        sub = sub if isinstance(sub, EnergyResult) else EnergyResult(np.asarray(sub))
        scores = np.zeros((n, n_classes), dtype=sub.scores.dtype)
        scores[nodes] = sub.scores
        result = EnergyResult(scores, sub.n_iter, sub.residual, sub.converged, None, sub.info)
    result.unreachable = ~plan.reachable
    if result.scores.shape != (n, n_classes):
        raise ValueError(f"energy returned scores of shape {result.scores.shape}, expected {(n, n_classes)}")
    if not np.isfinite(result.scores).all():
        bad = int((~np.isfinite(result.scores)).any(axis=1).sum())
        raise FloatingPointError(
            f"energy {_name(fn)} returned NaN or inf scores on {bad} of {n} nodes. Check W for extreme weights "
            "(build it with knn_graph), try a float64 graph or energy='poisson', and report it if it persists")
    if not result.converged:
        warnings.warn(
            f"energy {_name(fn)} stopped at its iteration cap "
            f"({result.n_iter} iterations, residual {result.residual:.2e}); raise max_iter or tol",
            ConvergenceWarning,
            stacklevel=3,
        )
    return result
