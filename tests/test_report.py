"""The report renders every section, self-contained, for an experiment and for a single run
(single-label with a Dynamic Pass; multi-label)."""

from __future__ import annotations

import io
import re

import yaml

from graphzoo.experiments import load_grid, run_grid
from graphzoo.report import build_report

from test_grid import TINY_RUN, write_npz


def tiny_experiment(tmp_path, multilabel=False):
    data = write_npz(tmp_path / "tiny.npz", n=100, multilabel=multilabel)
    spec = {"name": "r", "out": str(tmp_path / "exp"), "set": {"data": str(data), **TINY_RUN, **({"task": "multilabel"} if multilabel else {})},
            "label_fractions": [0.2, 0.5], "seeds": [0, 1],
            "methods": [{"mode": "one-pass", "energies": ["label_spreading"]}] + ([] if multilabel else [{"mode": "dynamic", "set": {"epochs": 2}}]),
            "baselines": ["supervised", "gcn"] if multilabel else ["supervised", "fully_supervised", "gcn", "sklearn_label_spreading"],
            "gcn": {"epochs": 20}, "report": False}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    g = load_grid(path)
    run_grid(g, log=io.StringIO())
    return g.folder


def images_in(html):
    return re.findall(r"<img [^>]*src='([^']*)'", html)


def test_experiment_report_has_all_sections(tmp_path):
    folder = tiny_experiment(tmp_path)
    html_path, md_path = build_report(folder, max_points=80, n_examples=8)
    html = html_path.read_text()
    for fig in ("curve_accuracy", "curve_auc", "confusion_pooled", "confusion", "embedding", "graph", "examples", "dynamic"):
        assert f"id='fig-{fig}'" in html, fig
    imgs = images_in(html)
    assert imgs and all(src.startswith("data:image/png;base64,") for src in imgs)  # self-contained
    assert "http://" not in html and "https://" not in html
    # the seed's table: methods and baselines as rows, fractions as columns, mean ± std cells
    assert "<th>20 %</th><th>50 %</th><th>100 %</th>" in html
    for row in ("One Pass · small_cnn · label_spreading", "Dynamic Pass · small_cnn · label_spreading", "Supervised, labelled subset only",
                "Fully supervised (all labels)", "GCN (Kipf &amp; Welling)", "scikit-learn LabelSpreading"):
        assert row in html, row
    assert len(re.findall(r"<td>\d\.\d{3} ± \d\.\d{3}</td>", html)) >= 3 * 6 * 2
    md = md_path.read_text()
    assert "| Method | 20 % | 50 % | 100 % |" in md
    for name in re.findall(r"\]\((report_figures/[^)]+)\)", md):
        assert (folder / name).stat().st_size > 1000


def test_multilabel_experiment_and_run_report(tmp_path):
    folder = tiny_experiment(tmp_path, multilabel=True)
    html = build_report(folder, max_points=80, n_examples=8)[0].read_text()
    assert "mean ROC-AUC over labels" in html and "Test ROC-AUC per label" in html
    for fig in ("curve_auc", "per_label_auc", "embedding", "graph", "examples"):
        assert f"id='fig-{fig}'" in html, fig
    run = next((folder / "runs").glob("op-*"))
    (run / "features.npy").unlink()  # the run-folder report recomputes ψ from the checkpoint
    html = build_report(run, max_points=60, n_examples=6)[0].read_text()
    assert "id='fig-embedding'" in html and (run / "features.npy").is_file()
