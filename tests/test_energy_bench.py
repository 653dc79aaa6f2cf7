"""bench/energy_bench.py's core on a tiny set: one shared labelled draw per seed, rows and summary consistent."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import REPO
from sklearn.datasets import make_moons

from graphzoo import knn_graph


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("energy_bench", REPO / "bench" / "energy_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_draw_labels_is_stratified_and_reproducible(bench):
    truth = np.repeat([0, 1, 2], [10, 20, 30])
    y = bench.draw_labels(truth, 3, seed=4)
    assert np.array_equal(y, bench.draw_labels(truth, 3, seed=4))
    assert not np.array_equal(y, bench.draw_labels(truth, 3, seed=5))
    assert np.bincount(y[y >= 0]).tolist() == [3, 3, 3] and (y[y >= 0] == truth[y >= 0]).all()


def test_bench_set_rows_and_summary(bench):
    X, truth = make_moons(80, noise=0.05, random_state=0)
    W = knn_graph(X, 8, metric="euclidean")
    rows = bench.bench_set(W, truth, ["poisson", "poisson_mbo"], [1, 3], range(2), "tiny")
    assert len(rows) == 2 * 2 * 2
    for r in rows:
        y = bench.draw_labels(truth, r["labels_per_class"], r["seed"])
        pred, _, _ = bench.solve(W, y, 2, r["energy"])  # the same draw reproduces the row's accuracy
        assert r["accuracy"] == pytest.approx((pred[y < 0] == truth[y < 0]).mean())
    summary = bench.summarise(rows)
    assert len(summary) == 4
    for s in summary:
        key = (s["energy"], s["labels_per_class"])
        accs = [r["accuracy"] for r in rows if (r["energy"], r["labels_per_class"]) == key]
        assert s["mean"] == pytest.approx(np.mean(accs)) and s["worst"] == min(accs) and s["seeds"] == 2
    table = bench.markdown(summary)
    assert table.count("\n") == 1 + len(summary) and "**" in table


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_saved_rows_reprint_the_same_table(bench, tmp_path, suffix):
    rows = [{"set": "s", "energy": e, "labels_per_class": 1, "seed": k, "accuracy": 0.5 + 0.1 * k, "seconds": 0.25,
             "warnings": "DegenerateSolutionWarning" if k else ""} for e in ("a", "b") for k in range(3)]
    path = str(tmp_path / f"rows{suffix}")
    bench.write_rows(rows, path)
    assert bench.markdown(bench.summarise(bench.read_rows(path))) == bench.markdown(bench.summarise(rows))


def test_runs_mode_reproduces_the_runs_own_graph_prediction(bench, tiny_one_pass):
    """``--runs``: the energy a run used, on its features with its own labels, gives its own graph accuracy;
    the labels are exactly its labelled training images."""
    from graphzoo.data import load_split

    rd = tiny_one_pass.rundir
    y, test, _ = bench.run_labels(str(rd), bench.load_run(str(rd))[1])
    split = load_split(rd.split)
    part = np.asarray(split["split"]).astype(str)
    assert np.array_equal(y >= 0, split["labelled"] & (part == "train")) and np.array_equal(test, part == "test")
    table = bench.bench_runs([str(rd)], [tiny_one_pass.metrics["energy"], "poisson"]).splitlines()
    own, same_energy = (float(v) for v in table[2].strip("| ").split(" | ")[3:5])
    assert same_energy == pytest.approx(own, abs=1e-9)
    assert table[-1].startswith("| mean of 1 |") and len(table) == 4
