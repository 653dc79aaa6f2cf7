"""The report's sections for an experiment folder (``results.jsonl`` of ``graphzoo experiment``).

The results: what they mean in a few generated sentences, the seed's tables (rows methods and
baselines, each with the prediction it reports: the graph's (transductive) or the net's
(inductive); columns label fractions; cells mean ± std over seeds) and metric-vs-fraction curves;
per-class (per-label) metrics and the pooled confusion matrix at the largest label fraction; then
the run sections of one featured run: the best method's, or the one the caller names. A grid with
an ``active:`` block gets a section of its simulated active-labelling curves (graph only); one with
run cells that differ only by ``pretrain`` gets their ψ maps side by side (:mod:`.pretrain_compare`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..experiments.active import GRAPH_ONLY, active_curves, active_sentence, active_table
from ..experiments.aggregate import collapsed_class, format_mean_std, fraction_label, results_table, summarise
from ..experiments.grid import read_results
from . import figures as F
from .pretrain_compare import pretrain_section
from .render import Section, say
from .run_sections import run_sections

__all__ = ["experiment_sections", "summary_sentences", "choose_featured"]

_SHORT = {"transductive": "graph", "inductive": "net"}


def _primary(multilabel: bool) -> tuple[str, str]:
    """The metric that ranks methods: accuracy, or the mean ROC-AUC over labels for a multi-label task."""
    return ("auc", "mean ROC-AUC over labels") if multilabel else ("accuracy", "accuracy")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _tagged(label: str, kind: str | None) -> str:
    return f"{label} ({_SHORT[kind]})" if kind in _SHORT else label


def _ranked(records: list[dict], fraction: float, metric: str) -> list[tuple[str, dict, dict]]:
    """(method, summary entry, cell) of every method with a value at ``fraction``, best mean first."""
    s = summarise([r for r in records if r["label_fraction"] == fraction], metric)
    have = [(k, m, m["cells"][fraction]) for k, m in s.items() if m["cells"][fraction]["mean"] is not None]
    return sorted(have, key=lambda t: -t[2]["mean"])


def summary_sentences(records: list[dict], metric: str, metric_name: str) -> list[str]:
    """What the results mean, one sentence per label fraction below 100 %, from the numbers.

    Each names the best method (by mean ``metric`` over seeds), its margin over the supervised
    baseline (labelled images only) and whether that margin is outside the seed spread: larger
    than the two methods' standard deviations added.
    """
    sup = {r["method"] for r in records if r.get("kind") == "supervised"}
    out = []
    for fr in sorted({r["label_fraction"] for r in records if r["label_fraction"] < 1.0}):
        ranked = _ranked(records, fr, metric)
        if not ranked:
            continue
        key, m, cell = ranked[0]
        text = (f"At {fraction_label(fr)} labels {_tagged(m['label'], m['prediction'])} has the best test "
                f"{metric_name}, {format_mean_std(cell)}")
        base = next(((k, c) for k, _, c in ranked if k in sup), None)
        if key in sup:
            text += ": the supervised baseline itself, so the unlabelled images did not help at this fraction."
        elif base is not None:
            diff, spread = cell["mean"] - base[1]["mean"], cell["std"] + base[1]["std"]
            if min(cell["n"], base[1]["n"]) < 2:
                where = "one seed, so no spread to compare with"
            elif abs(diff) > spread:
                where = f"outside the seed spread (the two standard deviations add to {spread:.3f})"
            else:
                where = f"within the seed spread (the two standard deviations add to {spread:.3f})"
            text += (f", {diff:+.3f} over the supervised baseline ({format_mean_std(base[1])}), {where}.")
        else:
            text += "."
        out.append(text)
    return out


def choose_featured(records: list[dict], fraction: float, metric: str, metric_name: str,
                    featured: str | None = None) -> tuple[dict | None, str]:
    """The run cell whose folder the detailed sections show, and a sentence saying which and why.

    Default: the best method by mean test ``metric`` at ``fraction`` (its first seed); when that
    method has no run folder of its own (GCN, LabelSpreading, the supervised baseline read from
    another run), the best method that has one. ``featured``: a method key or label to show instead.
    """
    runs = [r for r in records if r.get("kind") == "run" and r["label_fraction"] == fraction]
    ranked = _ranked(records, fraction, metric)
    at = f"{fraction_label(fraction)} labels"
    if featured:
        pick = [r for r in runs if featured in (r["method"], r.get("label"))]
        if not pick:
            options = sorted({r["method"] for r in runs})
            raise ValueError(f"featured method {featured!r} has no run at {at}; choose one of {options}")
        why = "chosen by the report's featured setting"
    else:
        with_run = [k for k, _, _ in ranked if any(r["method"] == k for r in runs)]
        if not with_run:
            return None, f"No method has a run folder at {at}, so no run is featured."
        pick = [r for r in runs if r["method"] == with_run[0]]
        best_key, best, cell = ranked[0]
        why = f"the best mean test {metric_name} at {at}"
        if best_key != with_run[0]:
            why = (f"the best method with a run folder at {at}; the best overall, "
                   f"{_tagged(best['label'], best['prediction'])} ({format_mean_std(cell)}), has none of its own")
    rec = min(pick, key=lambda r: r["seed"])
    value = summarise(pick, metric)[rec["method"]]["cells"][fraction]
    return rec, (f"Featured run: {rec['label']} at {at}, seed {rec['seed']} (mean test {metric_name} over seeds "
                 f"{format_mean_std(value)}), {why}.")


def _collapsed(records: list[dict], names: list) -> list[str]:
    """A warning per method with cells whose reported prediction put every test image in one class."""
    cells: dict[str, list[str]] = {}
    for r in records:
        cls = collapsed_class(r.get("confusion"), names)
        if cls is not None:
            key = _tagged(r["label"], r.get("test_prediction"))
            cells.setdefault(key, []).append(f"{fraction_label(r['label_fraction'])} seed {r['seed']}: all '{cls}'")
    n_cells = Counter(_tagged(r["label"], r.get("test_prediction")) for r in records)
    return [f"collapsed model: {key} predicts one class for every test image in {len(v)} of its {n_cells[key]} cells "
            f"({'; '.join(v)})." for key, v in cells.items()]


def _results_section(folder: Path, records: list[dict], shown: list[dict]) -> Section:
    ml = bool(records[0].get("multilabel"))
    seeds = sorted({r["seed"] for r in shown})
    n_test = {r["seed"]: r["n_test"] for r in shown}
    wall = sum(r.get("wall_s", 0) for r in records)
    s = Section(f"Experiment {folder.name}: results")
    s.warnings += _collapsed(shown, records[0].get("names") or [])
    key, name = _primary(ml)
    s.paragraphs += summary_sentences(shown, key, name)
    s.paragraphs.append(
        f"{len(records)} finished cells, seeds {seeds}, test images per split (seeds in that order): "
        f"{', '.join(str(n_test[sd]) for sd in seeds)}. Every cell of one (label fraction, seed) used the same "
        f"train / val / test split and labelled mask (hashes checked: "
        f"{_count(len({(r['seed'], r['split_hash']) for r in shown}), 'distinct split')} for "
        f"{_count(len(seeds), 'seed')}). "
        f"Cells mean ± sample std over seeds; total compute {wall / 60:.1f} min.")
    s.paragraphs.append(
        "Prediction: graph (transductive) rows are the labels the graph energy gives the test images, which "
        "were nodes of the graph (One Pass, GCN, LabelSpreading); net (inductive) rows are the trained network's "
        "prediction of each test image on its own (Dynamic Pass, the supervised baselines). A run of the hybrid "
        "model has both: the one it reports comes first, the other in the row below it.")
    metrics = ([("auc", "mean ROC-AUC over labels"), ("accuracy", "label-wise accuracy")] if ml else
               [("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("auc", "ROC-AUC")])
    for metric, label in metrics:
        header, rows, _ = results_table(shown, metric)
        s.tables.append((f"Test {label} (mean ± std over {_count(len(seeds), 'seed')})", header, rows))
    full = {r["method"] for r in shown if r["label_fraction"] == 1.0 and r["method"].startswith("fully_supervised")}
    for metric, label in metrics[:1] + ([metrics[2]] if not ml else []):
        summary = summarise(shown, metric)
        for m in summary.values():
            m["label"] = _tagged(m["label"], m["prediction"])
        s.figures.append((f"curve_{metric}", F.fraction_curves(summary, label, full),
                          f"Test {label} against the label fraction; error bars: std over seeds. "
                          "(graph): transductive prediction, (net): inductive."))
    return s


def _per_class_section(shown: list[dict], fr: float, ml: bool, names: list) -> Section:
    at = [r for r in shown if r["label_fraction"] == fr]
    methods = list(summarise(at).items())
    s = Section(f"Per {'label' if ml else 'class'} at {fraction_label(fr)} labels")
    if ml:
        rows = []
        positives = _test_positives(at, names)
        for n in names:
            cells = {k: summarise([r for r in at if r["method"] == k], f"per_label_auc.{n}")[k]["cells"][fr]
                     for k, _ in methods}
            shown = " / ".join(map(str, positives[n])) or "—"
            rows.append([n, shown] + [format_mean_std(cells[k]) for k, _ in methods])
        s.tables.append(("Test ROC-AUC per label (mean ± std)", ["label", "test positives (per seed)"]
                         + [_tagged(m["label"], m["prediction"]) for _, m in methods], rows))
        few = [n for n in names if positives[n] and min(positives[n]) < 10]
        if few:
            s.paragraphs.append(
                f"{len(few)} of {len(names)} labels have fewer than 10 positive test images in at least one seed "
                f"({', '.join(few)}): their AUC rests on a handful of images and swings from seed to seed.")
        return s
    rows = []
    for k, m in methods:
        recs = [r for r in at if r["method"] == k]
        for c in names:
            vals = {q: [r["per_class"][c][q] for r in recs if r.get("per_class") and c in r["per_class"]]
                    for q in ("precision", "recall", "f1")}
            rows.append([_tagged(m["label"], m["prediction"]), c]
                        + [f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0:.3f}" if v else "—"
                           for v in vals.values()])
    s.tables.append(("Test precision / recall / F1 per class (mean ± std over seeds)",
                     ["method", "class", "precision", "recall", "F1"], rows))
    cms: dict[str, list] = {}
    for r in at:
        if r.get("confusion") is not None:
            cms.setdefault(r["method"], []).append(np.array(r["confusion"]))
    best = next(((k, m) for k, m, _ in _ranked(at, fr, "accuracy") if k in cms), None)
    if best:
        k, m = best
        label = _tagged(m["label"], m["prediction"])
        s.figures.append(("confusion_pooled",
                          F.confusion_figure(sum(cms[k]), names, f"{label}, {fraction_label(fr)}, summed over seeds"),
                          f"Test confusion matrix of the most accurate method at {fraction_label(fr)} labels, "
                          f"{label}, summed over {len(cms[k])} seeds."))
    return s


def _test_positives(records: list[dict], names: list) -> dict[str, list[int]]:
    """Label -> positive test images per seed (seeds in order), from the records' per-label metrics."""
    by_seed = {}
    for r in sorted(records, key=lambda r: r["seed"]):
        if r.get("per_class") and r["seed"] not in by_seed:
            by_seed[r["seed"]] = r["per_class"]
    return {n: [pc[n]["positives"] for pc in by_seed.values() if "positives" in pc.get(n, {})] for n in names}


