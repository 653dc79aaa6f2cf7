"""The report's sections for one finished run, read from its run folder.

Everything comes from the folder (:class:`graphzoo.rundir.RunDir`): ``metrics.json``, the saved
split (``split.json``: train / val / test and the labelled mask, not drawn again),
``predictions.csv`` (truth and the net's, the graph's and the reported prediction of every image),
``history.csv`` and ``features.npy`` (ψ(x)). The dataset is read only for the images the example
grid shows (and for every image when ``features.npy`` is missing and ψ must be recomputed).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..experiments.aggregate import collapsed_class, prediction_label
from ..rundir import RunDir
from . import figures as F
from .render import Section, say

__all__ = ["run_sections", "RunRecord", "read_run", "collapse_warnings"]


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _fmt(v, digits=3) -> str:
    return "—" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


@dataclass
class RunRecord:
    """What the report knows about a finished run, all read from its folder.

    split : str (N,); labelled : bool (N,); names : class (or label) names; targets : int (N,) or
    0/1 (N, L); pred, pred_net, pred_graph : int (N,) class indices of the reported, the net's and
    the graph's prediction (single-label; None for multi-label); proba : float (N, c or L) of the
    reported prediction; proba_graph : float (N, L), multi-label only; confidence : float (N,), the
    calibrated confidence of the reported prediction (None for multi-label runs and older runs);
    evidence : per image, the row indices of its nearest labelled training images (None for older runs).
    """

    rd: RunDir
    metrics: dict
    cfg: object
    split: np.ndarray
    labelled: np.ndarray
    names: list
    multilabel: bool
    targets: np.ndarray
    proba: np.ndarray
    pred: np.ndarray | None
    pred_net: np.ndarray | None
    pred_graph: np.ndarray | None
    proba_graph: np.ndarray | None
    confidence: np.ndarray | None = None
    evidence: list | None = None

    @property
    def test(self) -> np.ndarray:
        return np.flatnonzero(self.split == "test")


def read_run(run_dir: str | Path) -> RunRecord:
    """Read a finished run's metrics, saved split and predictions (no image, no ψ)."""
    from ..config import load_config
    from ..data import load_split

    rd = RunDir(run_dir)
    metrics = rd.read_metrics()
    saved = load_split(rd.split)
    rows = _read_csv(rd.predictions)
    if len(rows) != saved["n_samples"] or any(r["split"] != s for r, s in zip(rows, saved["split"])):
        raise ValueError(f"{rd.predictions} and {rd.split} describe different images; the run folder was changed "
                         "after the run. Fix: rerun the run.")
    cols = list(rows[0])
    multilabel = metrics.get("task") == "multilabel"
    if multilabel:
        names = [c[len("true_"):] for c in cols if c.startswith("true_")]
        targets = np.array([[int(r[f"true_{n}"]) for n in names] for r in rows])
        proba = np.array([[float(r[f"prob_{n}"]) for n in names] for r in rows])
        proba_graph = np.array([[float(r[f"graph_prob_{n}"]) for n in names] for r in rows])
        pred = pred_net = pred_graph = None
    else:
        names = [c[len("prob_"):] for c in cols if c.startswith("prob_")]
        idx = {n: k for k, n in enumerate(names)}
        targets = np.array([idx.get(r["true"], -1) for r in rows])  # -1: the source gives no label
        proba = np.array([[float(r[f"prob_{n}"]) for n in names] for r in rows])
        pred, pred_net, pred_graph = (np.array([idx[r[c]] for r in rows]) for c in ("pred", "pred_net", "pred_graph"))
        proba_graph = None
    confidence = np.array([float(r["confidence"]) for r in rows]) if "confidence" in cols else None
    return RunRecord(rd, metrics, load_config(rd.config), saved["split"], saved["labelled"], names, multilabel,
                     targets, proba, pred, pred_net, pred_graph, proba_graph, confidence, _read_evidence(rows))


def _read_evidence(rows: list[dict]) -> list | None:
    """predictions.csv's ``evidence`` (file names, or row indices when the data has none) as row indices."""
    if not rows or "evidence" not in rows[0]:
        return None
    by_name = {r["filename"]: int(r["index"]) for r in rows if r["filename"]}
    try:
        return [[by_name[e] if by_name else int(e) for e in r["evidence"].split("|") if e] for r in rows]
    except (KeyError, ValueError):  # names not unique or edited: no evidence rather than the wrong images
        return None


