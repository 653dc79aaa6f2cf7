"""graphzoo.data.splits: label budgets, patient-grouped splits, saving and loading a split.

Real data comes from ``$GRAPHZOO_DATA`` (default: the shared data folder beside the repository);
tests that need it skip with the path they looked for.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphzoo.data as gd

pytestmark = pytest.mark.usefixtures("private_cache")


def test_label_budget_fraction_and_per_class():
    y = np.array([0] * 500 + [1] * 50 + [2] * 3 + [-1] * 20)
    mask = gd.label_budget(y, fraction=0.1, seed=3)
    assert [int(mask[y == c].sum()) for c in (0, 1, 2)] == [50, 5, 1]  # round(0.3) -> at least 1
    assert not mask[y == -1].any()
    np.testing.assert_array_equal(mask, gd.label_budget(y, fraction=0.1, seed=3))
    assert not np.array_equal(mask, gd.label_budget(y, fraction=0.1, seed=4))
    pc = gd.label_budget(y, per_class=3, seed=0)
    assert [int(pc[y == c].sum()) for c in (0, 1, 2)] == [3, 3, 3]
    with pytest.raises(ValueError, match="class 2 has only 3 samples"):
        gd.label_budget(y, per_class=4)
    with pytest.raises(ValueError, match="class 3 has no samples"):
        gd.label_budget(y, fraction=0.1, n_classes=4)
    with pytest.raises(ValueError, match="exactly one of"):
        gd.label_budget(y, fraction=0.1, per_class=2)
    with pytest.raises(ValueError, match="exactly one of"):
        gd.label_budget(y)


def test_label_budget_spreads_over_patients():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 25)  # 40 patients x 25 images
    y = rng.integers(0, 2, 1000)
    mask = gd.label_budget(y, per_class=15, groups=groups, seed=1)
    for c in (0, 1):
        chosen = groups[mask & (y == c)]
        assert len(chosen) == 15 and len(set(chosen)) == 15  # 15 different patients per class
    ungrouped = gd.label_budget(y, per_class=15, seed=1)
    assert ungrouped.sum() == 30


def test_label_budget_multi_hot():
    rng = np.random.default_rng(0)
    ml = (rng.random((400, 5)) < np.array([0.5, 0.2, 0.05, 0.01, 0.3])).astype(int)
    ml[0] = [0, 0, 0, 1, 0]  # the rarest column has at least one positive
    mask = gd.label_budget(ml, fraction=0.1, seed=0)
    pos = ml.sum(0)
    for j in range(5):
        assert ml[mask, j].sum() >= max(1, round(0.1 * pos[j])), j
    none = ~ml.any(1)
    assert (mask & none).sum() >= max(1, round(0.1 * none.sum()))
    assert mask.sum() < 0.2 * len(ml)  # not wildly over budget
    np.testing.assert_array_equal(mask, gd.label_budget(ml, fraction=0.1, seed=0))


def test_patient_split_on_malaria(malaria):
    split = gd.patient_split(malaria.labels, malaria.patient_ids, seed=0)
    assert split.dtype.kind == "U" and set(split) == {"train", "val", "test"}
    parts = {s: set(malaria.patient_ids[split == s]) for s in ("train", "val", "test")}
    assert (
        not (parts["train"] & parts["test"])
        and not (parts["train"] & parts["val"])
        and not (parts["val"] & parts["test"])
    )
    frac = {s: float((split == s).mean()) for s in parts}
    assert abs(frac["train"] - 0.7) < 0.08 and abs(frac["val"] - 0.1) < 0.05 and abs(frac["test"] - 0.2) < 0.06
    np.testing.assert_array_equal(split, gd.patient_split(malaria.labels, malaria.patient_ids, seed=0))
    assert not np.array_equal(split, gd.patient_split(malaria.labels, malaria.patient_ids, seed=1))


def test_patient_split_stratifies_and_validates():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(200), 5)
    y = np.repeat(rng.random(200) < 0.3, 5).astype(int)  # 30 % positive patients
    split = gd.patient_split(y, groups, fractions=(0.6, 0.2, 0.2), seed=0)
    for s in ("train", "val", "test"):
        assert abs(y[split == s].mean() - y.mean()) < 0.06, s
    no_val = gd.patient_split(y, groups, fractions=(0.8, 0.0, 0.2))
    assert "val" not in set(no_val)
    with pytest.raises(ValueError, match="summing to 1"):
        gd.patient_split(y, groups, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="one patient id per sample"):
        gd.patient_split(y, groups[:10])
    ml = np.zeros((1000, 3), int)
    ml[rng.random(1000) < 0.1, 1] = 1
    assert set(gd.patient_split(ml, groups)) == {"train", "val", "test"}


def test_save_and_load_split(tmp_path):
    y = np.repeat([0, 1], 50)
    names = np.array([f"img{i}.png" for i in range(100)])
    mask = gd.label_budget(y, fraction=0.1, seed=0)
    split = gd.patient_split(y, None, seed=0)
    written = gd.save_split(
        tmp_path / "run",
        n_samples=100,
        labelled=mask,
        split=split,
        filenames=names,
        fraction=0.1,
        seed=0,
        source="test",
    )
    assert written == tmp_path / "run" / "split.json" and written.stat().st_size < 4000
    back = gd.load_split(tmp_path / "run", filenames=names)
    np.testing.assert_array_equal(back["labelled"], mask)
    np.testing.assert_array_equal(back["split"], split)
    assert back["params"] == {"fraction": 0.1, "seed": 0, "source": "test"}
    with pytest.raises(ValueError, match="different dataset"):
        gd.load_split(written, filenames=names[::-1])
    with pytest.raises(FileNotFoundError, match="no split file"):
        gd.load_split(tmp_path / "elsewhere")


def test_patient_split_of_small_sets():
    """Issue 11 #11: 12 images of 7 patients gave scikit-learn's "n_splits=7 cannot be greater ..."."""
    y = np.array([0] * 6 + [1] * 6)
    groups = np.array([f"P_{i % 7}" for i in range(12)])
    split = gd.patient_split(y, groups, seed=0)
    assert set(split) == {"train", "val", "test"}
    for g in np.unique(groups):
        assert len(set(split[groups == g])) == 1  # still grouped
    with pytest.raises(ValueError, match="too few samples to split into 3 parts: 4 samples, 4 patients"):
        gd.patient_split(np.array([0, 0, 1, 1]), np.arange(4))
    with pytest.raises(ValueError, match="no samples to split"):
        gd.patient_split(np.zeros(0, np.int64), None)
