"""Poisson-MBO: the volume constraint, a dense re-computation of one MBO step, clamped labels, determinism,
and graphlearning's poisson_mbo on the same graph (when installed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import mask_labels
from sklearn.datasets import make_blobs, make_moons

from graphzoo import ENERGIES, diffuse, knn_graph
from graphzoo.energies import one_hot, poisson, poisson_mbo, volume_weights
from graphzoo.energies._base import check_energy_params


@pytest.fixture(scope="module")
def blobs():
    """100 nodes in 3 overlapping blobs, 2 labels per class, float64 graph."""
    X, y = make_blobs(100, centers=3, cluster_std=3.0, random_state=1)
    W = knn_graph(X, 8, metric="euclidean", dtype=np.float64)
    return W, mask_labels(y, 2, seed=0), y


def test_registered_and_in_the_parametrised_energy_tests():
    assert ENERGIES.get("poisson_mbo") is poisson_mbo
    check_energy_params("poisson_mbo", {"n_outer": 5, "mu": 2.0})
    with pytest.raises(ValueError, match="n_outer"):
        check_energy_params("poisson_mbo", {"n_outer": 0})


@pytest.mark.parametrize("priors", [[0.5, 0.3, 0.2], [0.6, 0.2, 0.2]])
def test_class_sizes_follow_the_priors(blobs, priors):
    """The constraint binds: even priors unlike the truth (blobs of 34/33/33) give those class sizes."""
    W, y, _ = blobs
    res = diffuse(W, y, "poisson_mbo", class_priors=np.array(priors))
    sizes = np.bincount(res.scores.argmax(1), minlength=3)
    np.testing.assert_array_equal(sizes, np.round(np.array(priors) * 100).astype(int))
    assert res.info["volume_error"] <= 1e-3
    np.testing.assert_allclose(res.info["class_fractions"], priors)


def test_labelled_nodes_keep_their_labels_under_a_hostile_prior(blobs):
    W, y, _ = blobs
    res = diffuse(W, y, "poisson_mbo", class_priors=np.array([0.9, 0.05, 0.05]))
    lab = y >= 0
    assert (res.scores[lab].argmax(1) == y[lab]).all()


def test_result_shape_validity_and_determinism(blobs):
    W, y, truth = blobs
    a = diffuse(W, y, "poisson_mbo")
    b = diffuse(W, y, "poisson_mbo")
    assert a.scores.shape == (100, 3) and np.isfinite(a.scores).all() and (a.scores >= 0).all()
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.info["stop_reason"] in ("fixed_point", "n_outer") and a.n_iter == len(a.info["changed"])
    assert (a.scores.argmax(1) == truth).mean() > 0.8


def test_one_mbo_step_matches_a_dense_computation(blobs):
    """n_outer = 1 by hand: Poisson argmax → n_inner explicit heat steps with the source → volume weights."""
    W, y, _ = blobs
    res = poisson_mbo(W, y, 3, n_outer=1, n_inner=7, mu=2.0)
    A = W.toarray()
    d = A.sum(1)
    dt = 1 / d.max()
    lab = y >= 0
    b = np.zeros((100, 3))
    b[lab] = one_hot(y, 3)[lab] - one_hot(y, 3)[lab].mean(0)
    U = one_hot(np.where(lab, y, poisson(W, y, 3).scores.argmax(1)), 3)
    for _ in range(7):
        U = U - dt * (np.diag(d) @ U - A @ U) + 2.0 * dt * b
    S = (U - U.min()) / (U.max() - U.min())
    w, _ = volume_weights(S, np.bincount(y[lab]) / lab.sum())
    expected = S * w
    top = expected[lab].argmax(1)
    assert (top == y[lab]).all()  # no clamping swap needed here, so the scores must agree exactly
    np.testing.assert_allclose(res.scores, expected, rtol=1e-10, atol=1e-12)


def test_volume_weights_reach_the_priors_on_a_brute_force_check(rng):
    S = rng.random((400, 4))
    priors = np.array([0.1, 0.2, 0.3, 0.4])
    w, error = volume_weights(S, priors)
    frac = np.bincount((S * w).argmax(1), minlength=4) / 400
    assert error <= 1e-3 and np.abs(frac - priors).max() == pytest.approx(error)
    assert (w > 0).all() and w[0] == 1


def test_bad_priors(blobs):
    W, y, _ = blobs
    with pytest.raises(ValueError, match="class_priors"):
        poisson_mbo(W, y, 3, class_priors=np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="class_priors"):
        poisson_mbo(W, y, 3, class_priors="true")


def test_matches_graphlearning_on_the_same_graph():
    """gl.ssl.poisson_mbo on our W with the same priors: the same partition up to a few nodes."""
    gl = pytest.importorskip("graphlearning")
    X, truth = make_moons(300, noise=0.12, random_state=2)
    W = knn_graph(X, 10, metric="euclidean", dtype=np.float64)
    y = mask_labels(truth, 2, seed=1)
    lab = np.flatnonzero(y >= 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # graphlearning's own deprecation noise
        # _fit is the algorithm; fit_predict adds one more volume projection of its one-hot output,
        # which cannot move a node and only costs time (up to 10,000 argmax sweeps).
        model = gl.ssl.poisson_mbo(W, np.array([0.5, 0.5]))
        model.fitted = True  # _fit's projections call predict(), which refuses a model not marked fitted
        theirs = model._fit(lab, y[lab]).argmax(1)
    ours = diffuse(W, y, "poisson_mbo").scores.argmax(1)
    assert (ours == theirs).mean() >= 0.98
    unl = y < 0
    assert abs((ours[unl] == truth[unl]).mean() - (theirs[unl] == truth[unl]).mean()) <= 0.02


@pytest.mark.parametrize("c", [2, 5])
def test_volume_weights_skip_only_rows_that_cannot_change(rng, c):
    """The contested-rows shortcut gives the weights of the plain loop (argmax of every row each step)."""
    S = rng.random((3000, c)) ** 3
    priors = rng.dirichlet(np.ones(c) * 5)
    w = np.ones(c)
    for _ in range(10_000):
        gap = np.bincount((S * w).argmax(1), minlength=c) / 3000 - priors
        if np.abs(gap).max() <= 1e-3:
            break
        w = np.maximum(w - 0.1 * gap, 1e-6)
        w /= w[0]
    fast, error = volume_weights(S, priors)
    np.testing.assert_allclose(fast, w, rtol=1e-12)
    assert error == pytest.approx(np.abs(gap).max())
