"""The calibration set of a run (graphzoo.train.evaluate.calibration_set) and the out-of-fold graph scores it
borrows (graphzoo.train.crossval.out_of_fold_proba), on small synthetic graphs where the answer is known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from graphzoo.calibration import OPTIMISM_ALPHA
from graphzoo.energies import label_spreading
from graphzoo.graph_step import build_graph, graph_step
from graphzoo.train import evaluate as ev
from graphzoo.train.crossval import out_of_fold_proba


def blobs(n=120, seed=0, spread=1.0):
    """Two Gaussian blobs in 5-d (classes 0 / 1), features and labels."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    Z = rng.normal(scale=spread, size=(n, 5)) + 2.0 * y[:, None]
    return Z.astype(np.float32), y


def test_out_of_fold_scores_never_use_their_own_label():
    Z, y = blobs()
    W = build_graph(Z, n_neighbors=10)
    idx = np.arange(0, 60)  # the labelled nodes; 60.. are unlabelled in every diffusion
    seen = []

    def spy(W, y_all, n_classes, **kw):  # the labels each diffusion got (small connected graph: no renumbering)
        seen.append(np.array(y_all))
        return label_spreading(W, y_all, n_classes, **kw)

    others = np.arange(60, 120)
    oof = out_of_fold_proba(W, idx, y[idx], None, energy=spy, energy_params={}, n_classes=2, k=4, seed=3,
                            others=others)
    assert len(seen) == 4 and sorted(np.unique(oof.fold)) == [0, 1, 2, 3]
    for f, y_all in enumerate(seen):
        hidden = idx[oof.fold == f]
        assert (y_all[hidden] == -1).all()  # a node scored in fold f never carries its label there
        np.testing.assert_array_equal(y_all[idx[oof.fold != f]], y[idx[oof.fold != f]])
        assert (y_all[60:] == -1).all()
        # and its probabilities are that diffusion's: the graph step with exactly those labels
        direct = graph_step(None, y_all, W=W, energy="label_spreading", n_classes=2).proba
        np.testing.assert_allclose(oof.proba[oof.fold == f], direct[hidden], atol=1e-6)
    assert oof.others.shape == (60, 2) and np.allclose(oof.others.sum(1), 1)
    with pytest.raises(ValueError, match="others must not hold nodes of idx"):
        out_of_fold_proba(W, idx, y[idx], None, energy="label_spreading", energy_params={}, n_classes=2, k=4,
                          seed=3, others=np.array([0, 70]))


def fake_trainer(y, *, lab, unl, val, test, patient_ids=None):
    """The parts of a Trainer that calibration_set reads."""
    data = SimpleNamespace(targets=y, n_outputs=2, patient_ids=patient_ids)
    cfg = SimpleNamespace(energy="label_spreading", energy_params={}, seed=0)
    return SimpleNamespace(data=data, cfg=cfg, idx_lab=lab, idx_unl=unl, idx_val=val, idx_test=test)


def split_of(n, rng):
    order = rng.permutation(n)
    return np.sort(order[:60]), np.sort(order[60:240]), np.sort(order[240:270]), np.sort(order[270:])


def graph_run(Z, y, **parts):
    """The kNN graph of ``Z``, a trainer with the split ``parts`` and the graph step's probabilities from the
    labelled training images ``parts["lab"]``."""
    W = build_graph(Z, n_neighbors=10)
    labels = np.full(len(y), -1)
    labels[parts["lab"]] = y[parts["lab"]]
    return W, fake_trainer(y, **parts), graph_step(None, labels, W=W, n_classes=2).proba


def test_pooled_set_is_validation_then_out_of_fold_and_never_a_test_image():
    Z, y = blobs(n=360, seed=1, spread=1.3)
    lab, unl, val, test = split_of(len(y), np.random.default_rng(0))
    W, t, P = graph_run(Z, y, lab=lab, unl=unl, val=val, test=test)
    P_cal, y_cal, info = ev.calibration_set(t, P, "transductive", W)
    # the labelled training images are a random draw of the training images: the check lets them in
    assert info["check"]["p_value"] >= OPTIMISM_ALPHA and info["n_out_of_fold"] == len(lab)
    oof = out_of_fold_proba(W, lab, y[lab], None, energy="label_spreading", energy_params={}, n_classes=2,
                            k=ev.OOF_FOLDS, seed=0, others=unl)
    np.testing.assert_allclose(P_cal, np.vstack([P[val], oof.proba]))  # validation rows, then out of fold
    np.testing.assert_array_equal(y_cal, np.concatenate([y[val], y[lab]]))
    # no test image: the rows are exactly the validation and labelled training images
    assert len(y_cal) == len(val) + len(lab) and not np.isin(np.r_[val, lab], test).any()
    # a split whose parts overlap is refused rather than calibrated on a test image
    bad = fake_trainer(y, lab=lab, unl=unl, val=np.r_[val, test[:1]], test=test)
    with pytest.raises(RuntimeError, match="test image is among the calibration images"):
        ev.calibration_set(bad, P, "transductive", W)
    # the net's prediction: validation images only
    P_net, y_net, info_net = ev.calibration_set(t, P, "inductive", W)
    np.testing.assert_allclose(P_net, P[val])
    assert info_net["n_out_of_fold"] == 0


def test_memorised_training_images_stay_out_of_the_calibration_set():
    """ψ that learnt its labelled images puts them at their class's centre: their out-of-fold scores are
    more confident than any unlabelled image's, and the check keeps them out."""
    Z, y = blobs(n=360, seed=2, spread=1.3)
    lab, unl, val, test = split_of(len(y), np.random.default_rng(1))
    Z[lab] += (2.0 * y[lab, None] - 1.0) * 1.6  # pushed away from the other class: learnt, still linked
    W, t, P = graph_run(Z, y, lab=lab, unl=unl, val=val, test=test)
    P_cal, y_cal, info = ev.calibration_set(t, P, "transductive", W)
    c = info["check"]
    assert c["p_value"] < OPTIMISM_ALPHA and c["mean_confidence_out_of_fold"] > c["mean_confidence_unlabelled"]
    assert info["n_out_of_fold"] == 0 and "validation images only" in info["text"]
    np.testing.assert_allclose(P_cal, P[val])
    np.testing.assert_array_equal(y_cal, y[val])
