"""graphzoo.train.checkpoints: only tensors and plain values; nothing in a file can run code."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from graphzoo.train.checkpoints import (  # noqa: E402
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    save_checkpoint,
)


def test_round_trip_converts_numpy_to_tensors_and_plain_values(tmp_path):
    obj = {"w": torch.ones(3), "idx": np.arange(4), "best": (np.float64(0.5), -1.0), "names": np.array(["a", "b"]),
           "rng": np.random.get_state(), "py": random.getstate(), "n": np.int64(7), "none": None}
    save_checkpoint(obj, tmp_path / "c.pt")
    back = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(back["idx"], torch.arange(4)) and back["best"] == (0.5, -1.0) and back["n"] == 7
    assert back["names"] == ["a", "b"] and type(back["n"]) is int
    assert not list(tmp_path.glob("*.tmp"))


def test_a_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"meta": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeCheckpointError, match="refused to load .*GLOBAL posix.system"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_old_checkpoints_with_numpy_arrays_still_load(tmp_path):
    torch.save({"pseudo": np.arange(3), "score": np.float64(1.5), "rng": np.random.get_state()}, tmp_path / "old.pt")
    back = load_checkpoint(tmp_path / "old.pt")
    assert back["pseudo"].tolist() == [0, 1, 2] and back["score"] == 1.5


def test_truncated_file_and_unsupported_objects(tmp_path):
    save_checkpoint({"w": torch.ones(2)}, tmp_path / "ok.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:80])
    with pytest.raises(CheckpointError, match="truncated or not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="cannot store a object"):
        save_checkpoint({"x": object()}, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists() and not (tmp_path / "bad.pt.tmp").exists()


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """A full disk (or Ctrl-C) during a save leaves the last good file and no stray .tmp."""
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1}, path)

    def full_disk(obj, f):
        open(f, "wb").write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path) == {"epoch": 1} and not (tmp_path / "last.pt.tmp").exists()
