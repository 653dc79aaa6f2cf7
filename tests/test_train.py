"""graphzoo.train: One Pass and Dynamic Pass on tiny synthetic image sets: outputs, determinism, resume,
failures, safe checkpoints."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from graphzoo.config import RunConfig  # noqa: E402
from graphzoo.data.types import ImageSet  # noqa: E402
from graphzoo.train import Trainer, run_training  # noqa: E402


def run_experiment(cfg, **kw):
    """(metrics, run folder path) of one run."""
    result = run_training(cfg, **kw)
    return result.metrics, result.rundir.path


def blobs(n=240, size=20, seed=0, multilabel=False) -> ImageSet:
    """Gray images whose class is where a bright square sits (left / right half), plus noise.

    Multi-label: three labels, each "a bright square in quadrant j" (any subset may be present).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(40, 12, (n, size, size))
    h = size // 2
    if multilabel:
        Y = (rng.random((n, 3)) < 0.4).astype(np.int64)
        Y[Y.sum(1) == 0, 0] = 1
        corners = [(0, 0), (0, h), (h, 0)]
        for j, (r, c) in enumerate(corners):
            x[Y[:, j] == 1, r + 2 : r + h - 2, c + 2 : c + h - 2] += 150
        labels = Y[:, 0].copy()
    else:
        labels = np.arange(n) % 2
        x[labels == 0, 4:-4, 2 : h - 1] += 150
        x[labels == 1, 4:-4, h + 1 : -2] += 150
        Y = None
    images = np.clip(x, 0, 255).astype(np.uint8)
    pids = np.array([f"p{i % 30}" for i in range(n)])
    return ImageSet(images, labels, ["left", "right"], None, pids, np.array([f"img{i}.png" for i in range(n)]),
                    multilabels=Y, multilabel_names=None if Y is None else ["a", "b", "c"])


def cfg_for(tmp_path, **kw) -> RunConfig:
    base = dict(data="synthetic", out=str(tmp_path), name="run", threads=1, progress=False, epochs=2, warmup_epochs=2,
                min_epoch_steps=4, batch_size=32, labelled_per_batch=8, n_neighbors=10, label_fraction=0.2,
                val_labels="all", hflip=False)  # blobs' class is the bright side: a left-right flip swaps it
    base.update(kw)
    return RunConfig(**base)


def strip_times(m):
    """Drop wall-clock entries (keys ending in _s), recursively: everything else must match."""
    if isinstance(m, dict):
        return {k: strip_times(v) for k, v in m.items() if not k.endswith("_s")}
    return m


