"""The final evaluation of a run: both predictions for every image, metrics, and the files.

Two predictions are made for every image and both are reported:

* **graph (transductive)**: every image joins one kNN graph built from the final ψ(x), with the
  labels of the labelled *training* images only (validation labels stay out); the energy's
  class probabilities (:func:`graphzoo.graph_step.graph_step`).
* **net (inductive)**: the trained network's softmax / sigmoid, as for a new image.

``metrics.json``'s headline ``accuracy`` / ``balanced_accuracy`` / ``auc`` are those of the
``test_prediction`` kind (``"auto"``: graph for One Pass, whose prediction is the energy's; net
for Dynamic Pass, as in LP-DeepSSL); ``reported_prediction`` says which in words.
"""

from __future__ import annotations

import csv
import json
import time

import numpy as np

from .. import progress
from ..graph_step import graph_step

__all__ = ["evaluate", "collapsed_classes", "write_history", "write_metrics"]

_KIND_WORDS = {"transductive": "graph (transductive): the energy's prediction on the kNN graph of the final features",
               "inductive": "net (inductive): the trained network's own prediction"}


def collapsed_classes(pred: np.ndarray, truth: np.ndarray) -> int | None:
    """The one class every prediction falls in, when the truth has several (a collapsed model); else None."""
    if len(pred) == 0 or len(np.unique(truth)) < 2:
        return None
    values = np.unique(pred)
    return int(values[0]) if len(values) == 1 else None


def evaluate(trainer) -> dict:
    """Embed every image, run the graph step, score both predictions, write the run's files."""
    cfg, d = trainer.cfg, trainer.data
    t0 = time.perf_counter()
    logits, Z = trainer.infer(np.arange(len(d.split)), tta=cfg.tta)
    np.save(trainer.rundir.features, Z)  # ψ of every image, for baselines and the report (run_features)
    p_net = trainer.proba(logits)
    y = np.where(d.graph_labels[:, None] if d.multilabel else d.graph_labels, d.targets, -1)
    step = graph_step(Z, y, energy=cfg.energy, energy_params=cfg.energy_params, n_neighbors=cfg.n_neighbors,
                      metric=cfg.graph_metric, n_classes=d.n_outputs, multilabel=d.multilabel)
    p_graph = step.proba
    kind = cfg.test_prediction
    if kind == "auto":
        kind = "transductive" if cfg.mode == "one-pass" else "inductive"
    p_main = p_graph if kind == "transductive" else p_net
    test, unl, val = trainer.idx_test, trainer.idx_unl, trainer.idx_val
    unl_t = unl[d.has_truth[unl]]
    headline = trainer.metrics(test, p_main[test])
    metrics = {
        "mode": cfg.mode, "backbone": cfg.backbone, "energy": cfg.energy,
        "task": "multilabel" if d.multilabel else "multiclass",
        "test_prediction": kind, "reported_prediction": _KIND_WORDS[kind],
        **{k: headline.get(k) for k in ("accuracy", "balanced_accuracy", "auc")},
        "per_class": headline.get("per_class"),
        "n_images": int(len(d.split)), "n_train": int(len(trainer.idx_train)),
        "n_labelled_train": int(len(trainer.idx_lab)), "n_val_labelled": int(len(val)), "n_test": int(len(test)),
        "label_fraction_effective": float(len(trainer.idx_lab) / max(len(trainer.idx_train), 1)),
        "split": d.split_source,
        "test_inductive": trainer.metrics(test, p_net[test]),
        "test_transductive": trainer.metrics(test, p_graph[test]),
        # scored over the images with a truth only (those without one are predicted, not scored)
        "unlabelled_train_transductive": trainer.metrics(unl_t, p_graph[unl_t]) if len(unl_t) else {},
        "val": trainer.metrics(val, p_net[val]) if len(val) else {},
        "graph": step.info,
        "epochs": trainer.state["epoch"], "best_epoch": trainer.state["best_epoch"],
        "stop_reasons": trainer.state["stop_reasons"], "final_model": trainer.final_model(),
        "eval_s": round(time.perf_counter() - t0, 1),
    }
    if not d.multilabel:
        metrics["collapsed"] = _collapse_report(d, test, p_net, p_graph, trainer.cfg.progress)
    _add_label_accounting(trainer, metrics, Z)
    _write_predictions(trainer, p_net, p_graph, p_main)
    return metrics