def collapse_warnings(run: RunRecord) -> list[str]:
    """One sentence per prediction (reported, net, graph) that gives every test image the same answer."""
    from sklearn.metrics import confusion_matrix

    test = run.test
    reported = run.metrics.get("test_prediction")
    out = []
    if run.multilabel:
        # a collapsed multi-label model gives every image the same probabilities (AUC 0.5 for every label)
        for kind, P in {reported: run.proba, "transductive": run.proba_graph}.items():
            if len(test) > 1 and np.ptp(P[test], axis=0).max() < 1e-4:
                out.append(f"collapsed model: the {prediction_label(kind)} prediction is the same for all "
                           f"{len(test)} test images.")
        return out
    preds = {reported: run.pred, "inductive": run.pred_net, "transductive": run.pred_graph}
    for kind, pred in preds.items():
        cm = confusion_matrix(run.targets[test], pred[test], labels=np.arange(len(run.names)))
        cls = collapsed_class(cm, run.names)
        if cls is not None:
            share = float(np.mean(run.targets[test] == run.names.index(cls)))
            out.append(f"collapsed model: the {prediction_label(kind)} prediction is '{cls}' for all {len(test)} test "
                       f"images (its accuracy, {share:.3f}, is the share of that class), so it learnt nothing.")
    return out


def _metrics_section(run: RunRecord, title: str) -> Section:
    m, ml, names = run.metrics, run.multilabel, run.names
    reported = m.get("test_prediction")
    s = Section(f"{title}: test metrics")
    s.warnings += collapse_warnings(run)
    s.paragraphs.append(
        f"{m['mode']} · backbone {m['backbone']} · energy {m['energy']} · {m['n_labelled_train']} labelled of "
        f"{m['n_train']} training images ({100 * m['label_fraction_effective']:.1f} %), {m['n_test']} test images, "
        f"split: {m['split']}. Epochs: {m['epochs']} (best {m['best_epoch']}); wall time {m.get('wall_time_s')} s.")
    s.paragraphs.append(
        f"The run reports the {prediction_label(reported)} prediction of the test images. Net (inductive): the "
        "trained network classifies each test image on its own. Graph (transductive): the test images are nodes "
        "of the kNN graph on ψ(x) and take the labels the energy diffuses from the labelled training images.")
    rows = []
    for kind in ("inductive", "transductive"):
        q = m.get(f"test_{kind}") or {}
        label = prediction_label(kind) + (" · reported" if kind == reported else "")
        rows.append([label, _fmt(q.get("accuracy")), _fmt(q.get("balanced_accuracy")), _fmt(q.get("auc"))])
    header = ["prediction", "label-wise accuracy" if ml else "accuracy", "balanced accuracy",
              "ROC-AUC" + (" (mean over labels)" if ml else "")]
    s.tables.append(("Test split, both predictions", header, rows))
    pc = m.get("per_class") or {}
    which = f"the {prediction_label(reported)} prediction"
    if ml:
        s.tables.append((f"Per label, {which}", ["label", "AUC", "sensitivity", "specificity", "positives"],
                         [[n, _fmt(v.get("auc")), _fmt(v.get("sensitivity")), _fmt(v.get("specificity")),
                           str(v.get("positives"))] for n, v in pc.items()]))
        s.figures.append(("per_label_auc", F.per_label_auc_figure({n: v.get("auc") for n, v in pc.items()},
                                                                  "Test ROC-AUC per label"),
                          f"Test ROC-AUC per label, {which}."))
    else:
        from sklearn.metrics import confusion_matrix

        s.tables.append((f"Per class, {which}", ["class", "precision", "recall", "F1", "AUC", "support"],
                         [[n, _fmt(v.get("precision")), _fmt(v.get("recall")), _fmt(v.get("f1")), _fmt(v.get("auc")),
                           str(v.get("support"))] for n, v in pc.items()]))
        test = run.test
        cm = confusion_matrix(run.targets[test], run.pred[test], labels=np.arange(len(names)))
        s.figures.append(("confusion", F.confusion_figure(cm, names, "Test confusion matrix (rows: truth)"),
                          f"Confusion matrix of the test images, {which}."))
    return s


