"""experiments.aggregate: mean ± std over seeds, the results table (with the prediction each row
reports), the per-cell metrics, the Markdown table writer and the collapsed-model check."""

from __future__ import annotations

import numpy as np
import pytest

from graphzoo.experiments.aggregate import (cell_metrics, collapsed_class, format_mean_std, fraction_label,
                                            markdown_table, results_table, summarise)


def records(kind: bool = True) -> list[dict]:
    """Method "op" (a One Pass run, graph prediction reported, the net's recorded too) over 3 seeds at
    two fractions; a GCN baseline (graph) at one."""
    out = []
    for f, vals, net in ((0.01, [0.5, 0.7, 0.9], [0.4, 0.4, 0.4]), (0.2, [0.8, 0.8, 0.8], [0.6, 0.7, 0.8])):
        for s, (v, n) in enumerate(zip(vals, net)):
            r = {"method": "op", "label": "One Pass", "kind": "run", "role": "method", "label_fraction": f,
                 "seed": s, "accuracy": v, "balanced_accuracy": v}
            if kind:
                r.update(test_prediction="transductive", test_transductive_accuracy=v, test_inductive_accuracy=n)
            out.append(r)
    out.append({"method": "gcn", "label": "GCN", "kind": "gcn", "role": "baseline", "label_fraction": 0.2, "seed": 0,
                "accuracy": 0.6, **({"test_prediction": "transductive"} if kind else {})})
    return out


def test_summarise_mean_sample_std_and_prediction():
    s = summarise(records(), "accuracy")
    assert list(s) == ["op", "gcn"]
    assert s["op"]["kind"] == "method" and s["gcn"]["kind"] == "baseline"
    assert s["op"]["prediction"] == "transductive"
    cell = s["op"]["cells"][0.01]
    assert cell["mean"] == pytest.approx(0.7) and cell["std"] == pytest.approx(0.2)  # sample std, ddof=1
    assert cell["n"] == 3 and cell["seeds"] == [0, 1, 2]
    assert s["gcn"]["cells"][0.2] == {"mean": 0.6, "std": 0.0, "n": 1, "seeds": [0]}
    assert summarise(records(), "auc")["op"]["cells"][0.2]["mean"] is None  # missing metric: an empty cell
    no_role = [{k: v for k, v in r.items() if k != "role"} for r in records()]
    assert summarise(no_role, "accuracy")["gcn"]["kind"] == "method"  # a record without a role is a method's


def test_results_table_names_the_prediction_and_shows_the_other_kind_in_its_own_row():
    header, rows, fr = results_table(records(), "accuracy")
    assert header == ["Method", "Prediction", "1 %", "20 %"] and fr == [0.01, 0.2]
    assert rows == [["One Pass", "graph (transductive)", "0.700 ± 0.200", "0.800 ± 0.000"],
                    ["One Pass", "net (inductive)", "0.400 ± 0.000", "0.700 ± 0.100"],
                    ["GCN", "graph (transductive)", "—", "0.600 ± 0.000"]]
    # no other-kind value recorded for balanced accuracy: one row per method
    assert [r[:2] for r in results_table(records(), "balanced_accuracy")[1]] == [
        ["One Pass", "graph (transductive)"], ["GCN", "graph (transductive)"]]


def test_results_table_without_recorded_prediction_keeps_the_plain_layout():
    header, rows, _ = results_table(records(kind=False), "accuracy")
    assert header == ["Method", "1 %", "20 %"]
    assert rows == [["One Pass", "0.700 ± 0.200", "0.800 ± 0.000"], ["GCN", "—", "0.600 ± 0.000"]]


def test_format_mean_std_and_fraction_label():
    assert format_mean_std({"mean": 0.91234, "std": 0.0104, "n": 3}) == "0.912 ± 0.010"
    assert format_mean_std({"mean": 0.5, "std": 0.25}, digits=1) == "0.5 ± 0.2"
    assert format_mean_std(None) == "—" and format_mean_std({"mean": None, "std": None}) == "—"
    assert [fraction_label(f) for f in (0.01, 0.2, 1.0, 0.005)] == ["1 %", "20 %", "100 %", "0.5 %"]


def test_markdown_table():
    text = markdown_table(["Method", "1 %"], [["a|b", "0.5 ± 0.1"], ["c", 3]])
    assert text.splitlines() == ["| Method | 1 % |", "|---|---|", "| a\\|b | 0.5 ± 0.1 |", "| c | 3 |"]


def test_cell_metrics_confusion_accuracy_and_per_class():
    m = cell_metrics(np.array([0, 0, 1, 1, 2]), np.eye(3)[[0, 1, 1, 1, 2]], ["x", "y", "z"], False)
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]] and m["accuracy"] == pytest.approx(0.8)
    assert m["per_class"]["y"]["precision"] == pytest.approx(2 / 3)


def test_collapsed_class():
    names = ["benign", "malignant", "normal"]
    assert collapsed_class([[5, 0, 0], [7, 0, 0], [2, 0, 0]], names) == "benign"
    assert collapsed_class([[0, 5, 0], [0, 7, 0], [0, 0, 0]], names) == "malignant"
    assert collapsed_class([[5, 0, 0], [6, 1, 0], [2, 0, 0]], names) is None  # two classes predicted
    assert collapsed_class([[0, 0, 0], [0, 9, 0], [0, 0, 0]], names) is None  # only one class present: right
    assert collapsed_class(None, names) is None and collapsed_class([[0, 0], [0, 0]], names[:2]) is None
