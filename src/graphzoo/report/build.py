"""``report.html`` (self-contained: figures as base64 PNG) and ``report.md`` for a run or an experiment.

An *experiment* folder (``results.jsonl`` from ``graphzoo experiment``) gives the seed's tables
(rows methods and baselines, columns label fractions, mean ± std over seeds), metric-vs-fraction
curves, per-class precision / recall / F1 (per-label AUC for multi-label sets), the pooled
confusion matrix, and the figures of one representative run. A *run* folder (``metrics.json``
from ``graphzoo run``) gives its metrics and figures: the ψ embedding map coloured by class with
the labelled images marked, the kNN graph coloured by prediction, example test images with
truth and prediction, the confusion matrix, and the per-epoch curves of a Dynamic Pass.

The figures need ψ(x) of the run's images: ``features.npy`` in the run folder when the grid left
one there, else recomputed with the run's checkpoint (:func:`graphzoo.experiments.baselines.run_features`).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import figures as F

__all__ = ["build_report", "Section"]


@dataclass
class Section:
    """A titled part of the report: paragraphs, tables ``(caption, header, rows)`` and figures ``(name, png, caption)``."""

    title: str
    paragraphs: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Run-level sections
# ----------------------------------------------------------------------------------------------
def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _fmt(v, digits=3) -> str:
    return "—" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def run_sections(run_dir: str | Path, title: str = "", max_points: int = 1500, n_examples: int = 16, seed: int = 0) -> list[Section]:
    """Sections describing one finished run (see the module docstring)."""
    from .. import knn_graph
    from ..config import load_config
    from ..experiments.baselines import run_features
    from ..data import prepare_data

    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cfg = load_config(run_dir / "config.yaml")
    data = prepare_data(**cfg.data_options())
    preds = _read_csv(run_dir / "predictions.csv")
    if len(preds) != len(data.split) or any(p["split"] != s for p, s in zip(preds[:50], data.split[:50])):
        raise ValueError(f"{run_dir}: predictions.csv does not match the data its config.yaml reads; was the dataset changed?")
    names = list(data.names)
    ml = data.multilabel
    title = title or f"Run {run_dir.name}"
    out = []

    # -- metrics ---------------------------------------------------------------------------------
    s = Section(f"{title}: test metrics")
    s.paragraphs.append(
        f"{metrics['mode']} · backbone {metrics['backbone']} · energy {metrics['energy']} · {metrics['n_labelled_train']} labelled of "
        f"{metrics['n_train']} training images ({100 * metrics['label_fraction_effective']:.1f} %), {metrics['n_test']} test images, "
        f"split: {metrics['split']}. Prediction of the test images: {metrics['test_prediction']}. "
        f"Epochs: {metrics['epochs']} (best {metrics['best_epoch']}); wall time {metrics.get('wall_time_s')} s.")
    rows = []
    for key, label in (("test_inductive", "inductive (trained net)"), ("test_transductive", "transductive (graph energy)")):
        m = metrics.get(key) or {}
        rows.append([label, _fmt(m.get("accuracy")), _fmt(m.get("balanced_accuracy")), _fmt(m.get("auc"))])
    s.tables.append(("Test split", ["prediction", "accuracy" if not ml else "label-wise accuracy", "balanced accuracy", "ROC-AUC" + (" (mean over labels)" if ml else "")], rows))
    pc = metrics.get("per_class") or {}
    if ml:
        s.tables.append(("Per label (main prediction)", ["label", "AUC", "sensitivity", "specificity", "positives"],
                         [[n, _fmt(v.get("auc")), _fmt(v.get("sensitivity")), _fmt(v.get("specificity")), str(v.get("positives"))] for n, v in pc.items()]))
    else:
        s.tables.append(("Per class (main prediction)", ["class", "precision", "recall", "F1", "AUC", "support"],
                         [[n, _fmt(v.get("precision")), _fmt(v.get("recall")), _fmt(v.get("f1")), _fmt(v.get("auc")), str(v.get("support"))] for n, v in pc.items()]))
    test = np.flatnonzero(data.split == "test")
    if ml:
        P = np.array([[float(p[f"prob_{n}"]) for n in names] for p in preds])
        s.figures.append(("per_label_auc", F.per_label_auc_figure({n: v.get("auc") for n, v in pc.items()}, "Test ROC-AUC per label"), "Test ROC-AUC per label."))
        pred_cls = (P.max(1) > 0.5).astype(int)
        classes = (data.targets.sum(1) > 0).astype(int)
        cls_names = ["no finding", "≥ 1 finding"]
    else:
        idx = {n: k for k, n in enumerate(names)}
        pred_cls = np.array([idx[p["pred"]] for p in preds])
        classes = data.targets
        cls_names = names
        from sklearn.metrics import confusion_matrix

        cm = confusion_matrix(classes[test], pred_cls[test], labels=np.arange(len(names)))
        s.figures.append(("confusion", F.confusion_figure(cm, names, "Test confusion matrix (rows: truth)"), "Confusion matrix of the test images."))
    out.append(s)

    # -- embedding, graph ------------------------------------------------------------------------
    from ..experiments.baselines import final_checkpoint

    which = final_checkpoint(run_dir)
    Z = run_features(run_dir, data.images, which=which)
    rng = np.random.default_rng(seed)
    n = len(Z)
    lab = np.flatnonzero(data.labelled & (data.split == "train"))
    lab_pick = rng.choice(lab, size=min(len(lab), max_points // 4), replace=False) if len(lab) else lab
    rest = np.setdiff1d(np.arange(n), lab_pick)
    pick = np.sort(np.r_[lab_pick, rng.choice(rest, size=min(len(rest), max_points - len(lab_pick)), replace=False)]).astype(int)
    t0 = time.perf_counter()
    Y, how = F.embed_2d(Z[pick], seed=seed)
    s = Section(f"{title}: embedding and graph")
    s.paragraphs.append(f"{len(pick)} of {n} images ({len(lab_pick)} of the {len(lab)} labelled training images among them), "
                        f"{how} of ψ(x) from the {which} checkpoint ({time.perf_counter() - t0:.1f} s). Stars: labelled images.")
    s.figures.append(("embedding", F.embedding_map(Y, classes[pick], cls_names, data.labelled[pick] & (data.split[pick] == "train"), how),
                      f"{how} map of the learnt features ψ(x), coloured by true class; labelled training images marked (seed Fig. 2)."))
    W = knn_graph(Z[pick], n_neighbors=min(cfg.n_neighbors, 10, len(pick) - 1), metric=cfg.graph_metric)
    s.figures.append(("graph", F.graph_map(Y, W, pred_cls[pick], cls_names, seed=seed),
                      "kNN graph of the sampled images on the same map, nodes coloured by the predicted class (seed Fig. 4)."))
    out.append(s)

    # -- examples --------------------------------------------------------------------------------
    if ml:
        truth = [", ".join(n for n, t in zip(names, data.targets[i]) if t) or "none" for i in test]
        pset = [", ".join(n for n, p in zip(names, P[i]) if p > 0.5) or "none" for i in test]
        wrong = np.array([a != b for a, b in zip(truth, pset)])
    else:
        truth = [names[data.targets[i]] for i in test]
        pset = [names[pred_cls[i]] for i in test]
        wrong = pred_cls[test] != data.targets[test]
    w_idx, r_idx = np.flatnonzero(wrong), np.flatnonzero(~wrong)
    n_wrong = min(len(w_idx), n_examples // 2)
    chosen = np.r_[rng.choice(w_idx, n_wrong, replace=False) if n_wrong else [], rng.choice(r_idx, min(len(r_idx), n_examples - n_wrong), replace=False)].astype(int)
    chosen = chosen[np.argsort(wrong[chosen])]  # correct first, then the mistakes
    short = lambda t: t if len(t) <= 22 else t[:20] + "…"  # noqa: E731
    s = Section(f"{title}: example test images")
    s.paragraphs.append(f"{int(wrong.sum())} of {len(test)} test images misclassified; {n_wrong} of them shown (red) with correctly classified ones.")
    s.figures.append(("examples", F.example_grid(data.images[test[chosen]].numpy(), [short(truth[i]) for i in chosen], [short(pset[i]) for i in chosen], wrong[chosen]),
                      "Test images with ground truth (T) and prediction (P), misclassifications in red (seed Fig. 3)."))
    out.append(s)

    # -- dynamic pass ----------------------------------------------------------------------------
    hist = _read_csv(run_dir / "history.csv") if (run_dir / "history.csv").is_file() else []
    if hist and any(r.get("phase") == "dynamic" for r in hist):
        s = Section(f"{title}: Dynamic Pass per epoch")
        stops = "; ".join(f"{k}: {v}" for k, v in (metrics.get("stop_reasons") or {}).items())
        s.paragraphs.append(f"Each dynamic epoch rebuilds the graph from the current ψ and re-labels the unlabelled training images. Stopped: {stops}.")
        s.figures.append(("dynamic", F.dynamic_curves(hist), "Pseudo-label accuracy against the hidden truth, coverage and certainty; losses; validation metrics."))
        out.append(s)
    return out


# ----------------------------------------------------------------------------------------------
# Experiment-level sections
# ----------------------------------------------------------------------------------------------
def experiment_sections(folder: Path, **kw) -> list[Section]:
    from ..experiments.aggregate import format_mean_std, results_table, summarise
    from ..experiments.grid import read_results

    records = read_results(folder)
    if not records:
        raise ValueError(f"{folder}/results.jsonl holds no finished cell; run graphzoo experiment first")
    shown = [r for r in records if r.get("role") != "source"]
    ml = bool(records[0].get("multilabel"))
    names = records[0].get("names") or []
    seeds = sorted({r["seed"] for r in shown})
    wall = sum(r.get("wall_s", 0) for r in records)
    out = []
    s = Section(f"Experiment {folder.name}: results")
    s.paragraphs.append(
        f"{len(records)} finished cells, seeds {seeds}, test images per split: {sorted({r['n_test'] for r in shown})}. "
        f"Every cell of one (label fraction, seed) used the same train / val / test split and labelled mask "
        f"(hashes checked: {len({(r['seed'], r['split_hash']) for r in shown})} distinct splits for {len(seeds)} seeds). "
        f"Cells mean ± sample std over seeds; total compute {wall / 60:.1f} min.")
    metrics = [("auc", "mean ROC-AUC over labels"), ("accuracy", "label-wise accuracy")] if ml else [("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("auc", "ROC-AUC")]
    for key, label in metrics:
        header, rows, _ = results_table(shown, key)
        s.tables.append((f"Test {label} (mean ± std over {len(seeds)} seeds)", header, rows))
    full = {r["method"] for r in shown if r["label_fraction"] == 1.0 and r["method"].startswith("fully_supervised")}
    for key, label in metrics[:1] + ([metrics[2]] if not ml else []):
        s.figures.append((f"curve_{key}", F.fraction_curves(summarise(shown, key), label, full), f"Test {label} against the label fraction; error bars: std over seeds."))
    out.append(s)

    # per-class / per-label at the largest shared fraction
    fr = max(r["label_fraction"] for r in shown if r["label_fraction"] < 1.0) if any(r["label_fraction"] < 1.0 for r in shown) else 1.0
    s = Section(f"Per {'label' if ml else 'class'} at {100 * fr:g} % labels")
    methods = list(summarise([r for r in shown if r["label_fraction"] == fr]).items())
    if ml:
        rows = []
        for n in names:
            summ = {k: summarise([r for r in shown if r["label_fraction"] == fr and r["method"] == k], f"per_label_auc.{n}")[k]["cells"][fr] for k, _ in methods}
            rows.append([n] + [format_mean_std(summ[k]) for k, _ in methods])
        s.tables.append(("Test ROC-AUC per label (mean ± std)", ["label"] + [m["label"] for _, m in methods], rows))
    else:
        rows = []
        for k, m in methods:
            recs = [r for r in shown if r["method"] == k and r["label_fraction"] == fr]
            for c in names:
                vals = {q: [r["per_class"][c][q] for r in recs if r.get("per_class") and c in r["per_class"]] for q in ("precision", "recall", "f1")}
                rows.append([m["label"], c] + [f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}" if v else "—" for v in vals.values()])
        s.tables.append(("Test precision / recall / F1 per class (mean ± std over seeds)", ["method", "class", "precision", "recall", "F1"], rows))
        cms = {}
        for r in shown:
            if r["label_fraction"] == fr and r.get("confusion") is not None:
                cms.setdefault(r["method"], []).append(np.array(r["confusion"]))
        if cms:
            best = max(cms, key=lambda k: np.mean([np.trace(c) / max(c.sum(), 1) for c in cms[k]]))
            label = next(m["label"] for k, m in methods if k == best)
            s.figures.append(("confusion_pooled", F.confusion_figure(sum(cms[best]), names, f"{label}, {100 * fr:g} %, summed over seeds"),
                              f"Test confusion matrix of the most accurate method at {100 * fr:g} % labels, summed over {len(cms[best])} seeds."))
    out.append(s)

    # representative runs: a Dynamic Pass run (curves) else a One Pass run, largest fraction, first seed
    runs = [r for r in shown if r.get("kind") == "run" and r.get("role") == "method" and r["label_fraction"] == fr and r["seed"] == seeds[0]]
    rep = next((r for r in runs if r.get("mode") == "dynamic"), runs[0] if runs else None)
    if rep is not None:
        out += run_sections(folder / rep["run_dir"], title=f"{rep['label']}, {100 * fr:g} % labels, seed {rep['seed']}", **kw)
    return out


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:24px auto;padding:0 20px;color:#222}
h1{font-size:1.6em;border-bottom:2px solid #333;padding-bottom:6px}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:10px 0 18px;font-size:13px}th,td{border:1px solid #ccc;padding:4px 9px;text-align:right}
th{background:#f0f2f5}td:first-child,th:first-child{text-align:left}caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
figure{margin:12px 0 22px}figcaption{font-size:12.5px;color:#555;max-width:900px}img{max-width:100%;border:1px solid #eee}
p.meta{color:#666;font-size:12.5px}nav a{margin-right:12px;font-size:13px}
"""


