"""graphzoo.evidence.nearest_labelled, the one home of a prediction's evidence, against a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest

from graphzoo.evidence import N_EVIDENCE, nearest_labelled


def brute(features, lab, queries, metric, exclude=None):
    """Per query: the rows of ``lab`` by increasing distance (dense, small n only), minus ``exclude[i]``."""
    X, Q = np.asarray(features, float)[lab], np.asarray(queries, float)
    if metric == "cosine":
        X, Q = X / np.linalg.norm(X, axis=1, keepdims=True), Q / np.linalg.norm(Q, axis=1, keepdims=True)
        dist = -Q @ X.T
    else:
        dist = ((Q[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    order = np.asarray(lab)[np.argsort(dist, axis=1, kind="stable")]
    if exclude is None:
        return [row[:N_EVIDENCE] for row in order]
    return [row[row != exclude[i]][:N_EVIDENCE] for i, row in enumerate(order)]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_evidence_of_the_runs_own_images_leaves_each_image_out(metric):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(40, 5)).astype(np.float32)
    lab = np.sort(rng.choice(40, 9, replace=False))
    names = np.array([f"img{i}.png" for i in range(40)])
    got = nearest_labelled(Z, lab, names, metric)
    want = brute(Z, lab, Z, metric, exclude=np.arange(40))
    assert got == ["|".join(names[j] for j in row) for row in want]
    assert all(len(g.split("|")) == N_EVIDENCE for g in got)
    assert all(names[i] not in got[i].split("|") for i in lab)  # a labelled image is not its own evidence
    # Without names the ids are the row indices.
    assert nearest_labelled(Z, lab, None, metric)[0] == "|".join(map(str, want[0]))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_evidence_of_new_images(metric):
    rng = np.random.default_rng(1)
    Z, new = rng.normal(size=(30, 4)), rng.normal(size=(6, 4))
    lab = [3, 7, 11, 20, 29]
    names = [f"f{i}" for i in range(30)]
    got = nearest_labelled(Z, lab, names, metric, queries=new)
    assert got == ["|".join(names[j] for j in row) for row in brute(Z, lab, new, metric)]
    # Fewer labelled images than N_EVIDENCE: all of them, nearest first.
    two = nearest_labelled(Z, [3, 7], names, metric, queries=new)
    assert [g.split("|") for g in two] == [[names[j] for j in row] for row in brute(Z, [3, 7], new, metric)]
