"""The final evaluation of a run: both predictions for every image, metrics, and the files.

Two predictions are made for every image and both are reported:

* **graph (transductive)**: every image joins one kNN graph built from the final ψ(x), with the
  labels of the labelled *training* images only (validation labels stay out); the energy's
  class probabilities (:func:`graphzoo.graph_step.graph_step`).
* **net (inductive)**: the trained network's softmax / sigmoid, as for a new image.

``metrics.json``'s headline ``accuracy`` / ``balanced_accuracy`` / ``auc`` are those of the
``test_prediction`` kind (``"auto"``: graph for One Pass, whose prediction is the energy's; net
for Dynamic Pass, as in LP-DeepSSL); ``reported_prediction`` says which in words.

Honest confidences (single-label; :mod:`graphzoo.calibration`, block ``calibration`` of
``metrics.json``) are fitted on a *calibration set* of labelled images that are never test images
(:func:`calibration_set`; ``calibration_set`` in metrics.json says which were used, in words):

* the labelled **validation** images, whose labels count in the budget but never enter the graph,
  so their predictions are held out like the test images'; always;
* for the graph's prediction, the **out-of-fold** graph scores of the labelled *training* images
  (:func:`graphzoo.train.crossval.out_of_fold_proba`: 5 folds, patient-grouped; fold f's labels are
  hidden, the energy runs on the same graph with the other folds' labels, fold f is scored), so that
  each is scored without its own label — but only when the **optimism check** passes. ψ was trained
  on those images and may have learnt them: at 1 % labels on malaria (short recipe, ~40 passes per
  labelled cell) their out-of-fold accuracy was 0.97–0.98 against 0.85–0.91 on the test split, and
  calibrating on them made the 90 % sets cover only 0.76–0.82 of the test cells. The check compares,
  in the same fold diffusions, their confidences with those of the unlabelled training images (a
  random draw of the same images when the budget is simulated): one-sided Mann–Whitney
  p < :data:`~graphzoo.calibration.OPTIMISM_ALPHA` keeps them out. It reads no label it does not have,
  so it never looks at the test split. On malaria (docs/results.md, 2026-11-30; 5 seeds) it kept them out on 3 of the 5
  1 % runs and let them in on all 5 % and 20 % runs; test ECE fell from 0.044 / 0.018 / 0.016 to
  0.026 / 0.015 / 0.014 at 1 / 5 / 20 %, and mean |coverage − 0.90| from 0.058 / 0.020 / 0.020 to
  0.045 / 0.011 / 0.018 (on the two confirmation seeds at 5 % and 20 % it was no better). It can miss
  a partly learnt set (one 1 % seed: p = 0.12, sets then under-covered by 3 points). Labelled images
  chosen as the hard ones (``graphzoo suggest``) should look *less* confident (reasoned, not measured):
  the check then passes and the pooled set errs on the conservative side. Cost: 5 more diffusions on
  the run's graph.

The net's own prediction (Dynamic Pass, block ``calibration.inductive``) is calibrated on the
validation images alone: its scores of the images it trained on are in-sample. On the set:

* a temperature T is fitted to the reported prediction (Guo et al. 2017), the maximum a posteriori
  T under a log-normal prior at T = 1 (:data:`graphzoo.calibration.TEMPERATURE_PRIOR_SIGMA`): with the
  28 validation images of a 1 % budget the plain fit follows their noise; predictions.csv's
  ``confidence`` is the max of ``softmax(log p / T)``. T never changes the argmax, so the headline
  metrics are those of the uncalibrated prediction, unchanged;
* the split-conformal threshold q̂ at ``cfg.coverage`` (LAC, Sadinle et al. 2019) is computed on the
  *uncalibrated* probabilities, so that the score function does not depend on the calibration
  labels (for two classes the sets are the same either way). The guarantee is approximate here:
  the validation images also chose the checkpoint and the stopping epoch, and the out-of-fold images
  trained ψ (the check bounds that optimism, it does not remove it), so test coverage can fall short
  of ``coverage``; the validation images come from few patients, so it can also overshoot;
  ``prediction_set`` lists the classes with ``p_k ≥ 1 − q̂``;
* ``refer`` = 1 when that set is not exactly one class: empty (no class is plausible enough) or two
  or more (the model cannot tell them apart at that coverage). A person should look at the image.

The same is fitted to the net's prediction (block ``calibration.inductive``) for ``graphzoo
predict``, with q̂ for a ladder of coverages (:data:`COVERAGES`). ``evidence`` lists the
:data:`N_EVIDENCE` labelled training images nearest in ψ (the graph's metric): the images the
prediction leans on. Multi-label runs skip calibration (each label is its own two-class problem)
and say so.
"""

