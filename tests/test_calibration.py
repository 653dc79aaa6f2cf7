"""graphzoo.calibration on hand-made cases: ECE, temperature scaling, split-conformal coverage, referral."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.special import softmax

from graphzoo.calibration import (apply_temperature, conformal_threshold, expected_calibration_error, fit_temperature,
                                  nll, prediction_sets, refer, reliability, selective_accuracy)


def calibrated_set(n, c=3, seed=0, sharpness=2.0):
    """Probabilities p and labels drawn from p itself: calibrated by construction. Logits too."""
    rng = np.random.default_rng(seed)
    logits = sharpness * rng.normal(size=(n, c))
    P = softmax(logits, axis=1)
    y = (rng.random(n)[:, None] > np.cumsum(P, 1)).sum(1)
    return P, y, logits


def test_ece_by_hand():
    # two bins used: confidence 0.9 (4 images, 3 right) and 0.6 (2 images, both right)
    P = np.array([[0.9, 0.1]] * 4 + [[0.4, 0.6]] * 2)
    y = np.array([0, 0, 0, 1, 1, 1])
    # |0.75 - 0.9| * 4/6 + |1.0 - 0.6| * 2/6
    assert expected_calibration_error(P, y, n_bins=10) == pytest.approx(0.15 * 4 / 6 + 0.4 * 2 / 6)
    r = reliability(P, y, n_bins=10)
    assert r["count"].sum() == 6 and r["count"][8] == 4 and r["count"][5] == 2
    assert np.isnan(r["accuracy"][0]) and r["accuracy"][8] == pytest.approx(0.75)


def test_a_calibrated_set_has_ece_near_zero_and_temperature_near_one():
    P, y, _ = calibrated_set(20000)
    assert expected_calibration_error(P, y) < 0.015
    assert fit_temperature(P, y) == pytest.approx(1.0, abs=0.05)


def test_temperature_fixes_an_overconfident_model_and_keeps_the_argmax():
    P, y, logits = calibrated_set(4000, seed=1)
    over = softmax(3 * logits, axis=1)  # the same ranking, three times too sharp
    T = fit_temperature(over, y)
    assert T == pytest.approx(3.0, rel=0.1)
    fixed = apply_temperature(over, T)
    assert expected_calibration_error(fixed, y) < expected_calibration_error(over, y) / 3
    assert nll(fixed, y) < nll(over, y)
    assert (fixed.argmax(1) == over.argmax(1)).all()
    np.testing.assert_allclose(fixed.sum(1), 1)
    # logits give the same temperature as their softmax (log-softmax differs by a per-row constant)
    assert fit_temperature(3 * logits, y, logits=True) == pytest.approx(T, rel=1e-3)
    under = softmax(logits / 2, axis=1)
    assert fit_temperature(under, y) == pytest.approx(0.5, rel=0.1)


def test_temperature_needs_enough_labels_and_a_positive_value():
    P, y, _ = calibrated_set(9)
    assert fit_temperature(P, y) == 1.0
    with pytest.raises(ValueError, match="temperature must be > 0"):
        apply_temperature(P, 0)
    with pytest.raises(ValueError, match="unlabelled"):
        fit_temperature(P, np.full(9, -1))


def test_conformal_threshold_by_hand():
    P = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    y = np.array([0, 0, 1, 1])  # scores 0.1, 0.3, 0.2, 0.6
    # n = 4, coverage 0.6: rank ceil(5 * 0.6) = 3 -> the 3rd smallest score, 0.3
    assert conformal_threshold(P, y, 0.6) == pytest.approx(0.3)
    # coverage 0.9: rank ceil(4.5) = 5 > n -> every class in every set
    assert conformal_threshold(P, y, 0.9) == 1.0
    sets = prediction_sets(P, 0.3)  # p_k >= 0.7: the last image has no class that plausible
    assert sets.tolist() == [[True, False], [True, False], [False, True], [False, False]]
    assert refer(sets).tolist() == [False, False, False, True]
    sets = prediction_sets(P, 0.6)  # p_k >= 0.4: the last image has two
    assert sets.sum(1).tolist() == [1, 1, 1, 2] and refer(sets).tolist() == [False, False, False, True]
    assert refer(np.zeros((1, 2), bool)).tolist() == [True]  # an empty set is referred too
    with pytest.raises(ValueError, match="coverage"):
        conformal_threshold(P, y, 1.0)


@pytest.mark.parametrize("coverage", [0.9, 0.95])
def test_conformal_coverage_holds_over_many_draws(coverage):
    """Exchangeable calibration and test images: mean coverage >= 1 - α and close to it (≤ 1 - α + 1/(n+1))."""
    n_cal, n_test, draws = 100, 200, 400
    P, y, _ = calibrated_set((n_cal + n_test) * draws, c=4, seed=2, sharpness=1.5)
    P = softmax(2.5 * np.log(P), axis=1)  # miscalibrated on purpose: the guarantee does not need calibration
    covered = []
    for d in range(draws):  # disjoint i.i.d. draws of calibration and test images
        start = d * (n_cal + n_test)
        cal, test = np.arange(start, start + n_cal), np.arange(start + n_cal, start + n_cal + n_test)
        sets = prediction_sets(P[test], conformal_threshold(P[cal], y[cal], coverage))
        covered.append(sets[np.arange(n_test), y[test]].mean())
    mean = float(np.mean(covered))
    se = np.std(covered) / np.sqrt(draws)
    assert coverage - 3 * se <= mean <= coverage + 1 / (n_cal + 1) + 3 * se


def test_selective_accuracy_refers_the_least_confident():
    conf = np.array([0.9, 0.8, 0.7, 0.6, 0.55])
    ok = np.array([1, 1, 1, 0, 0])
    np.testing.assert_allclose(selective_accuracy(conf, ok, [0, 0.2, 0.4, 1.0]), [0.6, 0.75, 1.0, np.nan])


def test_calibration_imports_no_torch():
    code = "import sys, graphzoo.calibration; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def map_objective(P, y, T, sigma):
    """Σ −log softmax(log p / T)[y] + (log T)² / (2σ²) for each T of the array ``T``: what the MAP T minimises."""
    from scipy.special import log_softmax

    T = np.asarray(T, float)[:, None, None]
    lp = log_softmax(np.log(P)[None] / T, axis=2)[:, np.arange(len(y)), y]
    return -lp.sum(1) + np.log(T[:, 0, 0]) ** 2 / (2 * sigma ** 2)


def test_map_temperature_minimises_the_posterior_and_shrinks_towards_one():
    _, y, logits = calibrated_set(30, seed=4)
    over = softmax(3 * logits, axis=1)  # three times too sharp: the ML T is far from 1 on 30 points
    T_ml, T_map = fit_temperature(over, y), fit_temperature(over, y, prior_sigma=0.5)
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 40001))  # brute force over the same range
    best = grid[np.argmin(map_objective(over, y, grid, 0.5))]
    assert T_map == pytest.approx(best, rel=1e-3)
    assert 1.0 < T_map < T_ml  # pulled towards 1, not past it
    assert fit_temperature(over, y, prior_sigma=1e-3) == pytest.approx(1.0, abs=0.01)
    # the prior weighs like a fixed number of points: on many it hardly moves T
    P, y, logits = calibrated_set(20000, seed=5)
    big = softmax(3 * logits, axis=1)
    assert fit_temperature(big, y, prior_sigma=0.5) == pytest.approx(fit_temperature(big, y), rel=0.01)
    with pytest.raises(ValueError, match="prior_sigma must be > 0"):
        fit_temperature(big, y, prior_sigma=0.0)


def test_optimism_p_value_flags_borrowed_scores_that_are_more_confident():
    from graphzoo.calibration import optimism_p_value

    rng = np.random.default_rng(0)
    ref = rng.uniform(0.5, 1.0, 2000)
    same = rng.uniform(0.5, 1.0, 200)
    sharper = np.minimum(rng.uniform(0.5, 1.0, 200) + 0.1, 1.0)
    assert optimism_p_value(same, ref) > 0.05
    assert optimism_p_value(sharper, ref) < 1e-6
    assert optimism_p_value(1.5 - sharper, ref) > 0.99  # less confident: no optimism (one-sided)
    assert np.isnan(optimism_p_value([], ref))
    with pytest.raises(ValueError, match="NaN"):
        optimism_p_value([np.nan, 0.9], ref)
