"""graphzoo compare: the seed's numbers beside ours, read from results files; stale or missing files refused."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import yaml

from graphzoo.experiments.grid import write_summary
from graphzoo.report.paper_comparison import add_arguments, comparison_rows, main, render_comparison

ROOT = Path(__file__).resolve().parents[1]


def _records(values: dict) -> list[dict]:
    """Grid records as run_grid keeps them: (method, fraction) -> accuracy per seed."""
    out = []
    for (method, fraction), accs in values.items():
        for seed, acc in enumerate(accs):
            out.append({"cell": f"{method}|lf={fraction:g}|seed={seed}", "method": method, "label": f"{method} label",
                        "role": "method", "label_fraction": fraction, "seed": seed, "accuracy": acc,
                        "balanced_accuracy": acc, "auc": acc + 0.05, "n_labelled_train": 40 + seed, "n_test": 100,
                        "test_prediction": "transductive" if method.startswith("op") else "inductive"})
    return out


def _setup(tmp_path: Path) -> Path:
    grid = tmp_path / "grid"
    grid.mkdir(exist_ok=True)
    write_summary(grid, _records({("op-a", 0.2): [0.8, 0.9, 0.85], ("full-a", 1.0): [0.95]}))  # the grid's own writer
    (tmp_path / "docs").mkdir(exist_ok=True)
    (tmp_path / "docs" / "g.csv").write_text((grid / "results.csv").read_text())
    seed = {"source": "test transcription",
            "protocol": {"malaria": {"resolution": "224", "colour": "RGB", "split": "not stated"}},
            "entries": [{"id": "malaria.m1.20", "table": "Table 1", "method": "Model 1", "labels": 0.2,
                         "metric": "accuracy", "value": 0.943, "std": 0.005},
                        {"id": "malaria.full", "table": "Table 1", "method": "ResNet-50", "labels": 0.7,
                         "metric": "accuracy", "value": 0.957},
                        {"id": "cbis.m1.20", "table": "Table 1 (CBIS)", "method": "Model 1", "labels": 0.2,
                         "metric": "auc", "value": 0.729}]}
    spec = {"seed": "seed.yaml", "results": {"g": {"file": "g.csv", "command": "graphzoo experiment --config x.yaml"}},
            "protocol": {"malaria": {"resolution": "32", "colour": "RGB", "split": "patient-grouped"}},
            "rows": [{"seed": "malaria.m1.20", "ours": {"results": "g", "method": "op-a", "fraction": 0.2,
                                                        "metric": "accuracy"}, "differences": ["backbone: x → y"]},
                     {"seed": "malaria.full", "ours": {"results": "g", "method": "full-a", "fraction": 1.0,
                                                       "metric": "auc"}},
                     {"seed": "cbis.m1.20", "ours": {"none": "no images"}}]}
    (tmp_path / "docs" / "seed.yaml").write_text(yaml.safe_dump(seed))
    (tmp_path / "docs" / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return tmp_path / "docs" / "spec.yaml"


def test_rows_from_results_files(tmp_path):
    rows, _ = comparison_rows(_setup(tmp_path))
    assert len(rows) == 3
    r = rows[0]
    # mean and sample std of the three seeds, computed here independently
    v = np.array([0.8, 0.9, 0.85])
    assert r["ours_value"] == f"{v.mean():.3f} ± {v.std(ddof=1):.3f} (accuracy, 3 seeds)"
    assert r["seed_value"] == "0.943 ± 0.005" and r["seed_what"] == "Model 1, 20 % labels"
    assert r["ours_what"] == "op-a label, 20 % labels, graph (transductive)"
    # every protocol key that differs, none that agrees, then the row's own differences and the data sizes
    assert "resolution: 224 → 32" in r["differences"] and "split: not stated → patient-grouped" in r["differences"]
    assert "colour" not in r["differences"]
    assert "backbone: x → y" in r["differences"]
    assert "41 labelled training images, 100 test images" in r["differences"]  # mean of 40, 41, 42
    assert rows[1]["ours_value"] == "1.000 ± 0.000 (AUC, 1 seed)"  # 0.95 + 0.05: the auc column, one seed
    assert rows[2]["ours_value"] == "no number: no images" and rows[2]["differences"] == "—"


def test_markdown_and_check(tmp_path, capsys):
    spec = _setup(tmp_path)
    text = render_comparison(spec)
    assert text.count("\n## ") == 2 and "## Table 1 (CBIS)" in text
    assert f"`{(tmp_path / 'docs' / 'g.csv').resolve().as_posix()}` (g): `graphzoo experiment --config x.yaml`" in text
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "cmp.md"
    assert main(parser.parse_args([str(spec), "-o", str(out)])) == 0
    assert out.read_text() == text
    assert main(parser.parse_args([str(spec), "-o", str(out), "--check"])) == 0
    out.write_text(text + "edited by hand\n")
    assert main(parser.parse_args([str(spec), "-o", str(out), "--check"])) == 1
    assert "stale" in capsys.readouterr().err


def test_missing_results_file_and_bad_rows(tmp_path):
    spec = _setup(tmp_path)
    (tmp_path / "docs" / "g.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"results file .*g\.csv does not exist.*results\.csv"):
        comparison_rows(spec)
    spec = _setup(tmp_path)
    s = yaml.safe_load(spec.read_text())
    s["rows"][0]["ours"]["method"] = "op-b"
    spec.write_text(yaml.safe_dump(s))
    with pytest.raises(ValueError, match=r"rows\[0\].*no cell of method 'op-b' at label fraction 0.2.*op-a@0.2"):
        comparison_rows(spec)
    s["rows"][0] = {"seed": "malaria.nope", "ours": {"none": "x"}}
    spec.write_text(yaml.safe_dump(s))
    with pytest.raises(ValueError, match=r"seed id 'malaria.nope' is not in seed.yaml"):
        comparison_rows(spec)


def test_committed_comparison_is_current():
    """docs/paper_comparison.md is what `graphzoo compare` gives from the committed files."""
    spec = ROOT / "docs" / "comparison" / "paper_comparison.yaml"
    page = ROOT / "docs" / "paper_comparison.md"
    if not page.is_file():
        pytest.skip("docs/paper_comparison.md not generated")
    import os

    cwd = os.getcwd()
    os.chdir(ROOT)  # the page names the spec by its path relative to the repository root
    try:
        assert render_comparison(spec.relative_to(ROOT)) == page.read_text()
    finally:
        os.chdir(cwd)
