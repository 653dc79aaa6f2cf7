"""graphzoo suggest: end to end on a finished tiny run (CSV, contact sheet, stdout), never a test, validation
or labelled image, and one clear error (nothing written) for each bad input."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")

from conftest import copy_run  # noqa: E402

from graphzoo.cli import main as cli  # noqa: E402
from graphzoo.data import load_split  # noqa: E402
from graphzoo.rundir import RunDir  # noqa: E402


@pytest.fixture(scope="module")
def run(tiny_one_pass, tmp_path_factory) -> RunDir:
    """This module's copy of the shared tiny One Pass run (suggest writes into the run folder)."""
    return copy_run(tiny_one_pass.rundir, tmp_path_factory.mktemp("suggest") / "op")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("strategy", ["uncertainty_diverse", "model_change"])
def test_suggest_writes_csv_sheet_and_lines_and_never_a_test_or_labelled_image(strategy, run, capsys):
    assert cli(["suggest", "--run", str(run), "-n", "7", "--strategy", strategy, "--seed", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("# 7 images to label next") and out[1].startswith("rank\tindex\tfilename")
    assert len(out) == 2 + 7
    rows = _rows(run.suggestions)
    assert list(rows[0]) == ["rank", "index", "filename", "score", "strategy", "predicted_class",
                             "graph_probability"]
    assert [int(r["rank"]) for r in rows] == list(range(1, 8))
    split = load_split(run.split)
    part, labelled = np.asarray(split["split"]).astype(str), split["labelled"]
    idx = np.array([int(r["index"]) for r in rows])
    assert len(set(idx)) == 7 and (part[idx] == "train").all() and not labelled[idx].any()
    assert {r["strategy"] for r in rows} == {strategy}
    assert {r["predicted_class"] for r in rows} <= {"left", "right"}
    assert all(0.5 <= float(r["graph_probability"]) <= 1 for r in rows)  # the argmax of two classes
    assert [r["filename"] for r in rows] == [f"c{i}.png" for i in idx]  # predictions.csv order
    from PIL import Image

    with Image.open(run.suggestions.with_suffix(".png")) as im:
        assert im.size[0] >= 7 * 96 and im.size[1] >= 96  # one row of seven thumbnails


def test_asking_for_every_candidate_suggests_exactly_the_unlabelled_training_images(run, capsys):
    split = load_split(run.split)
    part = np.asarray(split["split"]).astype(str)
    pool = set(np.flatnonzero((part == "train") & ~split["labelled"]))
    assert cli(["suggest", "--run", str(run), "-n", str(len(pool)), "--strategy", "uncertainty", "--no-sheet"]) == 0
    assert {int(r["index"]) for r in _rows(run.suggestions)} == pool
    assert capsys.readouterr().out.count("\n") == 2 + len(pool)


def test_more_than_the_candidates_is_refused_and_nothing_is_overwritten(run, capsys):
    assert cli(["suggest", "--run", str(run), "-n", "3", "--no-sheet"]) == 0
    before = run.suggestions.read_text()
    capsys.readouterr()
    assert cli(["suggest", "--run", str(run), "-n", "100000", "--no-sheet"]) == 2
    err = capsys.readouterr().err
    assert "asks for more than the" in err and "unlabelled training images" in err and "use -n" in err
    assert run.suggestions.read_text() == before


@pytest.mark.parametrize("argv, message", [
    (["--strategy", "uncertainty_divers"], "Did you mean 'uncertainty_diverse'?"),
    (["-n", "0"], "must be >= 1, got 0"),
    (["-n", "-4"], "must be >= 1, got -4"),
])
def test_bad_arguments_are_refused(argv, message, run, capsys):
    try:
        code = cli(["suggest", "--run", str(run), "--no-sheet"] + argv)
    except SystemExit as exc:  # argparse's own refusal
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_unfinished_or_incomplete_runs_are_refused(run, tmp_path, capsys):
    copy = RunDir(tmp_path / "copy")
    shutil.copytree(run.path, copy.path, ignore=shutil.ignore_patterns("checkpoints", "suggestions*"))
    copy.metrics.unlink()
    assert cli(["suggest", "--run", str(copy), "-n", "3"]) == 2
    assert "no finished run" in capsys.readouterr().err
    shutil.copy(run.metrics, copy.metrics)
    copy.features.unlink()
    assert cli(["suggest", "--run", str(copy), "-n", "3"]) == 2
    assert "features.npy is missing" in capsys.readouterr().err
    assert cli(["suggest", "--run", str(tmp_path / "nowhere"), "-n", "3"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not copy.suggestions.exists()


def test_a_dataset_that_moved_is_named_and_nothing_is_written(run, tmp_path, capsys):
    copy = RunDir(tmp_path / "moved")
    shutil.copytree(run.path, copy.path, ignore=shutil.ignore_patterns("checkpoints", "suggestions*"))
    config = copy.config.read_text()
    copy.config.write_text(config.replace("tiny.npz", "gone.npz"))
    assert cli(["suggest", "--run", str(copy), "-n", "3"]) == 2
    assert "use --no-sheet" in capsys.readouterr().err
    assert not copy.suggestions.exists() and not copy.suggestions.with_suffix(".png").exists()
    assert cli(["suggest", "--run", str(copy), "-n", "3", "--no-sheet"]) == 0
    assert len(_rows(copy.suggestions)) == 3