def _calibration_section(run: RunRecord, title: str) -> Section | None:
    """How far the reported confidences can be trusted: reliability diagram and coverage–accuracy curve."""
    from ..calibration import reliability, reliability_bins, selective_accuracy

    c = run.metrics.get("calibration") or {}
    t = c.get("test") or {}
    if run.multilabel or run.confidence is None or not t:
        return None
    test = run.test
    y, P = run.targets[test], run.proba[test]
    raw = reliability(P, y)
    conf, correct = run.confidence[test], run.pred[test] == y
    after = reliability_bins(conf, correct)
    s = Section(f"{title}: confidence, prediction sets and referral")
    s.paragraphs.append(
        f"Calibrated on {c['n_calibration']} images: {c.get('calibration_set', 'labelled validation images')}. "
        f"Temperature T = {c['temperature']:.3f} (T > 1 softens an overconfident model; the predicted classes and "
        f"the metrics above do not change). Test split: expected calibration error {t['ece_before']:.3f} before, "
        f"{t['ece_after']:.3f} after. Split-conformal prediction sets at coverage {c['coverage']:g}: the true class "
        f"was in the set of {100 * t['coverage']:.1f} % of the test images, {t['mean_set_size']:.2f} classes per set "
        f"on average. Images whose set is not exactly one class are referred to a person: "
        f"{100 * t['refer_rate']:.1f} % of the test images, accuracy on the rest "
        f"{_fmt(t['accuracy_not_referred'])} (all: {t['accuracy']:.3f}).")
    for note in c.get("notes") or []:
        s.warnings.append(f"calibration: {note}.")
    s.figures.append(("reliability", F.reliability_figure({"before (as predicted)": raw, "after temperature": after},
                                                         "Reliability of the reported prediction, test images"),
                      "Reliability diagram of the test images: in each confidence bin, the share of images predicted "
                      "correctly against their mean confidence, before and after temperature scaling (marker area: "
                      "images in the bin). On the diagonal a confidence of 0.8 is right 80 % of the time; below it "
                      "the model is overconfident."))
    referred = np.linspace(0, 0.9, 91)
    acc = selective_accuracy(conf, correct, referred)
    s.figures.append(("coverage_accuracy",
                      F.coverage_accuracy_figure(referred, acc, "Referring the least confident test images",
                                                 (t["refer_rate"], t["accuracy_not_referred"])),
                      "Accuracy on the test images kept when the least confident ones (by calibrated confidence) are "
                      "referred to a person, against the share referred; the star is the run's own rule (refer when "
                      f"the conformal set at coverage {c['coverage']:g} is not exactly one class)."))
    return s


def _images(run: RunRecord, index: np.ndarray):
    """uint8 tensor (m, C, H, W) of the run's images ``index`` (rows of predictions.csv), read from its dataset.

    Only these images are converted (a report shows a few); the saved split's fingerprint of the file
    names, and the image count, catch a dataset that changed since the run.
    """
    from ..data import load_split
    from ..data.prepare import read_source
    from ..data.torchdata import to_image_tensor

    cfg = run.cfg
    ds = read_source(cfg.data, data_format=cfg.data_format, skip_corrupt=cfg.skip_corrupt, labels=cfg.labels,
                     class_names=cfg.class_names, unlabelled_dirs=cfg.unlabelled_dirs,
                     reader_options=cfg.reader_options)
    sel = np.arange(len(ds.labels))  # a run keeps every image (graphzoo.data.prepare_data), labelled or not
    if len(sel) != len(run.split):
        raise ValueError(f"{cfg.data} now holds {len(sel)} images, the run {run.rd} used {len(run.split)}. "
                         "Fix: point the run's config.yaml at the dataset it was trained on.")
    load_split(run.rd.split, filenames=None if ds.filenames is None else np.asarray(ds.filenames)[sel])
    pick = sel[np.asarray(index, int)]
    images = [ds.images[i] for i in pick] if isinstance(ds.images, list) else np.asarray(ds.images)[pick]
    return to_image_tensor(images, size=cfg.image_size or None, in_chans=cfg.in_chans or None)