from __future__ import annotations

import csv
import json
import time

import numpy as np

from .. import calibration as cal
from .. import distributed, progress
from ..evidence import N_EVIDENCE, nearest_labelled
from ..graph_step import graph_step

__all__ = ["evaluate", "calibration_set", "collapsed_classes", "write_history", "write_metrics", "COVERAGES",
           "N_EVIDENCE"]

#: Coverages whose conformal threshold q̂ a run saves for ``graphzoo predict --coverage``.
COVERAGES = (0.8, 0.85, 0.9, 0.95, 0.975, 0.99)
#: Shares of the least confident test images referred in ``calibration.test.selective_accuracy``.
REFER_FRACTIONS = (0.05, 0.1, 0.2)
#: Folds of the out-of-fold graph scores of the labelled training images (:func:`calibration_set`).
OOF_FOLDS = 5

_KIND_WORDS = {"transductive": "graph (transductive): the energy's prediction on the kNN graph of the final features",
               "inductive": "net (inductive): the trained network's own prediction"}


def collapsed_classes(pred: np.ndarray, truth: np.ndarray) -> int | None:
    """The one class every prediction falls in, when the truth has several (a collapsed model); else None."""
    if len(pred) == 0 or len(np.unique(truth)) < 2:
        return None
    values = np.unique(pred)
    return int(values[0]) if len(values) == 1 else None


def evaluate(trainer) -> dict:
    """Embed every image, run the graph step, score both predictions, write the run's files.

    Under torchrun every rank embeds its block of the images; the rest runs on rank 0 only, and every
    rank returns its metrics."""
    t0 = time.perf_counter()
    logits, Z = trainer.infer(np.arange(len(trainer.data.split)), tta=trainer.cfg.tta)
    return distributed.on_main(_evaluate_embedded, trainer, logits, Z, t0)


def _evaluate_embedded(trainer, logits: np.ndarray, Z: np.ndarray, t0: float) -> dict:
    """:func:`evaluate` given every image's logits (n, n_outputs) and features Z (n, d)."""
    cfg, d = trainer.cfg, trainer.data
    np.save(trainer.rundir.features, Z)  # ψ of every image, for baselines and the report (run_features)
    p_net = trainer.proba(logits)
    y = np.where(d.graph_labels[:, None] if d.multilabel else d.graph_labels, d.targets, -1)
    step = graph_step(Z, y, energy=cfg.energy, energy_params=cfg.energy_params, n_neighbors=cfg.n_neighbors,
                      metric=cfg.graph_metric, n_classes=d.n_outputs, multilabel=d.multilabel,
                      device=trainer.graph_device)
    info = step.info
    progress.say(f"graph: {len(Z)} images, k={cfg.n_neighbors}: kNN by {info['knn_backend']} "
                 f"in {info['graph_s']:.1f} s, {cfg.energy} in {info['energy_s']:.1f} s", cfg.progress)
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
    _add_label_accounting(trainer, metrics, Z, step.W)
    metrics["calibration"], per_image = calibrate(trainer, p_main, p_net, kind, step.W)
    evidence = nearest_labelled(Z, trainer.idx_lab, d.filenames, cfg.graph_metric)
    _write_predictions(trainer, p_net, p_graph, p_main, per_image, evidence)
    return metrics


