"""Metrics of one grid cell and their mean ± std over seeds.

:func:`cell_metrics` extends :mod:`graphzoo.train.metrics` (accuracy, balanced accuracy, ROC-AUC
binary / macro one-vs-rest / per label and mean, per-class precision, recall, F1) with the
confusion matrix. :func:`summarise` groups result records by method and label fraction and gives
``mean``, ``std`` (sample standard deviation, ``ddof=1``; 0 for a single seed) and ``n`` of a
metric; :func:`results_table` lays them out as the seed's Tables 1–2 (rows methods, columns label
fractions, cells ``mean ± std``), naming which prediction of the test images each row reports, and
:func:`markdown_table` writes such a table for ``summary.md`` and ``report.md``.
:func:`collapsed_class` tells a model that predicts one class for every test image.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from ..train.metrics import classification_metrics, multilabel_metrics

__all__ = ["cell_metrics", "summarise", "results_table", "format_mean_std", "fraction_label", "prediction_label",
           "markdown_table", "collapsed_class", "PREDICTION_LABELS"]


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
    OrderedDict method -> {"label": display name, "kind": "method" | "baseline", "prediction":
    "transductive" | "inductive" | None (the record's ``test_prediction``),
    "cells": {label_fraction: {"mean", "std", "n", "seeds"}}}, methods in first-seen order.
    """
    out: OrderedDict[str, dict] = OrderedDict()
    groups: dict[tuple, list] = {}
    for r in records:
        key = r["method"]
        out.setdefault(key, {"label": r.get("label", key), "kind": r.get("role", "method"),
                             "prediction": r.get("test_prediction"), "cells": {}})
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


#: How the report and ``summary.md`` name the two predictions of the test images.
PREDICTION_LABELS = {"transductive": "graph (transductive)", "inductive": "net (inductive)"}
_OTHER = {"transductive": "inductive", "inductive": "transductive"}


def prediction_label(kind: str | None) -> str:
    """"transductive" -> "graph (transductive)", "inductive" -> "net (inductive)", unknown -> "—"."""
    return PREDICTION_LABELS.get(kind or "", kind or "—")


def results_table(records: list[dict], metric: str = "accuracy") -> tuple[list[str], list[list[str]], list[float]]:
    """The seed's table layout: rows methods, columns label fractions, cells ``mean ± std``.

    When the records say which prediction of the test images they report (``test_prediction``), a
    "Prediction" column names it: "graph (transductive)" (the test images were nodes of the graph and
    got the diffused labels) or "net (inductive)" (the trained network classified each image on its
    own). A run cell also records its other prediction (``test_<kind>_<metric>``, for accuracy and
    AUC); it gets a row of its own under the reported one, so the two kinds are never mixed in one
    row. Records without ``test_prediction`` (hand-made or older files) give the plain layout.

    Returns
    -------
    header : list of str ("Method"[, "Prediction"], "1 %", "5 %", ...)
    rows : list of list of str, one per (method, prediction)
    fractions : the column fractions (sorted; 1.0 appears when a fully supervised baseline ran)
    """
    s = summarise(records, metric)
    with_kind = any(r.get("test_prediction") for r in records)
    table = []  # (method label, prediction kind, cells by fraction)
    for key, m in s.items():
        table.append((m["label"], m["prediction"], m["cells"]))
        other = _OTHER.get(m["prediction"] or "")
        if with_kind and other:
            alt = summarise([r for r in records if r["method"] == key], f"test_{other}_{metric}")[key]["cells"]
            if any(c["mean"] is not None for c in alt.values()):
                table.append((m["label"], other, alt))
    fractions = sorted({f for _, _, cells in table for f in cells})
    header = ["Method"] + (["Prediction"] if with_kind else []) + [fraction_label(f) for f in fractions]
    rows = []
    for label, kind, cells in table:
        prediction = [prediction_label(kind)] if with_kind else []
        rows.append([label] + prediction + [format_mean_std(cells.get(f)) for f in fractions])
    return header, rows, fractions


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table (header line, separator, one line per row); a "|" inside a cell is escaped."""
    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header)] + [line(r) for r in rows])


def collapsed_class(confusion, names: list[str]) -> str | None:
    """The class a collapsed model predicts for every test image, else None.

    Parameters
    ----------
    confusion : array-like (c, c), rows true class, columns prediction (as :func:`cell_metrics` gives)
    names : the c class names

    A model has collapsed when all its predictions fall in one column although the test images
    hold more than one class (predicting the only class present is no collapse).
    """
    if confusion is None:
        return None
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.sum() == 0:
        return None
    predicted, present = cm.sum(0) > 0, cm.sum(1) > 0
    return names[int(predicted.argmax())] if predicted.sum() == 1 and present.sum() > 1 else None
