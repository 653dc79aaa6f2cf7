"""Classification metrics for runs: accuracy, balanced accuracy, AUC, per class / per label.

Binary AUC is the ROC-AUC of the positive class's probability; multiclass AUC is the macro
one-vs-rest ROC-AUC; multi-label AUC is the mean of the per-label AUCs (the ChestX-ray14 metric
of the seed). A class or label with a single value among the targets has no AUC (``None``) and is
left out of the means.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score, precision_recall_fscore_support, roc_auc_score

__all__ = ["classification_metrics", "multilabel_metrics"]


def _auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    if len(np.unique(y_true)) < 2:
        return None
    return float(roc_auc_score(y_true, score))


def _balanced_accuracy(y_true: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's; its warnings that a
    predicted class is absent from the targets, or that targets and predictions hold one class only,
    as on a one-class validation or test part, are expected here)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found in 'y_true' and 'y_pred'")
        return float(balanced_accuracy_score(y_true, pred))


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, class_names: list[str]) -> dict:
    """Metrics of single-label predictions.

    Parameters
    ----------
    y_true : ndarray of int, shape (n,)
    proba : ndarray of shape (n, c)
        Class probabilities (rows summing to one); the prediction is the row argmax.
    class_names : list of str, length c

    Returns
    -------
    dict with ``n``, ``accuracy``, ``balanced_accuracy``, ``auc`` and ``per_class`` (name ->
    precision, recall, f1, auc, support).
    """
    y_true = np.asarray(y_true)
    proba = np.asarray(proba, dtype=np.float64)
    c = proba.shape[1]
    if len(y_true) == 0:
        return {"n": 0}
    pred = proba.argmax(1)
    labels = np.arange(c)
    prec, rec, f1, sup = precision_recall_fscore_support(y_true, pred, labels=labels, zero_division=0)
    per_class_auc = [_auc((y_true == k).astype(int), proba[:, k]) for k in labels]
    if c == 2:
        auc = per_class_auc[1]
    else:
        valid = [a for a in per_class_auc if a is not None]
        auc = float(np.mean(valid)) if valid else None
    return {
        "n": int(len(y_true)),
        "accuracy": float((pred == y_true).mean()),
        "balanced_accuracy": _balanced_accuracy(y_true, pred),
        "auc": auc,
        "per_class": {
            name: {"precision": float(prec[k]), "recall": float(rec[k]), "f1": float(f1[k]), "auc": per_class_auc[k],
                   "support": int(sup[k])}
            for k, name in enumerate(class_names)
        },
    }


def multilabel_metrics(y_true: np.ndarray, proba: np.ndarray, label_names: list[str], threshold: float = 0.5) -> dict:
    """Metrics of multi-label predictions.

    Parameters
    ----------
    y_true : ndarray of 0/1, shape (n, L)
    proba : ndarray of shape (n, L)
        Per-label probabilities; a label is predicted present when above ``threshold``.

    Returns
    -------
    dict with ``auc`` (mean per-label AUC), ``accuracy`` (label-wise accuracy over all n·L
    decisions), ``balanced_accuracy`` (mean over labels of the mean of sensitivity and
    specificity) and ``per_class`` (label -> auc, sensitivity, specificity, positives).
    """
    y_true = np.asarray(y_true).astype(int)
    proba = np.asarray(proba, dtype=np.float64)
    if len(y_true) == 0:
        return {"n": 0}
    pred = (proba > threshold).astype(int)
    per, aucs, bals = {}, [], []
    for j, name in enumerate(label_names):
        t, p = y_true[:, j], pred[:, j]
        pos, neg = t == 1, t == 0
        sens = float(p[pos].mean()) if pos.any() else None
        spec = float(1 - p[neg].mean()) if neg.any() else None
        a = _auc(t, proba[:, j])
        per[name] = {"auc": a, "sensitivity": sens, "specificity": spec, "positives": int(pos.sum())}
        if a is not None:
            aucs.append(a)
        if sens is not None and spec is not None:
            bals.append((sens + spec) / 2)
    return {
        "n": int(len(y_true)),
        "accuracy": float((pred == y_true).mean()),
        "balanced_accuracy": float(np.mean(bals)) if bals else None,
        "auc": float(np.mean(aucs)) if aucs else None,
        "per_class": per,
    }