def _add_label_accounting(trainer, metrics: dict, Z: np.ndarray, W) -> None:
    """``labels`` (where the source's labels went, :func:`graphzoo.data.prepare.label_counts`) and, without a
    test part (``holdout=False``), the cross-validation estimate that stands in for test metrics."""
    from ..data.prepare import label_counts

    d, cfg = trainer.data, trainer.cfg
    counts = label_counts(d)
    metrics["labels"] = counts
    metrics["n_unlabelled_source"] = counts["n_unlabelled_source"]
    if cfg.holdout:
        return
    if d.multilabel:
        metrics["quality_estimate"] = ("none: no test part (holdout=False) and no cross-validation for "
                                       "multi-label runs")
        return
    from .crossval import graph_step_cv

    cv = graph_step_cv(Z, d, energy=cfg.energy, energy_params=cfg.energy_params, n_neighbors=cfg.n_neighbors,
                       metric=cfg.graph_metric, seed=cfg.seed, W=W)  # the evaluation's graph, not a second search
    metrics["cross_validation"] = cv
    metrics["quality_estimate"] = (f"{cv['folds']}-fold cross-validation of the graph step on the labels"
                                   if "folds" in cv else f"none: {cv['note']}")
    warning = (cv.get("optimism_check") or {}).get("warning")
    if warning:
        metrics["quality_estimate"] += f" ({warning})"
        progress.say(f"warning: cross-validation: {warning}", cfg.progress)


def _fit(P: np.ndarray, y: np.ndarray, coverage: float) -> dict:
    """Temperature (MAP, prior at T = 1) and conformal thresholds fitted on calibration probabilities (m, c)."""
    return {"temperature": cal.fit_temperature(P, y, prior_sigma=cal.TEMPERATURE_PRIOR_SIGMA),
            "conformal_threshold": cal.conformal_threshold(P, y, coverage),
            "conformal_thresholds": {f"{c:g}": cal.conformal_threshold(P, y, c) for c in COVERAGES}}


def calibration_set(trainer, p_main: np.ndarray, kind: str, W) -> tuple[np.ndarray, np.ndarray, dict]:
    """The probabilities and labels the reported prediction is calibrated on (see the module docstring).

    p_main : (n, c) reported probabilities of every image; W : the evaluation's kNN graph (graph kind only).
    Returns ``(P (m, c), y (m,), info)``: the labelled validation images' rows, followed, for the graph's
    prediction when the optimism check passes, by the out-of-fold rows of the labelled training images.
    ``info`` holds ``n_val``, ``n_out_of_fold``, ``check`` (the optimism check's numbers) and ``text``.
    """
    d, cfg = trainer.data, trainer.cfg
    val, lab, unl = trainer.idx_val, trainer.idx_lab, trainer.idx_unl
    if np.isin(np.concatenate([val, lab]), trainer.idx_test).any():  # by construction; a guard, not a step
        raise RuntimeError("a test image is among the calibration images: the split's parts overlap")
    info: dict = {"n_val": int(len(val)), "n_out_of_fold": 0, "check": None}
    val_only = (p_main[val], d.targets[val])
    if kind != "transductive" or W is None:
        info["text"] = ("labelled validation images (the net's own prediction: its scores of the images it trained "
                        "on are in-sample, so no out-of-fold rows)" if kind != "transductive" else
                        "labelled validation images (no graph given for out-of-fold rows)")
        return *val_only, info
    y_lab = d.targets[lab]
    k = int(min(OOF_FOLDS, np.bincount(y_lab, minlength=d.n_outputs).min())) if len(lab) else 0
    if k < 2 or len(unl) == 0:
        why = "a class has fewer than 2 training labels" if k < 2 else "no unlabelled training image to check them"
        info["text"] = f"labelled validation images (no out-of-fold rows: {why})"
        return *val_only, info
    from .crossval import optimism_check, out_of_fold_proba

    groups = None if d.patient_ids is None else np.asarray(d.patient_ids)[lab]
    oof = out_of_fold_proba(W, lab, y_lab, groups, energy=cfg.energy, energy_params=cfg.energy_params,
                            n_classes=d.n_outputs, k=k, seed=cfg.seed, others=unl)
    info["check"] = {**optimism_check(oof.proba.max(1), oof.others.max(1)), "folds": k, "how": oof.how,
                     "accuracy_out_of_fold": float((oof.proba.argmax(1) == y_lab).mean())}
    p = info["check"]["p_value"]  # unl is not empty here, so never None
    if p < cal.OPTIMISM_ALPHA:
        info["text"] = (f"labelled validation images only: the out-of-fold graph scores of the labelled training "
                        f"images are more confident than those of the unlabelled ones (Mann-Whitney p = {p:.3g} < "
                        f"{cal.OPTIMISM_ALPHA:g}; psi has learnt those images), so they would flatter the calibration")
        return *val_only, info
    info["n_out_of_fold"] = int(len(lab))
    info["text"] = (f"labelled validation images (labels never in the graph) + out-of-fold graph scores of the "
                    f"{len(lab)} labelled training images ({k} folds, {oof.how}: each scored with its own label "
                    f"hidden); optimism check passed (Mann-Whitney p = {p:.3g} >= {cal.OPTIMISM_ALPHA:g})")
    return np.vstack([p_main[val], oof.proba]), np.concatenate([d.targets[val], y_lab]), info


