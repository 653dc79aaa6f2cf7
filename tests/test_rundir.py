"""graphzoo.rundir: one object names a run folder's files."""

from __future__ import annotations

import json

import pytest

from graphzoo.rundir import RunDir


def test_paths_and_states(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.metrics == tmp_path / "r" / "metrics.json" and run.checkpoint("last").name == "last.pt"
    assert not run.started and not run.finished
    with pytest.raises(FileNotFoundError, match="not a finished graphzoo run"):
        run.read_metrics()
    run.checkpoints.mkdir(parents=True)
    run.checkpoint("last").write_bytes(b"x")
    assert run.started and not run.finished
    run.metrics.write_text(json.dumps({"accuracy": 0.5}))
    assert run.finished and run.read_metrics() == {"accuracy": 0.5}
    with pytest.raises(ValueError, match="'best' or 'last'"):
        run.checkpoint("final")
