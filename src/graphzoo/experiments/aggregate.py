"""Metrics of one grid cell and their mean ± std over seeds.

:func:`cell_metrics` extends :mod:`graphzoo.train.metrics` (accuracy, balanced accuracy, ROC-AUC
binary / macro one-vs-rest / per label and mean, per-class precision, recall, F1) with the
confusion matrix. :func:`summarise` groups result records by method and label fraction and gives
``mean``, ``std`` (sample standard deviation, ``ddof=1``; 0 for a single seed) and ``n`` of a
metric; :func:`results_table` lays them out as the seed's Tables 1–2 (rows methods, columns label
fractions, cells ``mean ± std``).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from ..train.metrics import classification_metrics, multilabel_metrics

__all__ = ["cell_metrics", "summarise", "results_table", "format_mean_std", "fraction_label"]


def cell_metrics(y_true: np.ndarray, proba: np.ndarray, names: list[str], multilabel: bool) -> dict:
    """Test metrics of one cell.

    Parameters
    ----------
    y_true : ndarray of int (n,), or 0/1 (n, L) when ``multilabel``
    proba : ndarray of shape (n, c) or (n, L)
    names : class names (c) or label names (L)

    Returns
    -------
    dict with ``accuracy``, ``balanced_accuracy``, ``auc``, ``per_class`` (as
    :func:`graphzoo.train.metrics.classification_metrics` / ``multilabel_metrics``) and, for
    single-label tasks, ``confusion`` (c, c) as nested lists, rows true class, columns prediction.
    """
    if multilabel:
        return multilabel_metrics(y_true, proba, names)
    m = classification_metrics(y_true, proba, names)
    from sklearn.metrics import confusion_matrix

    if len(y_true):
        m["confusion"] = confusion_matrix(y_true, np.asarray(proba).argmax(1), labels=np.arange(len(names))).tolist()
    return m


def _mean_std(values: list[float]) -> tuple[float | None, float | None, int]:
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return None, None, 0
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, len(v)


def summarise(records: list[dict], metric: str = "accuracy") -> "OrderedDict[str, dict]":
    """Mean ± std of ``metric`` over seeds, per method and label fraction.

    Parameters
    ----------
    records : list of dict
        Result records (one per cell) with ``method``, ``label``, ``label_fraction`` and the
        metric at top level; a metric ``per_label_auc.<name>`` reads ``per_class[name]["auc"]``.
    metric : str

    Returns
    -------
    OrderedDict method -> {"label": display name, "kind": "method" | "baseline",
    "cells": {label_fraction: {"mean", "std", "n", "seeds"}}}, methods in first-seen order.
    """
    out: OrderedDict[str, dict] = OrderedDict()
    groups: dict[tuple, list] = {}
    for r in records:
        key = r["method"]
        out.setdefault(key, {"label": r.get("label", key), "kind": r.get("role", "method"), "cells": {}})
        if metric.startswith("per_label_auc."):
            name = metric.split(".", 1)[1]
            value = (r.get("per_class") or {}).get(name, {}).get("auc")
        else:
            value = r.get(metric)
        groups.setdefault((key, float(r["label_fraction"])), []).append((r.get("seed"), value))
    for (key, frac), vals in groups.items():
        mean, std, n = _mean_std([v for _, v in vals])
        out[key]["cells"][frac] = {"mean": mean, "std": std, "n": n, "seeds": sorted(s for s, _ in vals)}
    return out


def fraction_label(f: float) -> str:
    """0.01 -> "1 %", 0.2 -> "20 %", 1.0 -> "100 %"."""
    p = 100 * f
    return f"{p:.0f} %" if abs(p - round(p)) < 1e-9 else f"{p:g} %"


def format_mean_std(cell: dict | None, digits: int = 3) -> str:
    """``0.912 ± 0.010`` (``n`` seeds shown when fewer than the others is the caller's job); "—" if empty."""
    if not cell or cell.get("mean") is None:
        return "—"
    return f"{cell['mean']:.{digits}f} ± {cell['std']:.{digits}f}"


def results_table(records: list[dict], metric: str = "accuracy") -> tuple[list[str], list[list[str]], list[float]]:
    """The seed's table layout: header, rows (method label, then one ``mean ± std`` per fraction).

    Returns
    -------
    header : list of str ("Method", "1 %", "5 %", ...)
    rows : list of list of str
    fractions : the column fractions (sorted; 1.0 appears when a fully supervised baseline ran)
    """
    s = summarise(records, metric)
    fractions = sorted({f for m in s.values() for f in m["cells"]})
    header = ["Method"] + [fraction_label(f) for f in fractions]
    rows = []
    for m in s.values():
        rows.append([m["label"]] + [format_mean_std(m["cells"].get(f)) for f in fractions])
    return header, rows, fractions
