"""graphzoo.graph_step: probabilities, certainty and unreached nodes, against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from graphzoo import diffuse, knn_graph
from graphzoo.graph_step import build_graph, certainty, graph_step, scores_to_proba


def two_clusters(rng, n=30):
    Z = np.vstack([rng.normal(0, 0.3, (n, 2)) + [3, 0], rng.normal(0, 0.3, (n, 2)) - [3, 0]])
    y = np.full(2 * n, -1)
    y[[0, 1, n, n + 1]] = [0, 0, 1, 1]
    return Z, y


def test_label_spreading_step_equals_the_dense_solve(rng):
    """P = rownorm((I − αS)⁻¹ Y) with S = D^-½ W D^-½, as a dense solve on a small graph."""
    Z, y = two_clusters(rng)
    W = knn_graph(Z, 6, metric="euclidean", dtype=np.float64)
    alpha = 0.9
    d = np.asarray(W.sum(1)).ravel()
    S = W.toarray() / np.sqrt(np.outer(d, d))
    Y = np.zeros((len(y), 2))
    Y[y >= 0, y[y >= 0]] = 1
    H = np.linalg.solve(np.eye(len(y)) - alpha * S, Y)
    # the energy balances the seeds per class; with equal counts per class this is the plain solve
    step = graph_step(None, y, W=W, energy="label_spreading", energy_params={"alpha": alpha, "tol": 1e-10})
    np.testing.assert_allclose(step.proba, H / H.sum(1, keepdims=True), atol=1e-6)
    assert (step.predictions[:30] == 0).all() and (step.predictions[30:] == 1).all()


def test_certainty_is_one_minus_normalised_entropy():
    p = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(certainty(p), [1.0, 0.0, 1 - math.log(2) / math.log(3)], atol=1e-9)
    q = np.array([[0.5, 1.0]])
    np.testing.assert_allclose(certainty(q, multilabel=True), [[0.0, 1.0]], atol=1e-6)


def test_unreached_nodes_get_the_labelled_class_frequencies_and_zero_certainty(rng):
    Z, y = two_clusters(rng)
    y[[30, 31]] = 0  # three labels of class 0, one of class 1 in the first cluster only
    y[[0, 1]] = [0, 1]
    y[30:] = -1
    y[2] = 0
    W = knn_graph(Z, 5, metric="euclidean")
    assert sp.csgraph.connected_components(W)[0] == 2
    with pytest.warns(UserWarning, match="no labelled node"):
        step = graph_step(None, y, W=W, energy="poisson")
    assert not step.reachable[30:].any() and step.reachable[:30].all()
    np.testing.assert_allclose(step.proba[30:], np.tile([2 / 3, 1 / 3], (30, 1)))
    assert (step.certainty[30:] == 0).all() and (step.certainty[:30] > 0).all()
    assert step.info["n_unreachable"] == 30


def test_multilabel_step_is_one_two_class_diffusion_per_label(rng):
    Z, y = two_clusters(rng)
    Y = np.full((60, 2), -1)
    lab = y >= 0
    Y[lab, 0] = y[lab]
    Y[lab, 1] = 1 - y[lab]
    W = build_graph(Z, 6, "euclidean")
    step = graph_step(None, Y, W=W, multilabel=True, energy="label_spreading")
    for j in range(2):
        ref = scores_to_proba(diffuse(W, Y[:, j], "label_spreading").scores)[:, 1]
        np.testing.assert_allclose(step.proba[:, j], ref, atol=1e-6)
    assert step.certainty.shape == (60, 2)
    assert (step.predictions[:, 0] == (np.arange(60) >= 30)).all()


def test_build_graph_refuses_k_not_below_n(rng):
    with pytest.raises(ValueError, match="n_neighbors=10 must be smaller than the number of nodes .10.*at most 9"):
        build_graph(rng.normal(size=(10, 3)), 10)


def test_certainty_of_a_single_class_is_one():
    assert certainty(np.ones((3, 1))).tolist() == [1.0, 1.0, 1.0]
