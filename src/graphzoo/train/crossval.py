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
from dataclasses import dataclass

import numpy as np

from ..energies import prepare_graph
from ..graph_step import build_graph, graph_step
from .metrics import classification_metrics

__all__ = ["graph_step_cv", "out_of_fold_proba", "optimism_check", "OutOfFold"]


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
    if W is None:
        W = build_graph(Z, n_neighbors=n_neighbors, metric=metric)
    unlabelled = np.flatnonzero(~data.labelled & (data.split == "train"))
    oof = out_of_fold_proba(W, idx, y, groups, energy=energy, energy_params=energy_params,
                            n_classes=data.n_outputs, k=k, seed=seed, others=unlabelled)
    proba, fold, how = oof.proba, oof.fold, oof.how
    fold_acc = [float((proba[fold == f].argmax(1) == y[fold == f]).mean()) for f in range(k)]
    m = classification_metrics(y, proba, data.names)
    return {"folds": k, "how": how, "n": int(len(idx)),
            **{key: m.get(key) for key in ("accuracy", "balanced_accuracy", "auc", "per_class")},
            "fold_accuracy": fold_acc, "fold_accuracy_std": float(np.std(fold_acc)),
            "caveat": "the network was trained with every label, the held-out fold's too: optimistic "
                      "compared with a held-out test set",
            "optimism_check": _flag_optimism(optimism_check(proba.max(1), oof.others.max(1)))}


def optimism_check(conf_out_of_fold: np.ndarray, conf_unlabelled: np.ndarray) -> dict:
    """Does ψ know the labelled images better than the unlabelled ones? The one-sided Mann–Whitney test of
    :func:`graphzoo.calibration.optimism_p_value` on the out-of-fold confidences (max probability) of the labelled
    images against those of the unlabelled training images scored in the same diffusions (:class:`OutOfFold`).

    Returns ``p_value`` (None without unlabelled images), ``alpha`` (:data:`~graphzoo.calibration.OPTIMISM_ALPHA`:
    below it the scores count as optimistic) and both mean confidences. The calibration set
    (:func:`graphzoo.train.evaluate.calibration_set`) and :func:`graph_step_cv` both read it."""
    from ..calibration import OPTIMISM_ALPHA, optimism_p_value

    p = optimism_p_value(conf_out_of_fold, conf_unlabelled)
    return {"p_value": None if np.isnan(p) else p, "alpha": OPTIMISM_ALPHA,
            "mean_confidence_out_of_fold": float(np.mean(conf_out_of_fold)),
            "mean_confidence_unlabelled": float(np.mean(conf_unlabelled)) if len(conf_unlabelled) else None}


def _flag_optimism(check: dict) -> dict:
    """The cross-validation's check, with a warning when it fires: on malaria at 1 % labels
    (bench/partial_input_bench.py, docs/results.md) the cross-validation said 0.94–0.996 where the hidden
    truth was 0.85–0.89."""
    p = check["p_value"]
    if p is not None and p < check["alpha"]:
        check["warning"] = (f"the labelled images are scored more confidently than the unlabelled ones (Mann-Whitney "
                            f"p = {p:.2g}): the network has learnt them, so this estimate is likely optimistic by "
                            f"several points; keep a held-out part (drop --no-holdout) to measure the run")
    return check


@dataclass
class OutOfFold:
    """Out-of-fold graph probabilities (:func:`out_of_fold_proba`).

    proba : (len(idx), c) each labelled node's probabilities with its own label hidden.
    fold : (len(idx),) the fold each node was hidden in; how : how the folds were made.
    others : (len(others), c) probabilities of the ``others`` nodes, each read from one fold's diffusion
        (drawn at random, seeded): nodes without a label scored in the same diffusions as the hidden ones.
    """

    proba: np.ndarray
    fold: np.ndarray
    how: str
    others: np.ndarray


def out_of_fold_proba(W, idx: np.ndarray, y: np.ndarray, groups: np.ndarray | None, *, energy, energy_params,
                      n_classes: int, k: int, seed: int, others: np.ndarray | None = None) -> OutOfFold:
    """Out-of-fold graph probabilities of the labelled nodes ``idx``: each scored with its own label hidden.

    The labels ``y`` (len(idx),) are dealt into ``k`` folds (stratified, patient-grouped by ``groups`` where
    possible, :func:`_folds`); for fold f the graph step runs on ``W`` (a sparse (N, N) graph or its
    :func:`~graphzoo.energies.prepare_graph`) with the labels of the other folds only, and scores fold f's
    nodes. A node's own label is therefore never among the labels that predict it; nodes outside ``idx`` are
    unlabelled in every diffusion. ``others`` (indices outside ``idx``) are each read from one fold's
    diffusion, so that they and the hidden nodes are scored by the same label sets (:class:`OutOfFold`).
    """
    idx = np.asarray(idx, np.int64)
    others = np.zeros(0, np.int64) if others is None else np.asarray(others, np.int64)
    if np.isin(others, idx).any():
        raise ValueError("others must not hold nodes of idx (those are the ones scored out of fold)")
    fold, how = _folds(y, groups, k, seed)
    other_fold = np.random.default_rng(seed).integers(0, k, len(others))
    G = prepare_graph(W)  # checked, components and renumbering once for all folds
    proba, proba_others = np.zeros((len(idx), n_classes)), np.zeros((len(others), n_classes))
    for f in range(k):
        y_all = np.full(G.W.shape[0], -1, np.int64)
        y_all[idx[fold != f]] = y[fold != f]
        step = graph_step(None, y_all, W=G, energy=energy, energy_params=energy_params, n_classes=n_classes)
        proba[fold == f] = step.proba[idx[fold == f]]
        proba_others[other_fold == f] = step.proba[others[other_fold == f]]
    return OutOfFold(proba, fold, how, proba_others)
