"""diffuse refuses NaN scores and warns about an answer that puts every unlabelled node in one class."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import mask_labels
from sklearn.datasets import make_blobs

from graphzoo import DegenerateSolutionWarning, diffuse, diffuse_per_label, knn_graph


@pytest.fixture(scope="module")
def two_blobs():
    X, y = make_blobs(60, centers=2, cluster_std=0.5, random_state=0)
    return knn_graph(X, 6, metric="euclidean"), mask_labels(y, 2, seed=0), y


def all_first_class(W, y, n_classes):
    """A broken energy: class 0 everywhere except on the labelled nodes."""
    scores = np.zeros((W.shape[0], n_classes))
    scores[:, 0] = 1.0
    scores[y >= 0] = np.eye(n_classes)[y[y >= 0]]
    return scores


def test_all_one_class_answer_warns_naming_the_energy(two_blobs):
    W, y, _ = two_blobs
    with pytest.warns(DegenerateSolutionWarning, match=r"all_first_class put all 56 unlabelled nodes in class 0"):
        diffuse(W, y, all_first_class)


def test_a_sound_answer_does_not_warn(two_blobs):
    W, y, truth = two_blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for energy in ("label_spreading", "poisson", "poisson_mbo"):
            assert (diffuse(W, y, energy).scores.argmax(1) == truth).all()


def test_one_labelled_class_or_few_unlabelled_nodes_is_not_degenerate(two_blobs):
    W, y, _ = two_blobs
    only_zero = np.where(y == 0, 0, -1)
    few = np.where(np.arange(len(y)) < 55, np.r_[np.zeros(30, int), np.ones(30, int)], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unlabelled blob's own warning
        warnings.simplefilter("error", DegenerateSolutionWarning)
        diffuse(W, only_zero, all_first_class, n_classes=1)
        diffuse(W, few, all_first_class)  # 5 unlabelled nodes: one class among them is no evidence


def test_rare_label_all_absent_is_not_flagged_in_multilabel(two_blobs):
    """diffuse_per_label: a finding present on no unlabelled node is a plausible answer, not a degenerate one."""
    W, y, _ = two_blobs
    Y = np.where(y[:, None] >= 0, 0, -1).repeat(2, axis=1)
    labelled = np.flatnonzero(y >= 0)
    Y[labelled[0], 0] = 1  # one positive of label 0 among the labelled
    Y[labelled[:2], 1] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", DegenerateSolutionWarning)
        diffuse_per_label(W, Y, "label_spreading")


def test_nan_scores_raise_naming_the_energy(two_blobs):
    W, y, _ = two_blobs

    def nan_energy(W, y, n_classes):
        scores = np.ones((W.shape[0], n_classes))
        scores[3] = np.nan
        return scores

    with pytest.raises(FloatingPointError, match=r"energy nan_energy returned NaN or inf scores on 1 of 60 nodes"):
        diffuse(W, y, nan_energy)
