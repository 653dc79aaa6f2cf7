"""Self-supervised pretraining: views, losses, the encoder cache (hit, miss, stale, resume), collapse,
``graphzoo pretrain`` and runs that start from the encoder. Tiny synthetic sets, one thread."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from graphzoo.data.prepare import prepare_data  # noqa: E402
from graphzoo.data.torchdata import Normalizer  # noqa: E402
from graphzoo.train import TrainingInterrupted, run_training  # noqa: E402
from graphzoo.selfsup.views import ViewMaker  # noqa: E402
from graphzoo.train.pretrain_cache import encoder_health, ensure_pretrained, pretrain_request  # noqa: E402
from graphzoo.selfsup.losses import (CollapsedRepresentationError, check_not_collapsed, nt_xent,  # noqa: E402
                                representation_health, vicreg)
from test_train import blobs, cfg_for  # noqa: E402

FAST = {"batch_size": 32, "proj_hidden": 32, "proj_dim": 16}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the runs here use: several threads fight the other jobs of a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pcfg(tmp_path, **kw):
    base = dict(pretrain="simclr", pretrain_epochs=1, pretrain_params=dict(FAST), backbone_kwargs={"width": 4})
    base.update(kw)
    return cfg_for(tmp_path, **base).validate()


def prepared(cfg, imageset=None):
    d = prepare_data(**cfg.data_options(), imageset=imageset or blobs(n=120))
    idx = d.idx("train")
    return d, idx, Normalizer.fit(d.images, idx)


# ------------------------------------------------------------------ views
def test_views_keep_shape_and_range_and_follow_the_generator():
    x = torch.rand(6, 1, 20, 20, generator=torch.Generator().manual_seed(1)) * 255
    vm = ViewMaker()
    a = vm(x, torch.Generator().manual_seed(3))
    b = vm(x, torch.Generator().manual_seed(3))
    c = vm(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 255
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.equal(x, x * 0) and torch.equal(x, torch.rand(6, 1, 20, 20, generator=torch.Generator()
                                                                   .manual_seed(1)) * 255)  # input untouched


def test_views_without_crop_or_photometric_change_are_exact_symmetries_of_the_square():
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16) % 251
    vm = ViewMaker(crop_min=1.0, aspect=1.0, blur_p=0.0, brightness=0.0, contrast=0.0, noise_p=0.0)
    out = vm(x, torch.Generator().manual_seed(0))
    for i in range(2):
        syms = [torch.rot90(f, k, dims=(1, 2)) for f in (x[i], x[i].flip(2)) for k in range(4)]
        assert min(float((out[i] - s).abs().max()) for s in syms) < 1e-3


def test_views_use_only_the_symmetries_the_data_has():
    """A chest X-ray (hflip = vflip = false, no quarter turns) is never mirrored nor turned in a view; with every
    symmetry allowed, the same draws give the views they always gave (the flips and turns are masked, not redrawn)."""
    x = torch.arange(8 * 16 * 16, dtype=torch.float32).view(8, 1, 16, 16) % 251
    exact = dict(crop_min=1.0, aspect=1.0, blur_p=0.0, brightness=0.0, contrast=0.0, noise_p=0.0)
    none = ViewMaker(**exact, hflip=False, vflip=False, rot90=False)(x, torch.Generator().manual_seed(0))
    assert float((none - x).abs().max()) < 1e-3
    every = ViewMaker(**exact)(x, torch.Generator().manual_seed(0))
    assert float((every - x).abs().amax(dim=(1, 2, 3)).max()) > 1  # some of the 8 images were flipped or turned
    mirror_only = ViewMaker(**exact, vflip=False, rot90=False)(x, torch.Generator().manual_seed(0))
    for i in range(len(x)):
        assert min(float((mirror_only[i] - s).abs().max()) for s in (x[i], x[i].flip(2))) < 1e-3
    assert torch.equal(ViewMaker()(x, torch.Generator().manual_seed(5)),
                       ViewMaker(hflip=True, vflip=True, rot90=True)(x, torch.Generator().manual_seed(5)))


def test_views_refuse_bad_settings():
    with pytest.raises(ValueError, match="crop_min"):
        ViewMaker(crop_min=0)
    with pytest.raises(ValueError, match="blur_p"):
        ViewMaker(blur_p=1.5)


# ------------------------------------------------------------------ losses
def test_nt_xent_matches_a_hand_computation_on_four_vectors():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[3.0, 4.0], [-1.0, 1.0]])
    u = [(1, 0), (0, 1), (0.6, 0.8), (-1 / math.sqrt(2), 1 / math.sqrt(2))]  # the rows of [z1; z2], unit length
    tau, pos = 0.5, {0: 2, 1: 3, 2: 0, 3: 1}
    total = 0.0
    for i in range(4):
        s = {j: (u[i][0] * u[j][0] + u[i][1] * u[j][1]) / tau for j in range(4) if j != i}
        total += -s[pos[i]] + math.log(sum(math.exp(v) for v in s.values()))
    assert float(nt_xent(z1, z2, temperature=tau)) == pytest.approx(total / 4, rel=1e-5)


def test_vicreg_is_its_variance_term_alone_for_equal_well_spread_views():
    z = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]])  # var 8/3 > 1, uncorrelated
    assert float(vicreg(z, z)) == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.zeros(4, 2)  # every hinge at 1 − √ε, in both views
    assert float(vicreg(collapsed, collapsed, var=1.0)) == pytest.approx(2 * (1 - 1e-2), rel=1e-6)


# ------------------------------------------------------------------ collapse
def test_collapse_is_detected_on_a_constant_encoder_and_a_line():
    class Constant(torch.nn.Module):
        out_dim = 8

        def forward(self, x):
            return torch.ones(len(x), 8) + 0 * x.mean()

    d = blobs(n=40)
    images = torch.from_numpy(d.images[:, None])
    health = encoder_health(Constant(), images, np.arange(40), Normalizer.fit(images), torch.device("cpu"))
    assert health["std"] == 0 and health["effective_rank"] == 0
    with pytest.raises(CollapsedRepresentationError, match="collapsed"):
        check_not_collapsed(health, "the test encoder")
    t = torch.linspace(-1, 1, 50)[:, None]
    line = representation_health(t * torch.tensor([[1.0, 2.0, 3.0]]))
    assert line["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(CollapsedRepresentationError):
        check_not_collapsed(line, "a line")
    check_not_collapsed(representation_health(torch.randn(50, 3)), "noise")  # spread: no error


# ------------------------------------------------------------------ cache
def test_cache_hit_miss_and_stale_data(tmp_path, capsys):
    cfg = pcfg(tmp_path)
    d, idx, norm = prepared(cfg)
    first = ensure_pretrained(cfg, d, idx, norm)
    assert first.epochs_trained == 1 and first.encoder.is_file() and first.folder.parent == tmp_path / ".pretrained"
    again = ensure_pretrained(cfg, d, idx, norm)
    assert again.epochs_trained == 0 and again.folder == first.folder  # a hit trains nothing
    other = ensure_pretrained(dataclasses.replace(cfg, pretrain_params={**FAST, "temperature": 0.5}), d, idx, norm)
    assert other.epochs_trained == 1 and other.folder != first.folder  # other settings: a miss
    fewer = ensure_pretrained(cfg, d, idx[:-5], norm)
    assert fewer.epochs_trained == 1 and fewer.folder not in (first.folder, other.folder)  # other split: a miss
    d.images[idx[0]] = 255 - d.images[idx[0]]  # the same file rewritten with one image changed
    stale = ensure_pretrained(cfg, d, idx, norm)
    assert "built from other training images" in capsys.readouterr().err
    assert stale.epochs_trained == 1 and stale.folder == first.folder


def test_the_runs_symmetries_name_another_encoder_and_all_of_them_keep_the_old_key(tmp_path):
    """Views without flips are another encoder (a miss, not a silent reuse); a run allowing every flip and
    quarter turn keeps the key it had before the views followed the run (no ``view_symmetries`` entry)."""
    cells = pcfg(tmp_path, hflip=True, rot90=True)  # (blobs are mirrored only for this key check)
    d, idx, norm = prepared(cells)
    assert "view_symmetries" not in pretrain_request(cells, d, idx)
    chest = dataclasses.replace(cells, hflip=False, vflip=False, rot90=False)
    assert pretrain_request(chest, d, idx)["view_symmetries"] == {"hflip": False, "vflip": False, "rot90": False}
    first = ensure_pretrained(cells, d, idx, norm)
    other = ensure_pretrained(chest, d, idx, norm)
    assert other.epochs_trained == 1 and other.folder != first.folder
    assert "view_symmetries" not in pretrain_request(pcfg(tmp_path, pretrain="autoencoder", backbone="autoencoder",
                                                          pretrain_params={}, hflip=False), d, idx)


def test_a_set_smaller_than_one_batch_is_refused(tmp_path):
    cfg = pcfg(tmp_path, pretrain_params={**FAST, "batch_size": 512})
    d, idx, norm = prepared(cfg)
    with pytest.raises(ValueError, match=r"batch_size=512 training images, but the training split has \d+"):
        ensure_pretrained(cfg, d, idx, norm)


def test_killed_pretraining_continues_from_its_last_epoch(tmp_path):
    cfg = pcfg(tmp_path / "a", pretrain_epochs=2)
    d, idx, norm = prepared(cfg)
    with pytest.raises(TrainingInterrupted):
        ensure_pretrained(cfg, d, idx, norm, stop_after_epochs=1)
    resumed = ensure_pretrained(cfg, d, idx, norm)
    assert resumed.epochs_trained == 1 and [h["epoch"] for h in resumed.meta["history"]] == [1, 2]
    whole = ensure_pretrained(dataclasses.replace(cfg, out=str(tmp_path / "b")), d, idx, norm)
    assert whole.epochs_trained == 2
    a, b = (torch.load(r.encoder, weights_only=True) for r in (resumed, whole))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


# ------------------------------------------------------------------ runs and CLI
def test_runs_start_from_the_encoder_fine_tuned_or_frozen(tmp_path):
    fine = run_training(pcfg(tmp_path, name="fine", epochs=2), imageset=blobs(n=120))
    info = fine.metrics["pretrain"]
    assert info["built_now"] and info["effective_rank"] > 1.5 and 0 <= fine.metrics["accuracy"] <= 1
    frozen = run_training(pcfg(tmp_path, name="frozen", epochs=2, pretrain_freeze=True), imageset=blobs(n=120))
    assert not frozen.metrics["pretrain"]["built_now"]  # the same encoder, from the cache
    enc = torch.load(info["folder"] + "/encoder.pt", weights_only=True)
    final = torch.load(frozen.rundir.checkpoint("best"), weights_only=True)["model"]
    for k, v in enc.items():  # frozen: ψ's weights are the encoder's (BatchNorm statistics may be re-estimated)
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(final["backbone." + k], v), k
    with pytest.raises(ValueError, match="pretrain_freeze=true would train the head on a random"):
        cfg_for(tmp_path, pretrain="none", pretrain_freeze=True).validate()
    with pytest.raises(ValueError, match="pretrain=auto chooses none on small training splits"):
        cfg_for(tmp_path, pretrain_freeze=True).validate()  # the default, auto: it may choose none
    with pytest.raises(ValueError, match="not a setting of simclr"):
        pcfg(tmp_path, pretrain_params={"temprature": 0.1})
    with pytest.raises(ValueError, match="pretrain=autoencoder reconstructs images with the autoencoder backbone"):
        pcfg(tmp_path, pretrain="autoencoder", pretrain_params={})


def test_auto_the_default_pretrains_on_large_training_splits_only(tmp_path):
    from graphzoo.selfsup import AUTO_PRETRAIN_CPU_WORK, AUTO_PRETRAIN_MIN_IMAGES, resolve_auto_pretrain

    cfg = cfg_for(tmp_path).validate()
    assert cfg.pretrain == "auto"  # the default
    big, why = resolve_auto_pretrain(cfg, AUTO_PRETRAIN_MIN_IMAGES)
    assert big.pretrain == "simclr" and f"{AUTO_PRETRAIN_MIN_IMAGES:,} training images >=" in why
    small, why = resolve_auto_pretrain(cfg, AUTO_PRETRAIN_MIN_IMAGES - 1)
    assert small.pretrain == "" and "pretrain=auto: none" in why
    # explicit weights, and the autoencoder backbone (it pretrains itself), choose none at any size
    assert resolve_auto_pretrain(dataclasses.replace(cfg, pretrained="w.pt"), 10**6)[0].pretrain == ""
    assert resolve_auto_pretrain(dataclasses.replace(cfg, backbone="autoencoder"), 10**6)[0].pretrain == ""
    # on the CPU, not when it would read more than AUTO_PRETRAIN_CPU_WORK pixel values (a GPU has no such cap)
    n, pixels = AUTO_PRETRAIN_MIN_IMAGES, int(AUTO_PRETRAIN_CPU_WORK / AUTO_PRETRAIN_MIN_IMAGES / cfg.pretrain_epochs)
    assert resolve_auto_pretrain(cfg, n, pixels, on_cpu=True)[0].pretrain == "simclr"
    costly, why = resolve_auto_pretrain(cfg, n, pixels + 1, on_cpu=True)
    assert costly.pretrain == "" and "hours on a CPU" in why
    assert resolve_auto_pretrain(cfg, n, pixels + 1, on_cpu=False)[0].pretrain == "simclr"
    explicit = dataclasses.replace(cfg, pretrain="vicreg")
    assert resolve_auto_pretrain(explicit, 10**6) == (explicit, "")
    assert cfg_for(tmp_path, pretrain="Auto").validate().pretrain == "auto"
    with pytest.raises(ValueError, match="not a setting of simclr"):  # auto's settings are checked as simclr's
        cfg_for(tmp_path, pretrain_params={"temprature": 0.1}).validate()


def test_a_run_with_pretrain_auto_records_its_choice_and_resumes(tmp_path, monkeypatch, capsys):
    """Above the threshold the run pretrains and says why in metrics.json; config.yaml keeps "auto", so the
    same command continues a killed run; below it nothing is pretrained."""
    import yaml

    import graphzoo.selfsup.methods as methods

    small = run_training(cfg_for(tmp_path, name="small", backbone_kwargs={"width": 4}), imageset=blobs(n=120))
    assert "pretrain" not in small.metrics and not (tmp_path / ".pretrained").exists()
    assert "pretrain=auto" not in capsys.readouterr().err  # choosing none is said with progress lines only
    monkeypatch.setattr(methods, "AUTO_PRETRAIN_MIN_IMAGES", 50)  # blobs(n=120): ~84 training images
    cfg = cfg_for(tmp_path, name="big", pretrain_epochs=1, pretrain_params=dict(FAST), backbone_kwargs={"width": 4})
    stopped = run_training(cfg, imageset=blobs(n=120), stop_after_epochs=1)
    assert stopped.metrics == {"interrupted_after_epoch": 1}
    assert "pretrain=auto: simclr (84 training images" in capsys.readouterr().err  # said even without progress
    assert yaml.safe_load(stopped.rundir.config.read_text())["pretrain"] == "auto"
    done = run_training(cfg, resume=True, imageset=blobs(n=120))
    info = done.metrics["pretrain"]
    assert info["method"] == "simclr" and info["auto"].startswith("pretrain=auto: simclr (84 training images")
    assert Path(info["folder"]).parent == tmp_path / ".pretrained"


def test_a_partially_labelled_collections_unlabelled_images_join_pretraining(tmp_path):
    """Issue 13: the images without a label are pretraining's main input: the encoder's key counts every
    training image, most of them unlabelled (only those of patients held out for evaluation stay out)."""
    from test_train import partially_labelled

    ds = partially_labelled(n=160)
    run = run_training(pcfg(tmp_path, name="partial", epochs=1, label_fraction=1.0), imageset=ds)
    meta = json.loads((Path(run.metrics["pretrain"]["folder"]) / "meta.json").read_text())
    with open(run.rundir.predictions, newline="") as fh:
        rows = list(csv.DictReader(fh))
    train = [r for r in rows if r["split"] == "train"]
    unlabelled = [r for r in rows if r["true"] == ""]
    assert len(unlabelled) == (ds.labels < 0).sum() and {r["split"] for r in unlabelled} <= {"train", "excluded"}
    n_unlabelled_train = sum(r["split"] == "train" for r in unlabelled)
    assert meta["key"]["n_train"] == len(train) == n_unlabelled_train + sum(r["labelled"] == "1" for r in train)
    assert n_unlabelled_train > len(unlabelled) / 2


def test_autoencoder_method_pretrains_the_autoencoder_backbone(tmp_path):
    cfg = pcfg(tmp_path, pretrain="autoencoder", pretrain_params={"batch_size": 32},
               backbone="autoencoder", backbone_kwargs={"width": 4, "latent": 8})
    d, idx, norm = prepared(cfg)
    result = ensure_pretrained(cfg, d, idx, norm)
    assert result.epochs_trained == 1 and result.meta["history"][0]["loss"] > 0


def test_graphzoo_pretrain_cli_end_to_end_on_a_tiny_npz(tmp_path, capsys):
    from graphzoo.cli import main

    d = blobs(n=120)
    npz = tmp_path / "tiny.npz"
    np.savez(npz, images=d.images, labels=d.labels, class_names=np.array(d.class_names))
    argv = ["pretrain", "--data", str(npz), "--epochs", "1", "--out", str(tmp_path / "runs"), "--threads", "1",
            "--no-progress", "--set", "split=random", "backbone_kwargs={width: 4}",
            "pretrain_params={batch_size: 32, proj_hidden: 32, proj_dim: 16}"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "simclr" and out["epochs_trained"] == 1 and not out["reused"]
    assert out["encoder"].startswith(str(tmp_path / "runs" / ".pretrained"))
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["reused"]
    assert main(argv[:-1] + ["pretrain_params={batch_size: 4096}"]) == 2
    assert "needs at least one batch" in capsys.readouterr().err


def test_the_encoder_does_not_depend_on_the_callers_rng_nor_changes_it(tmp_path):
    cfg = pcfg(tmp_path / "a")
    d, idx, norm = prepared(cfg)
    torch.manual_seed(123)
    a = ensure_pretrained(cfg, d, idx, norm)
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)  # the caller's stream is as if nothing had been drawn
    torch.manual_seed(7)
    b = ensure_pretrained(dataclasses.replace(cfg, out=str(tmp_path / "b")), d, idx, norm)
    wa, wb = (torch.load(r.encoder, weights_only=True) for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