def calibrate(trainer, p_main: np.ndarray, p_net: np.ndarray, kind: str, W=None) -> tuple[dict, dict | None]:
    """The ``calibration`` block of metrics.json and the per-image columns of predictions.csv.

    p_main, p_net : (n, c) the reported and the net's probabilities of every image; W : the evaluation's
    kNN graph (for the out-of-fold rows of :func:`calibration_set`; None: validation images only).
    Returns ``(block, per_image)``; ``per_image`` holds ``confidence`` (n,), ``sets`` bool (n, c)
    and ``refer`` bool (n,), or is None for a multi-label run (not calibrated; the block says so).
    """
    d, cfg = trainer.data, trainer.cfg
    if d.multilabel:
        return {"skipped": "multi-label task: each label is its own two-class problem, so one temperature and one "
                           "prediction set per image do not apply; the probabilities are uncalibrated"}, None
    val = trainer.idx_val
    P_cal, y_cal, info = calibration_set(trainer, p_main, kind, W)
    n_cal = len(y_cal)
    main, net = _fit(P_cal, y_cal, cfg.coverage), _fit(p_net[val], d.targets[val], cfg.coverage)
    calibrated = cal.apply_temperature(p_main, main["temperature"])
    sets = cal.prediction_sets(p_main, main["conformal_threshold"])
    refer = cal.refer(sets)
    notes = []
    if n_cal < cal.MIN_CALIBRATION:
        notes.append(f"only {n_cal} calibration images (< {cal.MIN_CALIBRATION}): no temperature fitted "
                     "(T = 1), the confidences are uncalibrated")
    if cal.conformal_rank(n_cal, cfg.coverage) > n_cal:
        notes.append(f"{n_cal} calibration images are too few for coverage {cfg.coverage:g} "
                     f"(it needs ceil((n+1)·{cfg.coverage:g}) <= n): every class is in every set, every image is "
                     "referred; label more validation images or lower coverage")
    for note in notes:
        progress.say(f"warning: calibration: {note}", cfg.progress)
    block = {"method": "temperature scaling (Guo et al. 2017; MAP with a log-normal prior at T = 1, sigma "
                       f"{cal.TEMPERATURE_PRIOR_SIGMA:g}) on the reported prediction; split-conformal LAC sets "
                       "(Sadinle et al. 2019) on its uncalibrated probabilities; refer = set not exactly one class",
             "calibration_set": info["text"], "n_calibration": int(n_cal), "n_calibration_val": info["n_val"],
             "n_calibration_out_of_fold": info["n_out_of_fold"], "optimism_check": info["check"],
             "prediction": kind, "coverage": cfg.coverage, **main,
             "test": _test_block(trainer, p_main, calibrated, sets, refer),
             "inductive": {**net, "model": trainer.final_model(), "n_calibration": int(len(val))}, "notes": notes}
    return block, {"confidence": calibrated.max(1), "sets": sets, "refer": refer}