def read_csv(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_one_pass_writes_run_folder(tmp_path):
    metrics, run = run_experiment(cfg_for(tmp_path, epochs=3), imageset=blobs())
    for f in ("config.yaml", "metrics.json", "history.csv", "predictions.csv", "split.json", "split.csv",
              "features.npy",
              "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / f).exists(), f
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test_prediction"] == "transductive"  # One Pass predicts with the energy
    assert set(saved["per_class"]) == {"left", "right"}
    assert saved["accuracy"] > 0.8 and saved["auc"] > 0.8
    assert 0 <= saved["balanced_accuracy"] <= 1
    hist = read_csv(run / "history.csv")
    assert [r["phase"] for r in hist] == ["supervised"] * 3 and hist[-1]["stop_reason"] == "max_epochs"
    preds = read_csv(run / "predictions.csv")
    assert len(preds) == 240 and {"true", "pred", "prob_left"} <= set(preds[0])
    # the split keeps patients on one side and labels only inside the budget
    split = read_csv(run / "split.csv")
    sides = {}
    for r in split:
        sides.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in sides.values())
    import yaml

    assert yaml.safe_load((run / "config.yaml").read_text()) == cfg_for(tmp_path, epochs=3).to_dict()


def test_dynamic_pass_history_and_determinism(tmp_path):
    cfg = cfg_for(tmp_path, mode="dynamic", epochs=2, rampup_epochs=2)
    m1, run1 = run_experiment(cfg, imageset=blobs())
    hist = read_csv(run1 / "history.csv")
    dyn = [r for r in hist if r["phase"] == "dynamic"]
    assert len(dyn) == 2
    for key in ("pseudo_accuracy", "coverage", "mean_certainty", "energy_n_iter", "loss_labelled", "loss_unlabelled",
                "alpha", "val_accuracy"):
        assert dyn[0][key] != "", key
    assert 0 < float(dyn[0]["alpha"]) < float(dyn[1]["alpha"]) == 1.0  # ramp-up
    assert float(dyn[-1]["pseudo_accuracy"]) > 0.7
    assert dyn[-1]["stop_reason"] == "max_epochs"
    assert m1["test_prediction"] == "inductive" and m1["accuracy"] > 0.8  # the net itself learns the task
    # same seed and config -> identical numbers
    m2, run2 = run_experiment(cfg_for(tmp_path / "again", mode="dynamic", epochs=2, rampup_epochs=2), imageset=blobs())
    assert strip_times(m1) == strip_times(m2)
    assert (run1 / "predictions.csv").read_text() == (run2 / "predictions.csv").read_text()


def test_kill_and_resume_is_exact(tmp_path):
    data = blobs(seed=1)
    full, run_full = run_experiment(cfg_for(tmp_path / "full", mode="dynamic"), imageset=data)
    cfg = cfg_for(tmp_path / "killed", mode="dynamic")
    # "killed" in the first dynamic epoch's wake
    partial = run_training(cfg, imageset=data, stop_after_epochs=3).metrics
    assert partial == {"interrupted_after_epoch": 3}
    resumed = run_training(cfg, resume=True, imageset=data).metrics
    assert strip_times(resumed) == strip_times(full)
    run_killed = tmp_path / "killed" / "run"
    assert (run_killed / "predictions.csv").read_text() == (run_full / "predictions.csv").read_text()
    timing = ("time_s", "pseudo_s", "graph_s", "energy_s")
    drop_time = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert drop_time(read_csv(run_killed / "history.csv")) == drop_time(read_csv(run_full / "history.csv"))


def test_resume_refuses_changed_config(tmp_path):
    data = blobs(n=120)
    run_training(cfg_for(tmp_path, epochs=1), imageset=data)
    with pytest.raises(ValueError, match=r"differs .* lr: 0.001 -> 0.01"):
        Trainer(cfg_for(tmp_path, epochs=1, lr=0.01), resume=True, imageset=data)
    with pytest.raises(ValueError, match="already holds a run.*--overwrite"):
        Trainer(cfg_for(tmp_path, epochs=1), imageset=data)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    original = Trainer.loss

    def poisoned(self, logits, target):
        out = original(self, logits, target)
        return out * float("nan") if self.state["epoch"] >= 1 else out

    monkeypatch.setattr(Trainer, "loss", poisoned)
    with pytest.raises(FloatingPointError, match="last good checkpoint .*epoch 1"):
        run_training(cfg_for(tmp_path, epochs=3), imageset=blobs(n=120))
    ck = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ck["state"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_multilabel_one_pass_reports_per_label_auc(tmp_path):
    metrics, run = run_experiment(cfg_for(tmp_path, task="multilabel", monitor="val_auc", epochs=3, label_fraction=0.3),
                                  imageset=blobs(multilabel=True))
    assert set(metrics["per_class"]) == {"a", "b", "c"}
    aucs = [v["auc"] for v in metrics["per_class"].values()]
    assert metrics["auc"] == pytest.approx(np.mean(aucs))
    assert metrics["auc"] > 0.7


def test_multilabel_dynamic_and_autoencoder(tmp_path):
    cfg = cfg_for(tmp_path, task="multilabel", mode="dynamic", monitor="val_auc", epochs=1, warmup_epochs=1,
                  backbone="autoencoder", ae_pretrain_epochs=1)
    m, run = run_experiment(cfg, imageset=blobs(n=120, multilabel=True))
    phases = [r["phase"] for r in read_csv(run / "history.csv")]
    assert phases == ["ae", "supervised", "dynamic"]
    assert np.isfinite(m["auc"])


@pytest.mark.parametrize(
    "override, message",
    [
        ({"mode": "two-pass"}, "mode='two-pass' is not one of"),
        ({"label_fraction": 1.5}, "label_fraction must lie in"),
        ({"energy": "poison"}, "Did you mean 'poisson'"),
        ({"backbone": "resnt50"}, "Did you mean 'resnet50'"),
        ({"split_fractions": [0.5, 0.5]}, "split_fractions"),
        ({"labelled_per_batch": 64, "mode": "dynamic"}, "labelled_per_batch"),
        ({"data": ""}, "no data"),
    ],
)
def test_invalid_config_rejected_before_training(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        Trainer(cfg_for(tmp_path, **override), imageset=blobs(n=40))
    assert not (tmp_path / "run").exists()


def test_set_overrides_are_type_checked(tmp_path):
    from graphzoo.config import apply_overrides

    cfg = apply_overrides(RunConfig(), {"epochs": "5", "lr": "1e-4", "augment": "false",
                                        "energy_params": "{alpha: 0.9}"})
    assert (cfg.epochs, cfg.lr, cfg.augment, cfg.energy_params) == (5, 1e-4, False, {"alpha": 0.9})
    for bad in ({"epochs": "2.5"}, {"augment": "maybe"}, {"lr": "fast"}, {"epochz": "3"}):
        with pytest.raises(ValueError):
            apply_overrides(RunConfig(), bad)


def test_tta_run_saves_averaged_features_and_predict_uses_them(tmp_path):
    """tta: the final ψ and net probabilities average the 8 symmetries; features.npy, the baselines'
    run_features and graphzoo predict all see the same averaged network."""
    from graphzoo.experiments.baselines import run_features
    from graphzoo.predict import load_model

    images = blobs(n=120)
    cfg = cfg_for(tmp_path, epochs=1, rot90=True, tta=True)
    metrics, run = run_experiment(cfg, imageset=images)
    Z = np.load(run / "features.npy")
    model, meta, norm = load_model(run, "best")
    assert len(meta["tta_views"]) == 8
    x = torch.from_numpy(images.images[:, None])
    with torch.no_grad():
        plain = model.features(norm(x)).numpy()
        lg, z8 = model.infer(norm(x), [tuple(v) for v in meta["tta_views"]])
    np.testing.assert_allclose(Z, z8.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(Z, plain, atol=1e-3)
    (run / "features.npy").unlink()
    np.testing.assert_allclose(run_features(run, x, cache=False), Z, rtol=1e-4, atol=1e-5)
    proba = torch.softmax(lg.double(), 1).numpy()
    sup = json.loads((run / "metrics.json").read_text())["test_inductive"]["accuracy"]
    test = np.array([r["split"] == "test" for r in read_csv(run / "predictions.csv")])
    assert sup == pytest.approx((proba[test].argmax(1) == images.labels[test]).mean())
    # graphzoo predict on image files: the same averaged probabilities
    from PIL import Image

    from graphzoo.predict import predict_files

    files = []
    for i in range(3):
        files.append(tmp_path / f"cell{i}.png")
        Image.fromarray(images.images[i]).save(files[-1])
    p_files, _ = predict_files(run, files)
    np.testing.assert_allclose(p_files, proba[:3], rtol=1e-4, atol=1e-5)


def test_tta_views_dihedral_averages_all_8_symmetries_whatever_training_drew(tmp_path):
    """tta_views="dihedral": the 8 symmetries of the square although training flips only up-down
    (cfg_for turns hflip off, rot90 is off); "augment", the default, keeps training's own views."""
    from graphzoo.data.torchdata import tta_views
    from graphzoo.predict import load_model

    images = blobs(n=120)
    _, run = run_experiment(cfg_for(tmp_path, epochs=1, tta=True, tta_views="dihedral"), imageset=images)
    model, meta, norm = load_model(run, "best")
    assert meta["tta_views"] == tta_views(True, True, True)
    with torch.no_grad():
        _, z8 = model.infer(norm(torch.from_numpy(images.images[:, None])), meta["tta_views"])
    np.testing.assert_allclose(np.load(run / "features.npy"), z8.numpy(), rtol=1e-4, atol=1e-5)
    _, run = run_experiment(cfg_for(tmp_path, name="augment", epochs=1, tta=True), imageset=images)
    assert load_model(run, "best")[1]["tta_views"] == tta_views(False, True, False) == [(0, False), (2, True)]
    with pytest.raises(ValueError, match="tta_views='dihedral'.*off: add tta=true"):
        RunConfig(data="x", tta=False, tta_views="dihedral").validate()
    with pytest.raises(ValueError, match="tta_views='d4' is not one of"):
        RunConfig(data="x", tta=True, tta_views="d4").validate()


def test_config_diff_reads_a_missing_key_as_its_default():
    """A config saved before a key existed ran with that key's default: not a change, unless the
    new value differs from the default (then --resume and the grid still refuse)."""
    from graphzoo.config import config_diff

    new = RunConfig(data="x").to_dict()
    old = {k: v for k, v in new.items() if k != "tta_views"}
    assert config_diff(old, new) == []
    assert config_diff(old, {**new, "tta_views": "dihedral"}) == ["tta_views: 'augment' -> 'dihedral'"]
    assert config_diff(new, {**new, "lr": 0.01}) == ["lr: 0.001 -> 0.01"]


def test_one_class_dataset_is_refused_before_training(tmp_path):
    data = blobs(n=60)
    data.labels[:] = 0
    with pytest.raises(ValueError, match="only the class 'left'.*at least two classes"):
        run_training(cfg_for(tmp_path), imageset=data)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_n_neighbors_not_below_the_graph_size_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match=r"n_neighbors=500 but the data has only 40 images.*at most 39"):
        run_training(cfg_for(tmp_path, n_neighbors=500), imageset=blobs(n=40))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_resume_refuses_changed_data(tmp_path):
    data = blobs(n=120)
    cfg = cfg_for(tmp_path, mode="dynamic", epochs=2)
    run_training(cfg, imageset=data, stop_after_epochs=1)
    changed = blobs(n=120)
    changed.images[5] = 255 - changed.images[5]
    with pytest.raises(ValueError, match=r"data changed .*the images or labels.*--overwrite"):
        run_training(cfg, resume=True, imageset=changed)
    fewer = blobs(n=100)
    with pytest.raises(ValueError, match=r"the number of images \(120 -> 100\)"):
        run_training(cfg, resume=True, imageset=fewer)
    assert run_training(cfg, resume=True, imageset=data).metrics["epochs"] == 4  # the same data still resumes


def test_crafted_checkpoint_is_refused_on_resume_and_predict(tmp_path):
    """A best.pt / last.pt whose pickle would run a command is refused; the command never runs."""
    import os

    from graphzoo.predict import load_model
    from graphzoo.train.checkpoints import UnsafeCheckpointError

    cfg = cfg_for(tmp_path, epochs=1)
    data = blobs(n=60)
    run = run_training(cfg, imageset=data).rundir
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    for which in ("best", "last"):
        ck = torch.load(run.checkpoint(which), weights_only=True)
        ck["meta"] = Payload()
        torch.save(ck, run.checkpoint(which))
    with pytest.raises(UnsafeCheckpointError, match="refused to load .*best.pt"):
        load_model(run.path, "best")
    run.metrics.unlink()
    with pytest.raises(UnsafeCheckpointError, match="refused to load .*last.pt"):
        run_training(cfg, resume=True, imageset=data)
    assert not marker.exists()


def test_legacy_checkpoint_with_numpy_state_still_resumes(tmp_path):
    """Checkpoints written before the safe format held numpy arrays and a phase index: they load."""
    import random as pyrandom

    data = blobs(n=120)
    cfg = cfg_for(tmp_path, mode="dynamic", epochs=1, warmup_epochs=1)
    run = run_training(cfg, imageset=data, stop_after_epochs=1).rundir
    ck = torch.load(run.checkpoint("last"), weights_only=True)
    st = ck["state"]
    st["phase"] = len(st.pop("finished_phases"))  # the old layout: position in the mode's phase list
    st["best"] = tuple(np.float64(v) for v in st["best"])
    ck["rng"]["numpy"] = np.random.get_state()
    ck["rng"]["python"] = pyrandom.getstate()
    torch.save(ck, run.checkpoint("last"))
    m = run_training(cfg, resume=True, imageset=data).metrics
    assert m["epochs"] == 2 and [r for r in m["stop_reasons"]] == ["supervised", "dynamic"]


def test_collapsed_net_is_reported(tmp_path):
    from graphzoo.train.evaluate import collapsed_classes

    assert collapsed_classes(np.zeros(5, int), np.array([0, 1, 0, 1, 1])) == 0
    assert collapsed_classes(np.array([0, 1, 0]), np.array([0, 1, 1])) is None
    assert collapsed_classes(np.zeros(3, int), np.zeros(3, int)) is None  # one true class: nothing to collapse
    m, _ = run_experiment(cfg_for(tmp_path, epochs=1), imageset=blobs(n=120))
    assert set(m["collapsed"]) == {"inductive", "transductive"}


def test_precise_bn_sets_exact_statistics_of_the_training_images(tmp_path):
    """precise_bn: each BatchNorm's running mean / variance are the exact statistics of its input over
    the training images (here all of them), so eval-mode outputs match the weights."""
    cfg = cfg_for(tmp_path, epochs=1, precise_bn=10_000)
    trainer = Trainer(cfg, imageset=blobs(n=120))
    trainer.setup()
    bn = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    seen = []
    hook = bn.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach()))
    trainer.recalibrate_batchnorm(batch_size=1000)  # one batch: the cumulative average is the plain one
    hook.remove()
    x = torch.cat(seen)
    assert len(x) == len(trainer.idx_train)
    torch.testing.assert_close(bn.running_mean, x.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, x.transpose(0, 1).flatten(1).var(1), rtol=1e-3, atol=1e-5)
    assert bn.momentum == 0.1 and trainer.model.training


def partially_labelled(n=240, share=0.7, seed=0) -> ImageSet:
    """blobs() with ``share`` of the labels removed (-1), as a hospital's folder would be."""
    ds = blobs(n, seed=seed)
    gone = np.random.default_rng(seed + 1).random(n) < share
    ds.labels = np.where(gone, -1, ds.labels)
    return ds


def test_partially_labelled_dynamic_pass_predicts_every_image(tmp_path, monkeypatch):
    ds = partially_labelled()
    unl = ds.labels < 0
    real_loss = Trainer.loss

    def checked(self, logits, target):
        assert (target >= 0).all(), "an image without a label reached a loss"
        return real_loss(self, logits, target)

    monkeypatch.setattr(Trainer, "loss", checked)
    metrics, run = run_experiment(cfg_for(tmp_path, mode="dynamic", label_fraction=1.0), imageset=ds)
    assert metrics["n_unlabelled_source"] == unl.sum() and metrics["labels"]["n_labels_source"] == (~unl).sum()
    rows = read_csv(run / "predictions.csv")
    assert len(rows) == len(ds) and all(r["pred"] in ("left", "right") for r in rows)
    assert [r["true"] == "" for r in rows] == unl.tolist()
    assert all(r["split"] in ("train", "excluded") and r["labelled"] == "0" for r, u in zip(rows, unl) if u)
    # the diagnostics are over images with a truth: the few labelled-but-hidden ones (budget 1: none)
    assert metrics["unlabelled_train_transductive"] == {}
    history = read_csv(run / "history.csv")
    assert all(r["pseudo_accuracy"] == "" for r in history if r["phase"] == "dynamic")
    # the test part holds labelled images only; two epochs train the graph's features, not yet the head
    assert metrics["n_test"] > 0 and metrics["test_transductive"]["accuracy"] > 0.8


def test_no_holdout_estimates_quality_by_cross_validation(tmp_path):
    metrics, run = run_experiment(cfg_for(tmp_path, holdout=False, label_fraction=1.0, val_labels="budget"),
                                  imageset=partially_labelled(share=0.5))
    assert metrics["n_test"] == 0 and metrics["accuracy"] is None
    assert metrics["quality_estimate"] == "5-fold cross-validation of the graph step on the labels"
    cv = metrics["cross_validation"]
    assert cv["n"] == metrics["n_labelled_train"] + metrics["n_val_labelled"] and len(cv["fold_accuracy"]) == 5
    assert cv["accuracy"] > 0.8  # blobs are easy; labels shuffled at random would score about 0.5


def test_graph_step_cv_scores_label_consistency():
    from types import SimpleNamespace

    from graphzoo.train.crossval import graph_step_cv

    rng = np.random.default_rng(0)
    y = np.arange(200) % 2
    Z = rng.normal(0, 1, (200, 5)) + 4 * y[:, None]
    data = SimpleNamespace(labelled=np.arange(200) < 120, targets=y, n_outputs=2, names=["a", "b"], patient_ids=None,
                           split=np.full(200, "train"))
    kw = dict(energy="label_spreading", energy_params={}, n_neighbors=10, metric="euclidean", seed=0)
    good = graph_step_cv(Z, data, **kw)
    shuffled = graph_step_cv(Z, SimpleNamespace(**{**vars(data), "targets": rng.permutation(y)}), **kw)
    assert good["accuracy"] > 0.95 and shuffled["accuracy"] < 0.7 and good["folds"] == 5


def test_graph_step_cv_flags_labels_the_features_have_learnt():
    """Labelled images that ψ has pulled onto their class centre (as a net trained on them does) are scored more
    confidently than the unlabelled ones: the estimate is flagged. A random draw of the same images is not."""
    from types import SimpleNamespace

    from graphzoo.train.crossval import graph_step_cv

    rng = np.random.default_rng(1)
    n = 600
    y = np.arange(n) % 2
    labelled = np.arange(n) < 100
    centres = np.array([[0.0] * 5, [2.5] * 5])
    spread = rng.normal(0, 1, (n, 5))
    kw = dict(energy="label_spreading", energy_params={}, n_neighbors=10, metric="euclidean", seed=0)
    data = SimpleNamespace(labelled=labelled, targets=y, n_outputs=2, names=["a", "b"], patient_ids=None,
                           split=np.full(n, "train"))
    learnt = graph_step_cv(centres[y] + spread * np.where(labelled, 0.2, 1.0)[:, None], data, **kw)
    drawn = graph_step_cv(centres[y] + spread, data, **kw)
    assert learnt["optimism_check"]["p_value"] < 0.01 and "warning" in learnt["optimism_check"]
    assert drawn["optimism_check"]["p_value"] > 0.05 and "warning" not in drawn["optimism_check"]


def test_partially_labelled_source_uses_every_label_and_reports(tmp_path):
    """A real partially labelled collection: the simulated budget is not drawn (every label trains or
    evaluates), and a report of such a run builds (its images without a label are kept in order)."""
    from conftest import TINY_RUN, write_npz

    from graphzoo.report import build_report

    path = write_npz(tmp_path / "cells.npz", n=160)
    with np.load(path) as z:
        arrays = dict(z)
    arrays["labels"] = np.where(np.random.default_rng(0).random(160) < 0.6, -1, arrays["labels"])
    np.savez(path, **arrays)
    cfg = RunConfig(data=str(path), out=str(tmp_path), name="run", progress=False, label_fraction=0.2,
                    **{**TINY_RUN, "n_neighbors": 5})
    result = run_training(cfg)
    rows = read_csv(result.rundir.predictions)
    known_train = [r for r in rows if r["true"] != "" and r["split"] == "train"]
    assert known_train and all(r["labelled"] == "1" for r in known_train)
    assert sum(r["true"] == "" for r in rows) == (arrays["labels"] < 0).sum()
    html, _ = build_report(result.rundir.path, max_points=200, n_examples=4)
    assert "example test images" in html.read_text()


def test_predictions_carry_calibrated_confidence_sets_referral_and_evidence(tmp_path):
    """Temperature scaling leaves every predicted class (and the headline metrics) as they were; the
    conformal sets, referral and nearest labelled images are written for every image."""
    from graphzoo.calibration import apply_temperature, prediction_sets

    images = blobs()
    metrics, run = run_experiment(cfg_for(tmp_path, epochs=1, coverage=0.8), imageset=images)
    c = json.loads((run / "metrics.json").read_text())["calibration"]
    assert c["n_calibration_val"] == metrics["n_val_labelled"] >= 10 and c["coverage"] == 0.8 and not c["notes"]
    # validation images, plus the labelled training images out of fold when the optimism check lets them in
    assert c["n_calibration_out_of_fold"] in (0, metrics["n_labelled_train"])
    assert c["n_calibration"] == c["n_calibration_val"] + c["n_calibration_out_of_fold"]
    assert (c["n_calibration_out_of_fold"] > 0) == (c["optimism_check"]["p_value"] >= c["optimism_check"]["alpha"])
    assert c["temperature"] > 0 and 0 <= c["conformal_threshold"] <= 1
    assert c["conformal_thresholds"]["0.8"] == c["conformal_threshold"] and c["inductive"]["model"] == "best"
    t = c["test"]
    assert 0 <= t["ece_after"] <= 1 and 0 <= t["refer_rate"] <= 1 and t["mean_set_size"] >= 0
    rows = read_csv(run / "predictions.csv")
    P = np.array([[float(r["prob_left"]), float(r["prob_right"])] for r in rows])
    Pc = apply_temperature(P, c["temperature"])
    assert [r["pred"] for r in rows] == [["left", "right"][k] for k in Pc.argmax(1)]  # T keeps the argmax
    np.testing.assert_allclose([float(r["confidence"]) for r in rows], Pc.max(1), atol=2e-4)
    sets = prediction_sets(P, c["conformal_threshold"])
    assert [r["prediction_set"] for r in rows] == ["|".join(np.array(["left", "right"])[s]) for s in sets]
    assert [int(r["refer"]) for r in rows] == [int(s.sum() != 1) for s in sets]
    test = [r for r in rows if r["split"] == "test"]
    assert t["refer_rate"] == pytest.approx(np.mean([int(r["refer"]) for r in test]))
    covered = np.mean([r["true"] in r["prediction_set"].split("|") for r in test])
    assert t["coverage"] == pytest.approx(covered)
    labelled_train = {r["filename"] for r in rows if r["split"] == "train" and r["labelled"] == "1"}
    for r in rows:
        ev = r["evidence"].split("|")
        assert len(ev) == 3 and set(ev) <= labelled_train and r["filename"] not in ev


def test_too_few_validation_labels_leave_the_temperature_at_one_and_say_so(tmp_path):
    # the net's prediction: calibrated on the validation images alone (no out-of-fold graph rows to add)
    metrics, run = run_experiment(cfg_for(tmp_path, epochs=1, val_labels="budget", label_fraction=0.1,
                                          test_prediction="inductive"), imageset=blobs(n=160))
    c = metrics["calibration"]
    assert c["n_calibration"] < 10 and c["temperature"] == 1.0 and c["n_calibration_out_of_fold"] == 0
    assert any("no temperature fitted" in n for n in c["notes"])
    if c["n_calibration"] < 9:  # ceil((n + 1) · 0.9) > n: no set smaller than every class carries the guarantee
        assert any("too few for coverage 0.9" in n for n in c["notes"]) and c["test"]["refer_rate"] == 1.0
    assert metrics["accuracy"] == metrics["test_inductive"]["accuracy"]


def test_a_kill_between_early_stop_and_phase_end_resumes_exactly(tmp_path, monkeypatch):
    """Early stopping saves last.pt, then finishes the phase (best weights, a second save): a kill in
    between must not make the resumed run train on."""
    data = blobs(n=120, seed=2)
    # hflip makes blobs' class (the bright side) unlearnable: validation stalls and early stopping fires
    opts = dict(epochs=8, patience=1, lr_patience=0, hflip=True)
    full, _ = run_experiment(cfg_for(tmp_path / "full", **opts), imageset=data)
    assert full["stop_reasons"]["supervised"].startswith("early_stopping")
    cfg = cfg_for(tmp_path / "killed", **opts)

    def killed(self, name, reason):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_finish_phase", killed)
        with pytest.raises(KeyboardInterrupt):
            run_training(cfg, imageset=data)
    resumed = run_training(cfg, resume=True, imageset=data).metrics
    assert strip_times(resumed) == strip_times(full)
