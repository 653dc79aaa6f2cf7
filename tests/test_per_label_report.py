"""The report's per-label table of a multi-label grid: AUC per label with its test positives, and the warning
that labels with few positives give noisy AUCs."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from graphzoo.report.experiment_sections import _per_class_section  # noqa: E402


def _rec(method, seed, aucs, positives):
    return {"method": method, "label": method.upper(), "kind": "run", "role": "method", "test_prediction": None,
            "label_fraction": 0.2, "seed": seed, "auc": sum(aucs) / len(aucs),
            "per_class": {n: {"auc": a, "positives": p} for n, a, p in zip(("Effusion", "Hernia"), aucs, positives)}}


def test_per_label_auc_with_test_positives():
    records = [_rec("op", 0, (0.70, 0.40), (30, 2)), _rec("op", 1, (0.80, 0.60), (25, 12)),
               _rec("gcn", 0, (0.60, 0.50), (30, 2)), _rec("gcn", 1, (0.60, 0.70), (25, 12))]
    s = _per_class_section(records, 0.2, True, ["Effusion", "Hernia"])
    title, header, rows = s.tables[0]
    assert header == ["label", "test positives (per seed)", "OP", "GCN"]
    # mean ± sample std over the two seeds: Effusion op (0.70, 0.80) -> 0.750 ± 0.071
    assert rows[0] == ["Effusion", "30 / 25", "0.750 ± 0.071", "0.600 ± 0.000"]
    assert rows[1] == ["Hernia", "2 / 12", "0.500 ± 0.141", "0.600 ± 0.141"]
    assert s.paragraphs == ["1 of 2 labels have fewer than 10 positive test images in at least one seed (Hernia): "
                            "their AUC rests on a handful of images and swings from seed to seed."]