def _active_section(records: list[dict]) -> Section | None:
    """Simulated active labelling: the labels-vs-accuracy figure, its table and one sentence per fraction."""
    active = [r for r in records if r.get("kind") == "active" and r.get("curve")]
    if not active:
        return None
    curves = active_curves(active)
    o = active[0].get("options") or {}
    s = Section("Simulated active labelling (graph only, ψ not retrained)")
    s.paragraphs += [active_sentence(fr, c) for fr, c in curves.items()]
    s.paragraphs.append(
        f"Each curve starts from {o.get('start_per_class', '?')} random training labels per class (the same for "
        f"every strategy of a seed), then {o.get('rounds', '?')} rounds in which the strategy picks "
        f"{o.get('batch', '?')} training images whose labels are revealed from the hidden truth; after each round "
        f"the graph step is re-run and scored on the test images, which are never picked. {GRAPH_ONLY[0].upper()}"
        f"{GRAPH_ONLY[1:]} (the One Pass run's network was trained once on that fraction's labelled images), so "
        "the curves compare the acquisition strategies on a fixed graph, not a full active-learning loop.")
    panels = {f"ψ of the {fraction_label(fr)} One Pass runs": c for fr, c in curves.items()}
    seeds = sorted({r["seed"] for r in active})
    s.figures.append(("active_curves", F.active_curves(panels),
                      f"Test accuracy of the graph step against the number of labels revealed, per acquisition "
                      f"strategy (mean ± std over {_count(len(seeds), 'seed')}; random dotted). Labels are revealed "
                      "from the hidden truth round by round; ψ is not retrained, only the graph step is re-run."))
    header, rows = active_table(active)
    s.tables.append(("Test accuracy vs labels revealed (mean ± std over seeds)", header, rows))
    return s


