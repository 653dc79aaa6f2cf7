"""The report: every section, self-contained, for an experiment and for a single run (single-label
with a Dynamic Pass; multi-label); both prediction kinds shown and labelled; the featured run is the
best method's; a collapsed model is flagged; a run's saved split is read, not drawn again."""

from __future__ import annotations

import ast
import csv
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import graphzoo
from graphzoo.experiments import load_grid, run_grid, summarise
from graphzoo.report import build_report
from graphzoo.report.experiment_sections import _collapsed, _results_section, choose_featured, summary_sentences
from graphzoo.report.run_sections import _dynamic_section as dynamic_section
from graphzoo.report.run_sections import collapse_warnings, read_run
from graphzoo.rundir import RunDir

from conftest import TINY_RUN, write_npz

PACKAGE = Path(graphzoo.__file__).parent


def tiny_experiment(tmp_path, multilabel=False):
    data = write_npz(tmp_path / "tiny.npz", n=100, multilabel=multilabel)
    spec = {"name": "r", "out": str(tmp_path / "exp"),
            "set": {"data": str(data), **TINY_RUN, **({"task": "multilabel"} if multilabel else {})},
            "label_fractions": [0.2, 0.5], "seeds": [0, 1],
            "methods": [{"mode": "one-pass", "energies": ["label_spreading"]}]
            + ([] if multilabel else [{"mode": "dynamic", "set": {"epochs": 2}}]),
            "baselines": ["supervised", "gcn"] if multilabel else ["supervised", "fully_supervised", "gcn",
                                                                   "sklearn_label_spreading"],
            "gcn": {"epochs": 20}, "report": False}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    g = load_grid(path)
    run_grid(g, log=io.StringIO())
    return g.folder


def images_in(html):
    return re.findall(r"<img [^>]*src='([^']*)'", html)


def refuse_redrawing(monkeypatch):
    """From now on, drawing the data again is an error: the report must read the runs' saved split."""
    def refuse(*args, **kwargs):
        raise AssertionError("the report called prepare_data instead of reading the run folder")

    monkeypatch.setattr("graphzoo.data.prepare_data", refuse)
    monkeypatch.setattr("graphzoo.data.prepare.prepare_data", refuse)


