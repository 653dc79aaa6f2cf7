"""Every registered baseline of the experiment grid, tested from its registry entry alone.

A baseline added with ``register_baseline`` is picked up by the parametrised tests below without
editing them: one that predicts from features and graph runs on an easy synthetic problem (no
training), one that reads a One Pass run reads a tiny real run, one with a run of its own is
planned once per seed. Below them, the algorithms themselves: the GCN on a planted two-community
graph (where the graph, not the features, tells the classes apart) and scikit-learn's label
spreading.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import yaml

from graphzoo.data import PreparedData
from graphzoo.experiments import load_grid, plan_cells
from graphzoo.experiments.baselines import (BASELINES, Baseline, BaselineInputs, default_baselines, gcn_predict,
                                            run_confusion, run_features, sklearn_label_spreading)
from graphzoo.registry import Registry

PREDICTING = [n for n in BASELINES if BASELINES.get(n).predict is not None]
READING = [n for n in BASELINES if BASELINES.get(n).read is not None]
OWN_RUN = [n for n in BASELINES if BASELINES.get(n).own_run is not None]


def blobs(multilabel: bool = False, n: int = 180, seed: int = 0) -> tuple[PreparedData, np.ndarray]:
    """Three well separated Gaussian classes in 8-d (means 4·e_k) and their PreparedData: a random
    60 / 20 / 20 % split, 5 labelled training and 2 labelled validation images per class.
    Multi-label: label j present when the class is j, for j = 0, 1 (class 2 has neither)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, 8))
    X[np.arange(n), y] += 4.0
    split = rng.permutation(np.array(["train"] * (6 * n // 10) + ["val"] * (2 * n // 10) + ["test"] * (2 * n // 10)))
    labelled = np.zeros(n, bool)
    for part, per_class in (("train", 5), ("val", 2)):
        for c in range(3):
            labelled[rng.choice(np.flatnonzero((split == part) & (y == c)), per_class, replace=False)] = True
    targets = np.stack([y == 0, y == 1], 1).astype(int) if multilabel else y
    names = ["zero", "one"] if multilabel else ["zero", "one", "two"]
    data = PreparedData(images=None, targets=targets, split=split, labelled=labelled, names=names,
                        multilabel=multilabel, filenames=None, patient_ids=None, split_source="random")
    return data, X


@pytest.mark.parametrize("name", BASELINES.names())
def test_registry_entry_is_complete(name):
    b = BASELINES.get(name)
    assert b.name == name and b.label.strip()
    assert b.prediction in ("inductive", "transductive")
    assert name in PREDICTING + READING + OWN_RUN
    # a grid without a baselines: list runs every registered one but those that pretrain an encoder
    assert (name in default_baselines()) == (name != "supervised_pretrained")


@pytest.fixture
def one_thread():
    """torch on one thread: on a busy machine small sparse products slow down tenfold with more."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("multilabel", [False, True], ids=["single-label", "multi-label"])
@pytest.mark.parametrize("name", PREDICTING)
def test_predicting_baseline_on_easy_problem(name, multilabel, one_thread):
    data, X = blobs(multilabel)
    inputs = BaselineInputs(data, seed=0, load_features=lambda: X, n_neighbors=10, graph_metric="euclidean")
    P = BASELINES.get(name).predict(inputs)
    n = len(X)
    assert P.shape == ((n, 2) if multilabel else (n, 3)) and np.isfinite(P).all()
    assert P.min() >= 0 and P.max() <= 1
    test = data.split == "test"
    if multilabel:
        acc = ((P[test] > 0.5) == data.targets[test].astype(bool)).mean()
    else:
        assert np.allclose(P.sum(1), 1)
        acc = (P[test].argmax(1) == data.targets[test]).mean()
    assert acc >= 0.9, acc  # chance is 1/3 (single-label), about 2/3 per label decision (multi-label)


@pytest.fixture(scope="module")
def one_pass_run(tiny_one_pass):
    """A finished tiny One Pass run (the kind of run the reading baselines read) and its data."""
    return tiny_one_pass


@pytest.mark.parametrize("name", READING)
def test_reading_baseline_on_a_one_pass_run(name, one_pass_run):
    data, run = one_pass_run.data, one_pass_run.rundir
    inputs = BaselineInputs(data, seed=0, load_features=lambda: run_features(run), run=run)
    rec = BASELINES.get(name).read(inputs)
    assert 0 <= rec["accuracy"] <= 1 and 0 <= rec["balanced_accuracy"] <= 1
    assert set(rec["per_class"]) == set(data.names)
    cm = np.array(rec["confusion"])
    n_test = int((data.split == "test").sum())
    assert cm.shape == (2, 2) and cm.sum() == n_test
    # the confusion matrix (from predictions.csv) and the accuracy (from metrics.json) describe one prediction
    assert np.trace(cm) / n_test == pytest.approx(rec["accuracy"])


def test_run_confusion_reads_the_reported_prediction(one_pass_run):
    run, m = one_pass_run.rundir, one_pass_run.metrics
    cm = np.array(run_confusion(run, one_pass_run.data.names, "pred"))
    assert cm.sum() == m["n_test"] and np.trace(cm) / cm.sum() == pytest.approx(m["accuracy"])


def grid_file(tmp_path, **kw):
    spec = {"name": "g", "out": str(tmp_path / "exp"), "set": {"data": str(tmp_path / "none.npz")},
            "label_fractions": [0.1, 0.3], "seeds": [0, 1], "methods": [{"mode": "one-pass"}], "report": False}
    spec.update(kw)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("name", OWN_RUN)
def test_own_run_baseline_is_planned_once_per_seed(tmp_path, name):
    """... at its own label fraction, or at each of the grid's (``label_fraction: each``)."""
    b = BASELINES.get(name)
    spec = load_grid(grid_file(tmp_path, baselines=[name]))
    cells = [c for c in plan_cells(spec) if c.role == "baseline"]
    each = b.own_run["label_fraction"] == "each"
    fractions = spec.label_fractions if each else [b.own_run["label_fraction"]]
    assert [(c.seed, c.label_fraction) for c in cells] == [(s, f) for s in (0, 1) for f in fractions]
    assert all(c.kind == "run" for c in cells)
    for c in cells:
        assert c.label.startswith(b.label)
        assert all(getattr(c.cfg, k) == v for k, v in b.own_run.items() if k != "label_fraction")


def test_baseline_entry_and_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="exactly one of predict, read, own_run"):
        Baseline("x", "X", "transductive")
    with pytest.raises(ValueError, match="prediction must be one of"):
        Baseline("x", "X", "graph", predict=lambda inputs: None)
    with pytest.raises(ValueError, match="only a baseline with predict takes options"):
        Baseline("x", "X", "inductive", own_run={"label_fraction": 1.0}, options=("k",))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hiden'\] of baseline gcn; it takes hidden"):
        load_grid(grid_file(tmp_path, gcn={"hiden": 8}))
    with pytest.raises(ValueError, match="baseline supervised; it takes none"):
        load_grid(grid_file(tmp_path, supervised={"epochs": 3}))
    with pytest.raises(ValueError, match="must be a mapping of options"):
        load_grid(grid_file(tmp_path, gcn=[64]))
    assert load_grid(grid_file(tmp_path, gcn={"hidden": 8})).baseline_options == {"gcn": {"hidden": 8}}


def test_a_newly_registered_baseline_needs_no_grid_edit(tmp_path, monkeypatch):
    """One entry is enough: the grid file may list it and give its options, and the plan holds its cells."""

    def nearest_labelled(inputs, k=1):
        raise AssertionError("planning runs nothing")

    registry = Registry("baseline")
    for n in BASELINES:
        registry.register(n)(BASELINES.get(n))
    registry.register("nearest")(Baseline("nearest", "Nearest labelled image", "transductive",
                                          predict=nearest_labelled, options=("k",)))
    for module in ("grid", "cells"):
        monkeypatch.setattr(f"graphzoo.experiments.{module}.BASELINES", registry)
    spec = load_grid(grid_file(tmp_path, baselines=["supervised", "nearest"], nearest={"k": 3}))
    assert spec.baseline_options == {"nearest": {"k": 3}}
    cells = [c for c in plan_cells(spec) if c.role == "baseline"]
    assert [c.kind for c in cells] == ["supervised", "nearest"] * 4  # 2 seeds x 2 fractions
    assert all(c.source and c.source.startswith("op-") for c in cells)
    assert cells[1].label == "Nearest labelled image · small_cnn"


# ----------------------------------------------------------------------------------------------
# The baselines' algorithms
# ----------------------------------------------------------------------------------------------
def planted_partition(n=300, p_in=0.06, p_out=0.004, d=8, snr=0.35, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    same = y[:, None] == y[None, :]
    A = np.triu(rng.random((n, n)) < np.where(same, p_in, p_out), 1)  # tiny test graph: dense draw is fine at n=300
    W = sp.csr_matrix((A | A.T).astype(float))
    X = rng.normal(size=(n, d))
    X[:, 0] += snr * (2 * y - 1)  # features alone separate the communities poorly
    return W, X, y


def test_gcn_learns_planted_partition(one_thread):
    from sklearn.linear_model import LogisticRegression

    W, X, y = planted_partition()
    rng = np.random.default_rng(1)
    train = np.concatenate([rng.choice(np.flatnonzero(y == c), 10, replace=False) for c in (0, 1)])
    rest = np.setdiff1d(np.arange(len(y)), train)
    val, test = rest[:40], rest[40:]
    P = gcn_predict(W, X, y, train, val, n_outputs=2, epochs=200, seed=0)
    assert P.shape == (len(y), 2) and np.allclose(P.sum(1), 1)
    acc = (P[test].argmax(1) == y[test]).mean()
    lr_acc = LogisticRegression().fit(X[train], y[train]).score(X[test], y[test])
    assert acc >= 0.9, acc
    assert acc > lr_acc + 0.1, (acc, lr_acc)
    Pm = gcn_predict(W, X, np.stack([y, 1 - y], 1), train, val, multilabel=True, epochs=200, seed=0)
    assert (np.round(Pm[test, 0]) == y[test]).mean() >= 0.9


def test_sklearn_label_spreading_baseline():
    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    X = rng.normal(size=(200, 5)) + 4 * y[:, None]
    lab = np.zeros(200, bool)
    lab[:6] = True
    P = sklearn_label_spreading(X, y, lab, n_neighbors=10, cosine=False)
    assert P.shape == (200, 2) and np.isfinite(P).all()
    assert (P.argmax(1) == y).mean() > 0.95
    Y = np.stack([y, 1 - y, np.zeros(200, int)], 1)
    Pm = sklearn_label_spreading(X, Y, lab, multilabel=True, n_neighbors=10, cosine=False)
    assert (np.round(Pm[:, 0]) == y).mean() > 0.95 and np.all(Pm[:, 2] == 0)