def experiment_sections(folder: Path, featured: str | None = None, log=None, **kw) -> list[Section]:
    """Sections of an experiment folder (see the module docstring); ``kw`` go to :func:`run_sections`."""
    folder = Path(folder)
    records = read_results(folder)
    if not records:
        raise ValueError(f"{folder}/results.jsonl holds no finished cell; run graphzoo experiment first")
    say(log, f"experiment {folder}: {len(records)} cells")
    shown = [r for r in records if r.get("role") not in ("source", "active")]  # the seed's tables' rows
    ml = bool(records[0].get("multilabel"))
    out = [_results_section(folder, records, shown)]
    active = _active_section(records)
    if active is not None:
        out.append(active)
    below = [r["label_fraction"] for r in shown if r["label_fraction"] < 1.0]
    fr = max(below) if below else 1.0
    out.append(_per_class_section(shown, fr, ml, records[0].get("names") or []))
    pre = pretrain_section(folder, records, max_points=kw.get("max_points", 1500), log=log)
    if pre is not None:  # the grid has runs that differ only by their self-supervised start
        out.append(pre)
    rec, why = choose_featured(shown, fr, *_primary(ml), featured=featured)
    if rec is not None:
        title = f"{rec['label']}, {fraction_label(fr)} labels, seed {rec['seed']}"
        sections = run_sections(folder / rec["run_dir"], title=title, log=log, **kw)
        sections[0].paragraphs.insert(0, why)
        out += sections
    else:
        out[0].paragraphs.append(why)
    return out