def _add_label_accounting(trainer, metrics: dict, Z: np.ndarray) -> None:
    """``labels`` (where the source's labels went, :func:`.trainer.label_counts`) and, without a
    test part (``holdout=False``), the cross-validation estimate that stands in for test metrics."""
    from .trainer import label_counts

    d, cfg = trainer.data, trainer.cfg
    counts = label_counts(d)
    metrics["labels"] = counts
    metrics["n_unlabelled_source"] = counts["n_unlabelled_source"]
    if cfg.holdout or d.multilabel:
        return
    from .crossval import graph_step_cv

    cv = graph_step_cv(Z, d, energy=cfg.energy, energy_params=cfg.energy_params, n_neighbors=cfg.n_neighbors,
                       metric=cfg.graph_metric, seed=cfg.seed)
    metrics["cross_validation"] = cv
    metrics["quality_estimate"] = (f"{cv['folds']}-fold cross-validation of the graph step on the labels"
                                   if "folds" in cv else f"none: {cv['note']}")


def _collapse_report(d, test, p_net, p_graph, verbose: bool) -> dict:
    """``{"inductive": class name or None, "transductive": ...}``, said on stderr when a model collapsed."""
    out = {}
    for kind, p in (("inductive", p_net), ("transductive", p_graph)):
        k = collapsed_classes(p[test].argmax(1), d.targets[test])
        out[kind] = None if k is None else d.names[k]
        if k is not None:
            progress.say(f"warning: the {'net' if kind == 'inductive' else 'graph'} predicts '{d.names[k]}' for all "
                         f"{len(test)} test images (a collapsed model: too few or unbalanced labels, or a learning "
                         "rate too high)", verbose)
    return out


def _write_predictions(trainer, p_net, p_graph, p_main) -> None:
    d = trainer.data
    fname = (lambda i: "") if d.filenames is None else (lambda i: d.filenames[i])  # noqa: E731
    cols = [f"prob_{n}" for n in d.names]
    with open(trainer.rundir.predictions, "w", newline="") as fh:
        w = csv.writer(fh)
        if d.multilabel:
            w.writerow(["index", "filename", "split", "labelled"] + [f"true_{n}" for n in d.names] + cols
                       + [f"graph_prob_{n}" for n in d.names])
            for i in range(len(d.split)):
                w.writerow([i, fname(i), d.split[i], int(d.labelled[i])] + d.targets[i].tolist()
                           + [f"{v:.5f}" for v in p_main[i]] + [f"{v:.5f}" for v in p_graph[i]])
            return
        w.writerow(["index", "filename", "split", "labelled", "true", "pred", "pred_net", "pred_graph"] + cols)
        pm, pn, pg = p_main.argmax(1), p_net.argmax(1), p_graph.argmax(1)
        for i in range(len(d.split)):
            true = d.names[d.targets[i]] if d.targets[i] >= 0 else ""  # no label in the source: empty
            w.writerow([i, fname(i), d.split[i], int(d.labelled[i]), true, d.names[pm[i]],
                        d.names[pn[i]], d.names[pg[i]]] + [f"{v:.5f}" for v in p_main[i]])


def write_history(trainer) -> None:
    """history.csv: one row per epoch; ``stop_reason`` on the last epoch of each phase."""
    rows, reasons = trainer.state["history"], trainer.state["stop_reasons"]
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(trainer.rundir.history, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys + ["stop_reason"])
        w.writeheader()
        for i, r in enumerate(rows):
            last_of_phase = i + 1 == len(rows) or rows[i + 1]["phase"] != r["phase"]
            w.writerow({**r, "stop_reason": reasons.get(r["phase"], "") if last_of_phase else ""})


def write_metrics(trainer, metrics: dict) -> None:
    """metrics.json, written last: its presence marks a finished run."""
    trainer.rundir.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
