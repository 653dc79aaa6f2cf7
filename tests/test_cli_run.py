"""`graphzoo run / predict / list` end to end on the 100 real malaria PNGs of the raw sample."""

from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("torch")

from graphzoo.cli import main  # noqa: E402

from conftest import REPO, data_path  # noqa: E402

FAST = ["--threads", "1", "--no-progress", "--set", "epochs=1", "warmup_epochs=1", "min_epoch_steps=2"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    data_path("malaria", "raw_sample", "cell_images")
    out = tmp_path_factory.mktemp("runs")
    rc = main(["run", "--config", str(REPO / "configs" / "demo.yaml"), "--out", str(out), "--name", "demo", *FAST])
    assert rc == 0
    return out / "demo"


def test_run_writes_everything(demo_run, capsys):
    metrics = json.loads((demo_run / "metrics.json").read_text())
    assert {"accuracy", "balanced_accuracy", "auc", "per_class", "test_inductive", "test_transductive"} <= set(metrics)
    assert set(metrics["per_class"]) == {"Parasitized", "Uninfected"}
    assert (demo_run / "checkpoints" / "best.pt").exists() and (demo_run / "split.json").exists()
    with open(demo_run / "history.csv") as fh:
        phases = [r["phase"] for r in csv.DictReader(fh)]
    assert phases == ["supervised", "dynamic"]


def test_predict_folder_and_csv(demo_run, tmp_path, capsys):
    folder = data_path("malaria", "raw_sample", "cell_images", "valid", "Uninfected")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--run", str(demo_run), str(folder), "--output", str(out)]) == 0
    header, *printed = capsys.readouterr().out.strip().splitlines()
    assert header.startswith("file\tprediction\tprobability\t")  # first three columns as before, then calibration
    assert len(printed) == 25 and all(line.split("\t")[1] in ("Parasitized", "Uninfected") for line in printed)
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 25
    assert all(abs(float(r["prob_Parasitized"]) + float(r["prob_Uninfected"]) - 1) < 1e-4 for r in rows)


def test_resume_with_other_config_names_the_keys(demo_run, capsys):
    rc = main(["run", "--config", str(REPO / "configs" / "demo.yaml"), "--out", str(demo_run.parent), "--name", "demo",
               "--resume", *FAST, "seed=3"])
    assert rc == 2
    assert "seed: 0 -> 3" in capsys.readouterr().err


def test_overwrite_restarts_a_stranded_run_folder(tmp_path, capsys):
    """A failed run (no metrics.json) can be started again with --overwrite; files it did not write stay."""
    data_path("malaria", "raw_sample", "cell_images")
    argv = ["run", "--config", str(REPO / "configs" / "demo.yaml"), "--out", str(tmp_path), "--name", "x", *FAST]
    assert main(argv) == 0
    run = tmp_path / "x"
    (run / "metrics.json").unlink()  # as a run that failed after training leaves it
    (run / "checkpoints" / "last.pt.tmp").write_bytes(b"partial")
    (run / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert f"--overwrite: removed the unfinished run in {run} (9 files)" in err
    assert (run / "metrics.json").is_file() and (run / "notes.txt").read_text() == "mine"
    assert not (run / "checkpoints" / "last.pt.tmp").exists()


def test_list_shows_plugins(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("small_cnn", "resnet18", "autoencoder", "label_spreading", "poisson", "npz", "folder"):
        assert name in out
    # plain words for a terminal: no Sphinx markup, no pointers into the source, no empty description
    assert ":math:" not in out and "``" not in out and "module docstring" not in out
    assert all(len(line.split(None, 1)) == 2 for line in out.splitlines() if line.startswith("  "))


def test_list_describes_a_user_plugin_in_plain_words():
    from graphzoo.listing import describe

    def my_energy(W, y, n_classes):
        """My energy: :math:`H = L^{-1} Y` on ``W`` (see the module docstring)."""

    assert describe("energies", "mine", my_energy) == "My energy: H = L^{-1} Y on W."


# ------------------------------------------------------------------ run -> suggest -> label -> run --init-from


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def gaps_run(tmp_path_factory):
    """A finished tiny run on 160 synthetic images, half of them without a label (-1 in the npz), 6 suggestions."""
    import numpy as np

    from conftest import TINY_RUN, write_npz
    from graphzoo.config import RunConfig, apply_overrides
    from graphzoo.train import run_training

    tmp = tmp_path_factory.mktemp("loop")
    path = write_npz(tmp / "gaps.npz", n=160)
    z = dict(np.load(path))
    truth = z["labels"].copy()
    z["labels"] = np.where(np.random.default_rng(0).random(160) < 0.5, -1, truth)
    np.savez(path, **z)
    cfg = apply_overrides(RunConfig(), {"data": str(path), **TINY_RUN, "split": "random", "out": str(tmp / "runs"),
                                        "name": "ward", "progress": False})
    rd = run_training(cfg).rundir
    assert main(["suggest", "--run", str(rd), "-n", "6", "--no-sheet"]) == 0
    return rd, truth


def test_init_from_continues_a_run_with_its_new_labels_weights_and_split(gaps_run, monkeypatch, capsys):
    import numpy as np
    import torch

    import graphzoo.models as models
    from graphzoo.data import load_split
    from graphzoo.labelling import LabelFile

    rd, truth = gaps_run
    names = ["left", "right"]
    with open(rd.suggestions, newline="") as fh:
        suggested = list(csv.DictReader(fh))
    labels = LabelFile(rd.labels, names)  # as the labelling page writes them
    for row in suggested:
        labels.answer(row["filename"], int(row["index"]), names[truth[int(row["index"])]])
    before = _files(rd.path)
    loaded = {}

    def spy(*args, **kwargs):
        net = create(*args, **kwargs)
        loaded.update({k: v.clone() for k, v in net.state_dict().items()})
        return net

    create = models.create_backbone
    monkeypatch.setattr(models, "create_backbone", spy)
    capsys.readouterr()
    assert main(["run", "--init-from", str(rd), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "the classifier head starts afresh" in err and str(rd.labels) in err
    new = rd.path.parent / "ward-r2"
    assert (new / "metrics.json").is_file() and _files(rd.path) == before  # the run continued is untouched
    best = torch.load(rd.checkpoint("best"), weights_only=True)["model"]  # One Pass evaluates its best model
    own = {k[len("backbone."):]: v for k, v in best.items() if k.startswith("backbone.")}
    assert loaded.keys() == own.keys() and all(torch.equal(loaded[k], own[k]) for k in own)
    old, cont = load_split(rd.split), load_split(new / "split.json")
    np.testing.assert_array_equal(cont["split"], old["split"])  # same split: no test image of ward trains ward-r2
    idx = [int(r["index"]) for r in suggested]
    assert cont["labelled"].sum() == old["labelled"].sum() + 6 and cont["labelled"][idx].all()
    metrics = json.loads((new / "metrics.json").read_text())
    assert metrics["n_unlabelled_source"] == json.loads(rd.metrics.read_text())["n_unlabelled_source"] - 6
    # the labels it added are kept in its own folder: labelling on in ward/labels.csv does not change ward-r2
    from graphzoo.config import load_config

    added = load_config(new / "config.yaml").add_labels
    assert added == [str((new / "labels_added.csv").resolve())]
    assert (new / "labels_added.csv").read_bytes() == rd.labels.read_bytes()


def test_init_from_refuses_a_changed_split_and_names_the_next_round(gaps_run, tmp_path, capsys):
    from graphzoo.run import next_round_name

    rd, _ = gaps_run
    assert main(["run", "--init-from", str(rd), "--seed", "5", "--no-progress"]) == 2
    assert "--init-from keeps ward's seed" in capsys.readouterr().err
    (tmp_path / "ward-r2").mkdir()
    assert next_round_name(tmp_path / "ward", tmp_path) == "ward-r3"
    assert next_round_name(tmp_path / "ward-r3", tmp_path) == "ward-r4"
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nc0.png,up\n")
    assert main(["run", "--init-from", str(rd), "--labels", str(bad), "--name", "x", "--no-progress"]) == 2
    assert "line 2: 'up'" in capsys.readouterr().err and not (rd.path.parent / "x" / "metrics.json").exists()


def test_init_from_refuses_a_label_source_that_changed_the_split(tmp_path, capsys):
    """A folder whose labels all come from a CSV: appending rows to that CSV and continuing would redraw the
    split (test images of the first run could train the second): refused, naming the way out."""
    import numpy as np
    from PIL import Image

    from conftest import TINY_RUN

    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    rows = []
    for i in range(80):
        x = rng.normal(40, 12, (16, 16))
        x[3:-3, 1:7] += 150 if i % 2 == 0 else 0
        x[3:-3, 9:15] += 150 if i % 2 else 0
        Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(folder / f"c{i}.png")
        rows.append(f"c{i}.png,{'ab'[i % 2] if i < 40 else ''}")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    opts = [f"{k}={v}" for k, v in {**TINY_RUN, "split": "random", "n_neighbors": 5}.items() if k != "backbone_kwargs"]
    base = ["run", "--data", str(folder), "--labels", str(csv), "--out", str(tmp_path / "runs"), "--no-progress",
            "--set", *opts, "backbone_kwargs={width: 4}"]
    assert main([*base, "--name", "ward"]) == 0
    csv.write_text("path,label\n" + "\n".join(f"c{i}.png,{'ab'[i % 2] if i < 60 else ''}" for i in range(80)) + "\n")
    capsys.readouterr()
    code = main(["run", "--init-from", str(tmp_path / "runs" / "ward"), "--labels", str(csv), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "the split differs from that run's" in err and "separate CSV" in err