def _test_block(trainer, p_main, calibrated, sets, refer) -> dict:
    """ECE before / after, conformal coverage and set size, referral and accuracy on the test images."""
    d = trainer.data
    t = trainer.idx_test[d.targets[trainer.idx_test] >= 0]
    if len(t) == 0:
        return {}
    y = d.targets[t]
    correct = p_main[t].argmax(1) == y
    kept = ~refer[t]
    conf = calibrated[t].max(1)
    return {"n": int(len(t)), "ece_before": cal.expected_calibration_error(p_main[t], y),
            "ece_after": cal.expected_calibration_error(calibrated[t], y),
            "nll_before": cal.nll(p_main[t], y), "nll_after": cal.nll(calibrated[t], y),
            "coverage": float(sets[t, y].mean()), "mean_set_size": float(sets[t].sum(1).mean()),
            "refer_rate": float(refer[t].mean()), "accuracy": float(correct.mean()),
            "accuracy_not_referred": float(correct[kept].mean()) if kept.any() else None,
            "selective_accuracy": {f"{f:g}": float(a) for f, a in
                                   zip(REFER_FRACTIONS, cal.selective_accuracy(conf, correct, REFER_FRACTIONS))}}


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


def _write_predictions(trainer, p_net, p_graph, p_main, per_image: dict | None, evidence: list[str]) -> None:
    """predictions.csv; the calibration columns (and evidence) come last, after the probabilities."""
    d = trainer.data
    fname = (lambda i: "") if d.filenames is None else (lambda i: d.filenames[i])  # noqa: E731
    cols = [f"prob_{n}" for n in d.names]
    with open(trainer.rundir.predictions, "w", newline="") as fh:
        w = csv.writer(fh)
        if d.multilabel:
            w.writerow(["index", "filename", "split", "labelled"] + [f"true_{n}" for n in d.names] + cols
                       + [f"graph_prob_{n}" for n in d.names] + ["evidence"])
            for i in range(len(d.split)):
                w.writerow([i, fname(i), d.split[i], int(d.labelled[i])] + d.targets[i].tolist()
                           + [f"{v:.5f}" for v in p_main[i]] + [f"{v:.5f}" for v in p_graph[i]] + [evidence[i]])
            return
        w.writerow(["index", "filename", "split", "labelled", "true", "pred", "pred_net", "pred_graph"] + cols
                   + ["confidence", "prediction_set", "refer", "evidence"])
        pm, pn, pg = p_main.argmax(1), p_net.argmax(1), p_graph.argmax(1)
        conf, sets, refer = per_image["confidence"], per_image["sets"], per_image["refer"]
        names = np.asarray(d.names, dtype=object)
        for i in range(len(d.split)):
            true = d.names[d.targets[i]] if d.targets[i] >= 0 else ""  # no label in the source: empty
            w.writerow([i, fname(i), d.split[i], int(d.labelled[i]), true, d.names[pm[i]],
                        d.names[pn[i]], d.names[pg[i]]] + [f"{v:.5f}" for v in p_main[i]]
                       + [f"{conf[i]:.5f}", "|".join(names[sets[i]]), int(refer[i]), evidence[i]])


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
    """metrics.json, written last and atomically (temp file, then rename): its presence marks a finished run,
    so a kill or a full disk must never leave a truncated one."""
    import os

    path = trainer.rundir.metrics
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