def _render_html(title: str, sections: list[Section], meta: str) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(meta)}</p><nav>"]
    parts += [f"<a href='#s{i}'>{html.escape(s.title)}</a>" for i, s in enumerate(sections)]
    parts.append("</nav>")
    for i, s in enumerate(sections):
        parts.append(f"<section id='s{i}'><h2>{html.escape(s.title)}</h2>")
        parts += [f"<p>{html.escape(p)}</p>" for p in s.paragraphs]
        for cap, header, rows in s.tables:
            parts.append(f"<table><caption>{html.escape(cap)}</caption><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows]
            parts.append("</table>")
        for name, data, cap in s.figures:
            b64 = base64.b64encode(data).decode()
            parts.append(f"<figure id='fig-{name}'><img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'><figcaption>{html.escape(cap)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _render_md(title: str, sections: list[Section], meta: str, fig_dir: Path) -> str:
    lines = [f"# {title}", "", f"_{meta}_", ""]
    fig_dir.mkdir(exist_ok=True)
    for i, s in enumerate(sections):
        lines += [f"## {s.title}", ""]
        lines += [p + "\n" for p in s.paragraphs]
        for cap, header, rows in s.tables:
            lines += [f"**{cap}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
            lines.append("")
        for name, data, cap in s.figures:
            fname = f"{i:02d}_{name}.png"
            (fig_dir / fname).write_bytes(data)
            lines += [f"![{name}]({fig_dir.name}/{fname})", "", f"_{cap}_", ""]
    return "\n".join(lines)


def build_report(path: str | Path, max_points: int = 1500, n_examples: int = 16) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ ``report_figures/``) into a run or experiment folder.

    Parameters
    ----------
    path : folder holding ``results.jsonl`` (experiment) or ``metrics.json`` (run)
    max_points : images in the embedding and graph maps (t-SNE cost grows with it)
    n_examples : images in the example grid (up to half of them misclassified)

    Returns
    -------
    (html path, markdown path)
    """
    folder = Path(path)
    t0 = time.perf_counter()
    if (folder / "results.jsonl").is_file():
        sections = experiment_sections(folder, max_points=max_points, n_examples=n_examples)
        title = f"GraphNet Zoo experiment: {folder.name}"
    elif (folder / "metrics.json").is_file():
        sections = run_sections(folder, max_points=max_points, n_examples=n_examples)
        title = f"GraphNet Zoo run: {folder.name}"
    else:
        raise FileNotFoundError(f"{folder} holds neither results.jsonl (an experiment) nor metrics.json (a finished run)")
    meta = f"written {time.strftime('%Y-%m-%d %H:%M')} from {folder.resolve()} in {time.perf_counter() - t0:.0f} s"
    html_path, md_path = folder / "report.html", folder / "report.md"
    html_path.write_text(_render_html(title, sections, meta))
    md_path.write_text(_render_md(title, sections, meta, folder / "report_figures"))
    return html_path, md_path