def _sample(run: RunRecord, max_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_points`` image indices, a quarter of them at most from the labelled training images."""
    n = len(run.split)
    lab = np.flatnonzero(run.labelled & (run.split == "train"))
    lab_pick = rng.choice(lab, size=min(len(lab), max_points // 4), replace=False) if len(lab) else lab
    rest = np.setdiff1d(np.arange(n), lab_pick)
    others = rng.choice(rest, size=min(len(rest), max_points - len(lab_pick)), replace=False)
    return np.sort(np.r_[lab_pick, others]).astype(int), lab


def _classes(run: RunRecord) -> tuple[np.ndarray, np.ndarray, list]:
    """True and predicted class per image (multi-label: "no finding" / "≥ 1 finding") and the class names."""
    if run.multilabel:
        return ((run.targets.sum(1) > 0).astype(int), (run.proba.max(1) > 0.5).astype(int),
                ["no finding", "≥ 1 finding"])
    return run.targets, run.pred, run.names


def _embedding_section(run: RunRecord, title: str, max_points: int, seed: int, log) -> Section:
    from ..experiments.baselines import final_checkpoint, run_features
    from ..graph_step import build_graph

    which = final_checkpoint(run.rd)
    if not run.rd.features.is_file():
        say(log, f"{run.rd.features} missing: computing ψ(x) of {len(run.split)} images with the {which} checkpoint")
    Z = run_features(run.rd, None if run.rd.features.is_file() else _images(run, np.arange(len(run.split))),
                     which=which)
    rng = np.random.default_rng(seed)
    pick, lab = _sample(run, max_points, rng)
    truth, pred, cls_names = _classes(run)
    reported = prediction_label(run.metrics.get("test_prediction"))
    t0 = time.perf_counter()
    say(log, f"2-D map of {len(pick)} of {len(Z)} points (UMAP if installed, else PCA then t-SNE: "
             "about half a minute per 1000 points)…")
    Y, how = F.embed_2d(Z[pick], seed=seed)
    lab_shown = run.labelled[pick] & (run.split[pick] == "train")
    s = Section(f"{title}: embedding and graph")
    s.paragraphs.append(f"{len(pick)} of {len(Z)} images ({int(lab_shown.sum())} of the {len(lab)} labelled training "
                        f"images among them), {how} of ψ(x) from the {which} checkpoint "
                        f"({time.perf_counter() - t0:.1f} s). Stars: labelled images.")
    s.figures.append(("embedding", F.embedding_map(Y, truth[pick], cls_names, lab_shown, how),
                      f"{how} map of the learnt features ψ(x) of {len(pick)} of the {len(Z)} images, coloured by "
                      "true class; labelled training images marked (as in the paper's Fig. 2)."))
    say(log, f"kNN graph of the {len(pick)} mapped points")
    W = build_graph(Z[pick], n_neighbors=min(run.cfg.n_neighbors, 10, len(pick) - 1), metric=run.cfg.graph_metric)
    s.figures.append(("graph", F.graph_map(Y, W, pred[pick], cls_names, seed=seed),
                      f"kNN graph of the same {len(pick)} images on that map, nodes coloured by the {reported} "
                      "prediction (as in the paper's Fig. 4)."))
    return s


def _examples_section(run: RunRecord, title: str, n_examples: int, seed: int, log) -> Section:
    names, test = run.names, run.test
    rng = np.random.default_rng(seed + 1)
    if run.multilabel:
        truth = [", ".join(n for n, t in zip(names, run.targets[i]) if t) or "none" for i in test]
        shown = [", ".join(n for n, p in zip(names, run.proba[i]) if p > 0.5) or "none" for i in test]
        wrong = np.array([a != b for a, b in zip(truth, shown)])
    else:
        truth = [names[run.targets[i]] for i in test]
        shown = [names[run.pred[i]] for i in test]
        wrong = run.pred[test] != run.targets[test]
    w_idx, r_idx = np.flatnonzero(wrong), np.flatnonzero(~wrong)
    n_wrong = min(len(w_idx), n_examples // 2)
    chosen = np.r_[rng.choice(w_idx, n_wrong, replace=False) if n_wrong else [],
                   rng.choice(r_idx, min(len(r_idx), n_examples - n_wrong), replace=False)].astype(int)
    chosen = chosen[np.argsort(wrong[chosen], kind="stable")]  # correct first, then the mistakes
    say(log, f"reading the {len(chosen)} example images from {run.cfg.data}")
    images = _images(run, test[chosen]).numpy()

    def short(t: str) -> str:
        return t if len(t) <= 22 else t[:20] + "…"

    reported = prediction_label(run.metrics.get("test_prediction"))
    s = Section(f"{title}: example test images")
    s.paragraphs.append(f"{int(wrong.sum())} of {len(test)} test images misclassified by the {reported} prediction; "
                        f"{n_wrong} of them shown (red) with correctly classified ones.")
    s.figures.append(("examples", F.example_grid(images, [short(truth[i]) for i in chosen],
                                                 [short(shown[i]) for i in chosen], wrong[chosen]),
                      f"Test images with ground truth (T) and {reported} prediction (P), misclassifications in red "
                      "(as in the paper's Fig. 3)."))
    return s


def _evidence_section(run: RunRecord, title: str, seed: int, log, n_shown: int = 4) -> Section | None:
    """"Why this label": a few test images next to the labelled training images nearest to them in ψ."""
    if run.multilabel or run.evidence is None or run.confidence is None:
        return None
    test = run.test
    order = test[np.argsort(-run.confidence[test], kind="stable")]
    half = n_shown // 2
    chosen = [i for i in np.r_[order[:half], order[::-1][:n_shown - half]] if run.evidence[i]]  # sure, then unsure
    if not chosen:
        return None
    k = max(len(run.evidence[i]) for i in chosen)
    cells = [j for i in chosen for j in [i] + run.evidence[i]]
    say(log, f"reading the {len(cells)} evidence images from {run.cfg.data}")
    images = _images(run, np.array(cells)).numpy()
    names, titles, pos = run.names, [], 0
    grid = []
    for i in chosen:
        row = [images[pos]] + list(images[pos + 1 : pos + 1 + len(run.evidence[i])])
        grid.append(row)
        titles.append([f"P: {names[run.pred[i]]} ({run.confidence[i]:.2f})\nT: {names[run.targets[i]]}"]
                      + [f"labelled: {names[run.targets[j]]}" for j in run.evidence[i]])
        pos += len(row)
    s = Section(f"{title}: why this label")
    s.figures.append(("evidence", F.evidence_grid(grid, titles),
                      f"Left: test images, the {half} the run was surest of, then the least sure; P: the reported "
                      "prediction and its calibrated confidence, T: the truth. Right: the "
                      f"{k} labelled training images nearest to each in ψ (predictions.csv's evidence column), "
                      "the examples its label leans on."))
    return s


def _dynamic_section(run: RunRecord, title: str) -> Section | None:
    hist = _read_csv(run.rd.history) if run.rd.history.is_file() else []
    if not any(r.get("phase") == "dynamic" for r in hist):
        return None
    s = Section(f"{title}: Dynamic Pass per epoch")
    stops = "; ".join(f"{k}: {v}" for k, v in (run.metrics.get("stop_reasons") or {}).items())
    s.paragraphs.append("Each dynamic epoch rebuilds the graph from the current ψ and re-labels the unlabelled "
                        f"training images. Stopped: {stops}.")
    s.figures.append(("dynamic", F.dynamic_curves(hist),
                      "Pseudo-labels of the unlabelled training images against their hidden truth (accuracy, "
                      "accuracy weighted by certainty × class balance, coverage, mean certainty), the training "
                      "losses and the validation metrics per epoch; grey: the supervised warm-up epochs."))
    return s


def _no_test_section(run: RunRecord, title: str) -> Section:
    """A run without a test part: its quality estimate (cross-validation of the graph step on the labels)."""
    s = Section(f"{title}: no test part")
    cv = run.metrics.get("cross_validation") or {}
    text = (f"This run has no test part (holdout=False: every label outside validation trained it). Quality "
            f"estimate: {run.metrics.get('quality_estimate', 'none')}")
    if cv.get("accuracy") is not None:
        text += (f": accuracy {cv['accuracy']:.3f} over {cv.get('n', '?')} labels — optimistic, as the network "
                 "was trained with every fold's labels")
    s.paragraphs.append(text + ".")
    return s


def run_sections(run_dir: str | Path, title: str = "", max_points: int = 1500, n_examples: int = 16, seed: int = 0,
                 log=None) -> list[Section]:
    """Sections describing one finished run: metrics (both predictions, collapse warnings), calibration
    (reliability diagram, coverage–accuracy curve; single-label), the ψ map and kNN graph, example
    test images, and a Dynamic Pass's per-epoch curves.

    ``max_points`` bounds the images in the maps (t-SNE's cost grows with it); ``log``: a text
    stream for progress lines (None: quiet).
    """
    run = read_run(run_dir)
    title = title or f"Run {run.rd.name}"
    say(log, f"run {run.rd}: metrics")
    if len(run.test) == 0:  # holdout=False (production): no test images to score, say what stands in for them
        dyn = _dynamic_section(run, title)
        return [_no_test_section(run, title), _embedding_section(run, title, max_points, seed, log)] + (
            [dyn] if dyn else [])
    out = [_metrics_section(run, title)]
    calib = _calibration_section(run, title)
    out += ([calib] if calib else []) + [_embedding_section(run, title, max_points, seed, log),
                                          _examples_section(run, title, n_examples, seed, log)]
    why = _evidence_section(run, title, seed, log)
    out += [why] if why else []
    dyn = _dynamic_section(run, title)
    return out + ([dyn] if dyn else [])
