"""The quality estimate of a production run (``holdout=False``): K-fold cross-validation of the graph step.

Without a test part every label trains, so nothing is left to score against. Instead the labels
are dealt into K folds (stratified by class, patient-grouped where ids exist); for each fold its
labels are hidden, the graph step (same features, graph and energy as the run) predicts them
from the other folds' labels, and the pooled out-of-fold predictions are scored.

What it measures, honestly: the graph step's accuracy on the labelled images *given the final
features*. The network ψ was trained with every label, the hidden fold's too, so the estimate is
optimistic compared with a true held-out test set; it says how consistent the labels are with
the graph, not how a new hospital's images will fare.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..energies import prepare_graph
from ..graph_step import build_graph, graph_step
from .metrics import classification_metrics

__all__ = ["graph_step_cv"]


def _folds(y: np.ndarray, groups: np.ndarray | None, k: int, seed: int) -> tuple[np.ndarray, str]:
    """Fold of each label (K folds) and how they were made; every fold's complement holds every class."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    fold = np.zeros(len(y), np.int64)
    tries = []
    if groups is not None and len(np.unique(groups)) >= k:
        tries.append(("stratified, patient-grouped", StratifiedGroupKFold(k, shuffle=True, random_state=seed), groups))
    tries.append(("stratified", StratifiedKFold(k, shuffle=True, random_state=seed), None))
    n_classes = len(np.unique(y))
    for how, cv, g in tries:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            for f, (_, test) in enumerate(cv.split(np.zeros((len(y), 1)), y, g)):
                fold[test] = f
        # A patient-grouped fold may take a whole class away; the graph step then cannot run.
        if all(len(np.unique(y[fold != f])) == n_classes for f in range(k)):
            return fold, how
    return fold, "stratified"


def graph_step_cv(Z: np.ndarray, data, *, energy, energy_params, n_neighbors: int, metric: str, seed: int,
                  k: int = 5, W=None) -> dict:
    """K-fold cross-validation of the graph step on the labels of ``data`` (a PreparedData).

    Parameters
    ----------
    Z : (N, d) final features of every image (the graph is built once over all of them).
    data : PreparedData; its labelled images (training and validation) are the ones scored.
    k : folds, lowered to the smallest class's label count (at least 2 needed).
    W : the kNN graph already built over ``Z`` with ``n_neighbors`` and ``metric`` (the run's evaluation has
        it; the search dominates the cost), or None to build it here.

    Returns
    -------
    dict: ``folds``, ``how`` (stratified / patient-grouped), ``n`` labels scored, the pooled
    ``accuracy`` / ``balanced_accuracy`` / ``auc`` / ``per_class`` of the out-of-fold predictions,
    ``fold_accuracy`` (one per fold) and ``caveat`` (why it is optimistic); or ``{"n", "note"}``
    when there are too few labels.
    """
    idx = np.flatnonzero(data.labelled)
    y = data.targets[idx]
    k = int(min(k, np.bincount(y, minlength=data.n_outputs).min()))
    if k < 2:
        return {"n": int(len(idx)), "note": "too few labels for cross-validation (a class has fewer than 2)"}
    groups = None if data.patient_ids is None else np.asarray(data.patient_ids)[idx]
    fold, how = _folds(y, groups, k, seed)
    if W is None:
        W = build_graph(Z, n_neighbors=n_neighbors, metric=metric)
    W = prepare_graph(W)  # checked, components and renumbering once for all folds
    proba = np.zeros((len(idx), data.n_outputs))
    fold_acc = []
    for f in range(k):
        y_all = np.full(len(Z), -1, np.int64)
        y_all[idx[fold != f]] = y[fold != f]
        step = graph_step(None, y_all, W=W, energy=energy, energy_params=energy_params, n_classes=data.n_outputs)
        proba[fold == f] = step.proba[idx[fold == f]]
        fold_acc.append(float((proba[fold == f].argmax(1) == y[fold == f]).mean()))
    m = classification_metrics(y, proba, data.names)
    return {"folds": k, "how": how, "n": int(len(idx)),
            **{key: m.get(key) for key in ("accuracy", "balanced_accuracy", "auc", "per_class")},
            "fold_accuracy": fold_acc, "fold_accuracy_std": float(np.std(fold_acc)),
            "caveat": "the network was trained with every label, the held-out fold's too: optimistic "
                      "compared with a held-out test set"}