def test_experiment_report_has_all_sections(tmp_path, monkeypatch):
    folder = tiny_experiment(tmp_path)
    refuse_redrawing(monkeypatch)
    log = io.StringIO()
    html_path, md_path = build_report(folder, max_points=80, n_examples=8, log=log)
    html = html_path.read_text()
    for fig in ("curve_accuracy", "curve_auc", "confusion_pooled", "confusion", "embedding", "graph", "examples"):
        assert f"id='fig-{fig}'" in html, fig
    dynamic = dynamic_section(read_run(next((folder / "runs").glob("dp-*"))), "dp")
    assert dynamic.figures[0][0] == "dynamic" and dynamic.figures[0][1].startswith(b"\x89PNG")
    imgs = images_in(html)
    assert imgs and all(src.startswith("data:image/png;base64,") for src in imgs)  # self-contained
    assert "http://" not in html and "https://" not in html
    assert "ψ from scratch vs from the pretrained encoder" not in html  # no run pair differs only by pretrain
    # the seed's table: methods and baselines as rows, the prediction each reports, fractions as columns
    assert "<th>Method</th><th>Prediction</th><th>20 %</th><th>50 %</th><th>100 %</th>" in html
    for row in ("One Pass · small_cnn · label_spreading", "Dynamic Pass · small_cnn · label_spreading",
                "Supervised, labelled subset only", "Fully supervised (all labels)", "GCN (Kipf &amp; Welling)",
                "scikit-learn LabelSpreading"):
        assert row in html, row
    # One Pass and GCN rows report the graph's prediction, Dynamic Pass and supervised rows the net's
    for label, kind in (("One Pass · small_cnn · label_spreading", "graph (transductive)"),
                        ("Dynamic Pass · small_cnn · label_spreading", "net (inductive)"),
                        ("GCN (Kipf &amp; Welling) on the ψ kNN graph · small_cnn", "graph (transductive)"),
                        ("Supervised, labelled subset only · small_cnn", "net (inductive)")):
        assert re.search(f"<tr><td>{re.escape(label)}</td><td>{re.escape(kind)}</td>", html), (label, kind)
    assert len(re.findall(r"<td>\d\.\d{3} ± \d\.\d{3}</td>", html)) >= 3 * 6 * 2
    md = md_path.read_text()
    assert "| Method | Prediction | 20 % | 50 % | 100 % |" in md
    for name in re.findall(r"\]\((report_figures/[^)]+)\)", md):
        assert (folder / name).stat().st_size > 1000
    # the featured run is the best method with a run folder at the largest fraction below 100 %
    records = [r for r in map(__import__("json").loads, (folder / "results.jsonl").read_text().splitlines())
               if r.get("role") != "source"]
    best = max((m for k, m in summarise([r for r in records if r["label_fraction"] == 0.5]).items()
                if any(r["method"] == k and r["kind"] == "run" for r in records)),
               key=lambda m: m["cells"][0.5]["mean"])
    assert f"<h2>{best['label']}, 50 % labels, seed 0: test metrics</h2>" in html
    assert "Featured run: " in html and "the best mean test accuracy at 50 % labels" in html
    assert "At 20 % labels " in html and "At 50 % labels " in html  # what the results mean
    assert "seed Fig" not in html and "the paper&#x27;s Fig. 2" in html
    assert "report: 2-D map of 80 of 100 points" in log.getvalue()  # progress on the log stream

    # a collapsed net (every test image one class) is flagged in the run's section
    run = folder / "runs" / "op-small_cnn-label_spreading-lf0.5-s0"
    copy = tmp_path / "collapsed_run"
    shutil.copytree(run, copy)
    rows = list(csv.DictReader(open(RunDir(copy).predictions, newline="")))
    for r in rows:
        r["pred_net"] = "left"
    with open(RunDir(copy).predictions, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    warnings = collapse_warnings(read_run(copy))
    assert any("net (inductive) prediction is 'left' for all" in w for w in warnings)
    assert not any("graph (transductive)" in w for w in warnings) or all(r["pred_graph"] == "left" for r in rows
                                                                       if r["split"] == "test")


def test_multilabel_experiment_and_run_report(tmp_path, monkeypatch):
    folder = tiny_experiment(tmp_path, multilabel=True)
    refuse_redrawing(monkeypatch)
    html = build_report(folder, max_points=80, n_examples=8, log=None)[0].read_text()
    assert "mean ROC-AUC over labels" in html and "Test ROC-AUC per label" in html
    assert "<th>Prediction</th>" in html and "graph (transductive)" in html
    for fig in ("curve_auc", "per_label_auc", "embedding", "graph", "examples"):
        assert f"id='fig-{fig}'" in html, fig
    run = next((folder / "runs").glob("op-*"))
    RunDir(run).features.unlink()  # the run-folder report recomputes ψ from the checkpoint
    html = build_report(run, max_points=60, n_examples=6, log=None)[0].read_text()
    assert "id='fig-embedding'" in html and RunDir(run).features.is_file()
    assert "Test split, both predictions" in html and "net (inductive)" in html and "graph (transductive)" in html


def rec(method, label, kind, prediction, fraction, seed, accuracy, role="method", **kw):
    return {"method": method, "label": label, "kind": kind, "role": role, "test_prediction": prediction,
            "label_fraction": fraction, "seed": seed, "accuracy": accuracy, "n_test": 50, "split_hash": str(seed),
            "run_dir": f"runs/{method}-{fraction}-{seed}", "names": ["left", "right"], **kw}


def grid_records(dp=(0.80, 0.84), op=(0.86, 0.88), gcn=(0.70, 0.72), sup=(0.75, 0.77)):
    out = []
    for s in (0, 1):
        out += [rec("op", "One Pass", "run", "transductive", 0.5, s, op[s]),
                rec("dp", "Dynamic Pass", "run", "inductive", 0.5, s, dp[s]),
                rec("gcn", "GCN", "gcn", "transductive", 0.5, s, gcn[s], role="baseline"),
                rec("sup", "Supervised", "supervised", "inductive", 0.5, s, sup[s], role="baseline")]
    return out


def test_featured_run_is_the_best_method_not_dynamic_pass_by_default():
    r, why = choose_featured(grid_records(), 0.5, "accuracy", "accuracy")
    assert r["method"] == "op" and r["seed"] == 0
    assert "One Pass" in why and "the best mean test accuracy at 50 % labels" in why and "0.870 ± 0.014" in why
    r, _ = choose_featured(grid_records(dp=(0.9, 0.92)), 0.5, "accuracy", "accuracy")
    assert r["method"] == "dp"
    # the best method has no run folder of its own (GCN): the best one that has is featured, and why is said
    r, why = choose_featured(grid_records(gcn=(0.95, 0.97)), 0.5, "accuracy", "accuracy")
    assert r["method"] == "op" and "GCN (graph) (0.960 ± 0.014), has none of its own" in why
    # the report's setting wins; a name without a run is one clear error
    r, why = choose_featured(grid_records(), 0.5, "accuracy", "accuracy", featured="Dynamic Pass")
    assert r["method"] == "dp" and "chosen by the report's featured setting" in why
    with pytest.raises(ValueError, match="featured method 'GCN' has no run at 50 % labels; choose one of"):
        choose_featured(grid_records(), 0.5, "accuracy", "accuracy", featured="GCN")


def test_summary_sentences_say_best_margin_and_spread():
    (text,) = summary_sentences(grid_records(), "accuracy", "accuracy")
    assert text.startswith("At 50 % labels One Pass (graph) has the best test accuracy, 0.870 ± 0.014")
    assert "+0.110 over the supervised baseline (0.760 ± 0.014), outside the seed spread" in text
    (text,) = summary_sentences(grid_records(op=(0.74, 0.90), dp=(0.5, 0.5), sup=(0.76, 0.76)), "accuracy", "accuracy")
    assert "within the seed spread" in text
    (text,) = summary_sentences(grid_records(sup=(0.99, 0.99)), "accuracy", "accuracy")
    assert "the supervised baseline itself" in text


def test_experiment_flags_collapsed_cells_and_prints_test_counts_in_seed_order(tmp_path):
    names = ["left", "right"]
    records = grid_records()
    records[3]["confusion"] = [[25, 0], [25, 0]]  # supervised, seed 0: every test image "left"
    records[0]["confusion"] = [[20, 5], [3, 22]]
    for r in records:
        r["n_test"] = 61 if r["seed"] == 0 else 48
    (warning,) = _collapsed(records, names)
    assert warning.startswith("collapsed model: Supervised (net) predicts one class for every test image in 1 of its 2")
    assert "50 % seed 0: all 'left'" in warning
    s = _results_section(tmp_path, records, records)
    assert s.warnings == [warning]
    assert "test images per split (seeds in that order): 61, 48" in " ".join(s.paragraphs)


def test_report_and_experiments_import_no_cli_and_no_cycle():
    """report -> experiments only; no library module imports a command-line module; run-folder files are
    named through RunDir in the report."""
    def imports(path: Path) -> set[str]:
        tree = ast.parse(path.read_text())
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names.add("." * node.level + (node.module or ""))
                names.update(f"{'.' * node.level}{node.module or ''}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        return names

    for path in (PACKAGE / "experiments").glob("*.py"):
        assert not any("report" in n for n in imports(path)), path
    cli_modules = {"cli", "experiment_cli", "__main__"}
    for path in PACKAGE.rglob("*.py"):
        if path.stem in cli_modules:
            continue
        assert not any(n.split(".")[-1] in cli_modules for n in imports(path)), path
    for path in (PACKAGE / "report").glob("*.py"):
        text = path.read_text()
        for name in ("metrics.json", "predictions.csv", "history.csv", "features.npy", "split.json", "config.yaml"):
            assert f'"{name}"' not in text and f"'{name}'" not in text, (path, name)


def test_run_report_shows_reliability_and_coverage_accuracy(tmp_path):
    from graphzoo.config import RunConfig
    from graphzoo.report.run_sections import _calibration_section
    from graphzoo.train import run_training

    data = write_npz(tmp_path / "tiny.npz", n=100)
    cfg = RunConfig(data=str(data), out=str(tmp_path), name="r", progress=False, **TINY_RUN)
    metrics = run_training(cfg).metrics
    run = read_run(tmp_path / "r")
    s = _calibration_section(run, "r")
    assert [f[0] for f in s.figures] == ["reliability", "coverage_accuracy"]
    assert all(f[1].startswith(b"\x89PNG") for f in s.figures)
    assert "Reliability diagram" in s.figures[0][2] and "least confident" in s.figures[1][2]
    t = metrics["calibration"]["test"]
    assert f"{t['ece_before']:.3f} before, {t['ece_after']:.3f} after" in s.paragraphs[0]
    assert f"{100 * t['refer_rate']:.1f} % of the test images" in s.paragraphs[0]
    # "why this label": test images beside their nearest labelled training images (predictions.csv's evidence)
    from graphzoo.report.run_sections import _evidence_section

    lab = set(np.flatnonzero(run.labelled & (run.split == "train")))
    assert all(len(e) == 3 and set(e) <= lab for e in run.evidence)
    why = _evidence_section(run, "r", 0, None)
    assert why.figures[0][0] == "evidence" and why.figures[0][1].startswith(b"\x89PNG")
    # a run without calibration (made before it) simply has no such section
    run.metrics.pop("calibration")
    assert _calibration_section(run, "r") is None


def test_active_labelling_cells_write_curves_and_the_report_shows_them(tmp_path):
    """A tiny grid with an ``active:`` block: one record per (seed, strategy) with its curve (labels grow by
    ``batch``; graph only), kept out of the seed's tables, and the report's figure, table and sentence."""
    from graphzoo.experiments import read_results
    from graphzoo.experiments.active import active_curves

    data = write_npz(tmp_path / "tiny.npz", n=100)
    spec = {"name": "a", "out": str(tmp_path / "exp"), "set": {"data": str(data), **TINY_RUN},
            "label_fractions": [0.2], "seeds": [0, 1], "methods": [{"mode": "one-pass"}], "baselines": [],
            "active": {"strategies": ["random", "uncertainty"], "start_per_class": 2, "rounds": 3, "batch": 5},
            "report": False}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    g = load_grid(path)
    run_grid(g, log=io.StringIO())
    records = read_results(g.folder)
    active = [r for r in records if r["kind"] == "active"]
    assert len(active) == 4 and {r["strategy"] for r in active} == {"random", "uncertainty"}
    op = {r["seed"]: r for r in records if r["kind"] == "run"}
    for r in active:
        assert [p["n_labels"] for p in r["curve"]] == [4, 9, 14, 19] and r["graph_only"] is True
        assert "not retrained" in r["note"] and r["run_dir"] == op[r["seed"]]["run_dir"]
        assert r["label_hash"] == op[r["seed"]]["label_hash"]  # the same split and fraction as its source run
        assert all(0 <= p["accuracy"] <= 1 for p in r["curve"]) and r["accuracy"] == r["curve"][-1]["accuracy"]
    first = {(r["seed"], r["strategy"]): r["curve"][0]["accuracy"] for r in active}
    assert first[(0, "random")] == first[(0, "uncertainty")]  # one start per seed, shared by the strategies
    summary = (g.folder / "summary.md").read_text()
    assert "Simulated active labelling" in summary and "Active labelling ·" not in summary.split("## Simulated")[0]

    html = build_report(g.folder, max_points=60, n_examples=4, log=io.StringIO())[0].read_text()
    assert "id='fig-active_curves'" in html and "ψ is not retrained" in html
    curves = active_curves(records)[0.2]
    u, r = curves["uncertainty"], curves["random"]
    if u["mean"][-1] > r["mean"][-1]:
        assert f"uncertainty reaches the best test accuracy after the last round, {u['mean'][-1]:.3f} ± " in html
    else:
        assert f"no acquisition strategy beats random labelling after the last round: random reaches " \
               f"{r['mean'][-1]:.3f} ± {r['std'][-1]:.3f} with 19 labels" in html
    assert "<th>labels</th><th>random</th><th>uncertainty</th>" in html
    assert "Active labelling ·" not in html.split("Simulated active labelling")[0]  # not a row of the seed's tables


def test_active_sentence_counts_random_labels_to_match():
    from graphzoo.experiments.active import active_sentence, random_labels_to_reach

    n = np.array([10, 20, 30])
    curves = {"random": {"n_labels": n, "mean": np.array([0.6, 0.7, 0.8]), "std": np.zeros(3), "n": 3},
              "uncertainty": {"n_labels": n, "mean": np.array([0.6, 0.75, 0.76]), "std": np.full(3, 0.01), "n": 3}}
    assert random_labels_to_reach(0.76, n, curves["random"]["mean"]) == pytest.approx(26.0)
    assert random_labels_to_reach(0.9, n, curves["random"]["mean"]) is None
    text = active_sentence(0.05, curves)
    assert "no acquisition strategy beats random labelling after the last round: random reaches 0.800" in text
    curves["uncertainty"]["mean"] = np.array([0.6, 0.8, 0.8])  # a tie is no win
    assert "no acquisition strategy beats random" in active_sentence(0.05, curves)
    curves["uncertainty"]["mean"] = np.array([0.6, 0.8, 0.85])
    text = active_sentence(0.05, curves)
    assert "uncertainty reaches the best test accuracy after the last round, 0.850 ± 0.010 with 30 labels" in text
    assert "would need more than 30" in text
    curves["random"]["mean"] = np.array([0.6, 0.9, 0.84])  # first crossing of 0.85: 10 + 10 * 0.25 / 0.3
    assert "about 18 random labels reach 0.850" in active_sentence(0.05, curves)


def test_report_of_a_run_without_a_test_part(tmp_path):
    """holdout=False (production): no test images; the report shows the cross-validation estimate instead
    of failing on empty test metrics."""
    from conftest import TINY_RUN, write_npz

    from graphzoo.config import RunConfig
    from graphzoo.report import build_report
    from graphzoo.train import run_training

    path = write_npz(tmp_path / "cells.npz", n=120)
    cfg = RunConfig(data=str(path), out=str(tmp_path), name="prod", progress=False, holdout=False,
                    label_fraction=1.0, **{**TINY_RUN, "n_neighbors": 5, "val_labels": "budget"})
    run = run_training(cfg).rundir
    html, _ = build_report(run.path, max_points=100)
    text = html.read_text()
    assert "no test part" in text and "cross-validation" in text
