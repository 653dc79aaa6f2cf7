"""`graphzoo predict`: finished runs only, corrupt files skipped and named, inputs unlike the training data."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from graphzoo.cli import main  # noqa: E402
from graphzoo.data import CorruptImageError  # noqa: E402
from graphzoo.predict import predict_files, unlike_training  # noqa: E402

from conftest import REPO, data_path  # noqa: E402

FAST = ["--threads", "1", "--no-progress", "--set", "epochs=1", "warmup_epochs=1", "min_epoch_steps=2"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    data_path("malaria", "raw_sample", "cell_images")
    out = tmp_path_factory.mktemp("runs")
    config = str(REPO / "configs" / "demo.yaml")
    assert main(["run", "--config", config, "--out", str(out), "--name", "demo", *FAST]) == 0
    return out / "demo"


@pytest.fixture
def images(tmp_path):
    """Three malaria cells and one file that is not an image."""
    folder = tmp_path / "images"
    folder.mkdir()
    cells = sorted(data_path("malaria", "raw_sample", "cell_images", "valid", "Uninfected").glob("*.png"))[:3]
    for f in cells:
        shutil.copy(f, folder)
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_a_corrupt_file_is_skipped_and_named(demo_run, images, capsys):
    assert main(["predict", "--run", str(demo_run), str(images)]) == 1
    out, err = capsys.readouterr()
    header, *rows = out.strip().splitlines()
    assert header.startswith("file\tprediction\tprobability\t")  # the first three columns as before
    assert len(rows) == 3 and not any("broken" in r for r in rows)
    assert "skipped " + str(images / "broken.png") in err
    assert "1 of 4 images could not be decoded" in err and "--skip-corrupt" in err
    assert main(["predict", "--run", str(demo_run), str(images), "--skip-corrupt"]) == 0
    # the Python API stays strict
    with pytest.raises(CorruptImageError):
        predict_files(demo_run, sorted(images.iterdir()))


def test_an_unfinished_run_needs_allow_unfinished(demo_run, images, tmp_path, capsys):
    crashed = tmp_path / "crashed"
    shutil.copytree(demo_run, crashed)
    (crashed / "metrics.json").unlink()
    (images / "broken.png").unlink()
    assert main(["predict", "--run", str(crashed), str(images)]) == 2
    assert "no finished run" in capsys.readouterr().err
    assert main(["predict", "--run", str(crashed), str(images), "--allow-unfinished"]) == 0


def test_inputs_unlike_the_training_data_are_warned_about(demo_run, images, capsys):
    (images / "broken.png").unlink()
    xray = sorted(data_path("chestxray14", "raw_sample", "images").glob("*.png"))[0]
    shutil.copy(xray, images)
    assert main(["predict", "--run", str(demo_run), str(images)]) == 0
    err = capsys.readouterr().err
    assert "warning: of 4 images, 1 with a side far from the training size 32 px" in err


def test_intensity_far_from_the_training_mean():
    from graphzoo.data.torchdata import Normalizer

    norm = Normalizer([0.5], [0.1])
    x = torch.tensor(np.array([128, 140, 250, 10], dtype=np.uint8)).view(4, 1, 1, 1).expand(4, 1, 8, 8)
    assert unlike_training(x, norm).tolist() == [False, False, True, True]


def test_predict_gives_calibrated_confidence_prediction_sets_and_referral(demo_run, images, tmp_path, capsys):
    import csv
    import json

    from graphzoo.calibration import apply_temperature, prediction_sets

    (images / "broken.png").unlink()
    out = tmp_path / "p.csv"
    assert main(["predict", "--run", str(demo_run), str(images), "-o", str(out)]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header == "file\tprediction\tprobability\tconfidence\tprediction_set\trefer\tevidence"
    rows = list(csv.DictReader(out.open()))
    c = json.loads((demo_run / "metrics.json").read_text())["calibration"]["inductive"]
    names = [k[len("prob_"):] for k in rows[0] if k.startswith("prob_")]
    P = np.array([[float(r[f"prob_{n}"]) for n in names] for r in rows])
    np.testing.assert_allclose([float(r["confidence"]) for r in rows],
                               apply_temperature(P, c["temperature"]).max(1), atol=2e-4)
    sets = prediction_sets(P, c["conformal_threshold"])
    assert [r["prediction_set"] for r in rows] == ["|".join(np.array(names)[s]) for s in sets]
    assert [r["refer"] for r in rows] == [str(int(s.sum() != 1)) for s in sets]
    # another saved coverage: the sets grow or stay; a coverage the run did not save is refused, naming the saved ones
    assert main(["predict", "--run", str(demo_run), str(images), "-o", str(out), "--coverage", "0.99"]) == 0
    wider = list(csv.DictReader(out.open()))
    assert all(set(a["prediction_set"].split("|")) <= set(b["prediction_set"].split("|")) | {""}
               for a, b in zip(rows, wider))
    assert main(["predict", "--run", str(demo_run), str(images), "--coverage", "0.93"]) == 2
    assert "0.8, 0.85, 0.9, 0.95, 0.975, 0.99" in capsys.readouterr().err
    # the demo is a Dynamic Pass, calibrated on its last model: the best checkpoint gets no calibration, said so
    assert main(["predict", "--run", str(demo_run), str(images), "--checkpoint", "best"]) == 0
    assert "calibrated its last model" in capsys.readouterr().err


def test_predict_names_the_nearest_labelled_training_images_as_evidence(demo_run, tmp_path, capsys):
    """A labelled training image of the run, predicted again, finds itself first: ψ of predict equals the run's
    saved features, and the evidence lists labelled training images only."""
    import csv

    rows = list(csv.DictReader((demo_run / "predictions.csv").open()))
    labelled = {r["filename"] for r in rows if r["split"] == "train" and r["labelled"] == "1"}
    root = data_path("malaria", "raw_sample", "cell_images")
    chosen = sorted(labelled)[:3]  # paths relative to the run's data folder
    assert chosen, "the demo run should label some of the sample's cells"
    out = tmp_path / "p.csv"
    assert main(["predict", "--run", str(demo_run), *[str(root / c) for c in chosen], "-o", str(out)]) == 0
    got = list(csv.DictReader(out.open()))
    assert len(got) == len(chosen)
    for r, name in zip(got, chosen):
        ids = r["evidence"].split("|")
        assert ids[0] == name
        assert len(ids) == 3 and set(ids) <= labelled
    # the best checkpoint is not the model whose features the run saved: no evidence, said so
    assert main(["predict", "--run", str(demo_run), str(root / chosen[0]), "--checkpoint", "best", "-o", str(out)]) == 0
    assert "no evidence" in capsys.readouterr().err
    assert all(r["evidence"] == "" for r in csv.DictReader(out.open()))
