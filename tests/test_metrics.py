"""Run metrics (graphzoo.train.metrics) against values worked out by hand on tiny examples."""

from __future__ import annotations

import numpy as np
import pytest

from graphzoo.train.metrics import classification_metrics, multilabel_metrics

approx = pytest.approx


def test_binary_by_hand():
    y = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.1, 0.6, 0.4, 0.8, 0.9])  # argmax: 0 1 0 1 1
    m = classification_metrics(y, np.c_[1 - p1, p1], ["benign", "malignant"])
    assert m["n"] == 5
    assert m["accuracy"] == approx(3 / 5)
    assert m["balanced_accuracy"] == approx((1 / 2 + 2 / 3) / 2)  # recalls 1/2 and 2/3
    # (negative, positive) pairs ranked right: 0.1 is below all 3 positives, 0.6 below 0.8 and 0.9
    assert m["auc"] == approx(5 / 6)
    benign, malignant = m["per_class"]["benign"], m["per_class"]["malignant"]
    assert (benign["support"], malignant["support"]) == (2, 3)
    assert benign["precision"] == approx(1 / 2) and malignant["precision"] == approx(2 / 3)
    assert benign["recall"] == approx(1 / 2) and malignant["recall"] == approx(2 / 3)
    assert benign["f1"] == approx(1 / 2) and malignant["f1"] == approx(2 / 3)
    assert benign["auc"] == approx(5 / 6) and malignant["auc"] == approx(5 / 6)  # 1 - p1 ranks the same pairs


def test_multiclass_macro_one_vs_rest_by_hand():
    y = np.array([0, 1, 2, 2])
    proba = np.array(
        [
            [0.5, 0.2, 0.3],  # -> 0, right
            [0.1, 0.45, 0.45],  # a tie goes to the first class: -> 1, right
            [0.6, 0.0, 0.4],  # -> 0, wrong
            [0.1, 0.2, 0.7],  # -> 2, right
        ]
    )
    m = classification_metrics(y, proba, ["a", "b", "c"])
    assert m["accuracy"] == approx(3 / 4)
    assert m["balanced_accuracy"] == approx((1 + 1 + 1 / 2) / 3)
    per = m["per_class"]
    # one vs rest: a's positive 0.5 beats 0.1 and 0.1 but not 0.6; b's 0.45 beats all;
    # c's positives 0.4 and 0.7 beat 0.3, and only 0.7 beats 0.45
    assert [per[k]["auc"] for k in "abc"] == approx([2 / 3, 1.0, 3 / 4])
    assert m["auc"] == approx((2 / 3 + 1 + 3 / 4) / 3)
    assert [per[k]["support"] for k in "abc"] == [1, 1, 2]
    assert [per[k]["precision"] for k in "abc"] == approx([1 / 2, 1.0, 1.0])


# sklearn's balanced accuracy warns when a class is predicted but never true (class 1 here)
def test_single_class_targets_have_no_auc():
    y = np.zeros(4, dtype=int)
    p1 = np.array([0.2, 0.7, 0.1, 0.4])
    m = classification_metrics(y, np.c_[1 - p1, p1], ["neg", "pos"])
    assert m["auc"] is None
    assert m["per_class"]["neg"]["auc"] is None and m["per_class"]["pos"]["auc"] is None
    assert m["accuracy"] == approx(3 / 4) and m["per_class"]["pos"]["support"] == 0


def test_multiclass_mean_leaves_out_a_class_absent_from_the_targets():
    y = np.array([0, 1, 0, 1])
    proba = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.4, 0.3], [0.5, 0.3, 0.2]])
    m = classification_metrics(y, proba, ["a", "b", "c"])
    per = m["per_class"]
    assert per["c"]["auc"] is None and per["c"]["support"] == 0
    # a: positives 0.6, 0.3 vs negatives 0.2, 0.5 -> 3 of 4 pairs; b: 0.7, 0.3 vs 0.3, 0.4 -> 2.5 of 4 (a tie is 1/2)
    assert per["a"]["auc"] == approx(3 / 4) and per["b"]["auc"] == approx(2.5 / 4)
    assert m["auc"] == approx((3 / 4 + 2.5 / 4) / 2)


def test_multilabel_by_hand():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0]])
    proba = np.array([[0.9, 0.1, 0.2], [0.2, 0.7, 0.6], [0.4, 0.8, 0.1], [0.6, 0.3, 0.1]])
    m = multilabel_metrics(y, proba, ["a", "b", "c"])
    per = m["per_class"]
    # a: positives 0.9, 0.4 vs negatives 0.2, 0.6 -> 3 of 4 pairs; b: all 3 positives above 0.1
    assert per["a"]["auc"] == approx(3 / 4) and per["b"]["auc"] == approx(1.0)
    assert per["c"]["auc"] is None and per["c"]["sensitivity"] is None  # never present
    assert m["auc"] == approx((3 / 4 + 1.0) / 2)  # the mean of the per-label AUCs that exist
    # at 0.5: a -> 1 0 0 1 (sens 1/2, spec 1/2), b -> 0 1 1 0 (sens 2/3, spec 1), c -> 0 1 0 0 (spec 3/4)
    assert (per["a"]["sensitivity"], per["a"]["specificity"]) == approx((1 / 2, 1 / 2))
    assert (per["b"]["sensitivity"], per["b"]["specificity"]) == approx((2 / 3, 1.0))
    assert per["c"]["specificity"] == approx(3 / 4)
    assert [per[k]["positives"] for k in "abc"] == [2, 3, 0]
    assert m["accuracy"] == approx(8 / 12)  # right decisions: 2 + 3 + 3 of 12
    assert m["balanced_accuracy"] == approx(((1 / 2 + 1 / 2) / 2 + (2 / 3 + 1) / 2) / 2)  # c has no sensitivity
    lower = multilabel_metrics(y, proba, ["a", "b", "c"], threshold=0.35)
    assert lower["per_class"]["a"]["sensitivity"] == approx(1.0)  # 0.4 now counts as present
    assert lower["auc"] == approx(m["auc"])  # AUC does not depend on the threshold


def test_empty_input():
    assert classification_metrics(np.array([], dtype=int), np.zeros((0, 2)), ["a", "b"]) == {"n": 0}
    assert multilabel_metrics(np.zeros((0, 3), dtype=int), np.zeros((0, 3)), ["a", "b", "c"]) == {"n": 0}
