"""Every kind of bad input the command line meets: one clear line, an exit code, nothing half-written.

Each case runs ``graphzoo.cli.main([...])`` and checks the exit code, a phrase of the one-line
message (the problem or its fix), that no traceback was printed, and that no run folder was
created. Cases that need a trained run live in ``test_predict.py`` and ``test_cli_run.py``.
"""

from __future__ import annotations

import errno

import pytest

from graphzoo.cli import describe, main

RUN = ["run", "--data", "x.npz", "--threads", "1"]


CASES = [
    # (argv, files to write first {name: content}, exit code, phrase of the message)
    (["run", "--config", "bad.yaml"], {"bad.yaml": "data: x.npz\nlr: [0.1\nepochs: 2\n"}, 2,
     "bad.yaml, line 3, column 7: invalid YAML"),
    (["run", "--config", "dup.yaml"], {"dup.yaml": "data: x.npz\nlr: 0.1\nlr: 0.2\n"}, 2,
     "line 3, column 1: invalid YAML: duplicate key 'lr' (first at line 2)"),
    (["run", "--config", "list.yaml"], {"list.yaml": "- data\n"}, 2, "a config must be a mapping"),
    (["run", "--config", "missing.yaml"], {}, 2, "config file 'missing.yaml' does not exist"),
    (["experiment", "--config", "grid.yaml"], {"grid.yaml": "name: x\ngrid:\n  seeds: [0, 1\n  a: b\n"}, 2,
     "grid.yaml, line 4, column 4: invalid YAML"),
    ([*RUN, "--set", "energy_params={alpha: 2}"], {}, 2, "alpha must lie in (0, 1), got 2"),
    ([*RUN, "--set", "energy_params={alpa: 0.5}"], {}, 2, "has no parameter 'alpa'. Did you mean 'alpha'?"),
    ([*RUN, "--energy", "poisson", "--set", "energy_params={class_priors: uniform}"], {}, 2,
     "class_priors must be None, 'labelled' or an array"),
    ([*RUN, "--set", "energy_params={a: 1, a: 2}"], {}, 2, "duplicate key 'a'"),
    ([*RUN, "--set", "backbone_kwargs={widht: 8}"], {}, 2, "has no parameter 'widht'. Did you mean 'width'?"),
    ([*RUN, "--backbone", "resnet18", "--set", "backbone_kwargs={foo: 1}"], {}, 2,
     "do not fit backbone 'resnet18'"),
    ([*RUN, "--set", "backbone_kwargs={in_chans: 3}"], {}, 2, "set in_chans with its own config key"),
    ([*RUN, "--seed", "-1"], {}, 2, "seed must lie in [0, 2**32), got -1"),
    ([*RUN, "--backbone", "resnt18"], {}, 2, "Did you mean 'resnet18'"),
    ([*RUN, "--set", "epochs=many"], {}, 2, "epochs must be int"),
    ([*RUN, "--set", "batchsize=3"], {}, 2, "Did you mean 'batch_size'"),
    ([*RUN, "--set", "mode=dynamc"], {}, 2, "Did you mean 'dynamic'"),
    ([*RUN, "--set", "noequals"], {}, 2, "--set expects key=value"),
    (["run", "--threads", "1"], {}, 2, "no data: set data=PATH"),
    ([*RUN], {}, 2, "data x.npz does not exist: check the path"),
    ([*RUN, "--out", "afile"], {"x.npz": "", "afile": "x"}, 2, "is a file, but the run folder"),
    (["predict", "--run", "nowhere/run", "img.png"], {}, 2, "is not a folder"),
    (["report", "nowhere"], {}, 2, "nowhere does not exist; give a run folder"),
    (["report", "."], {}, 2, "holds neither results.jsonl"),
    ([*RUN, "--set", "energy_params={alpha:2}"], {}, 2, "with a space after the colon (alpha: 2)"),
]


@pytest.mark.parametrize("argv, files, code, message", CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_one_clear_line(argv, files, code, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the files and paths of the cases are relative to it
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    out = tmp_path / "runs"
    if "--out" not in argv and argv[0] == "run":
        argv += ["--out", str(out)]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"graphzoo {argv[0]}: error: ")
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run folder, nothing half-written


def test_argparse_refuses_batch_size_zero(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["predict", "--run", "r", "x.png", "--batch-size", "0"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --batch-size: must be >= 1, got 0" in err and "Traceback" not in err


def test_resume_and_overwrite_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        main([*RUN, "--resume", "--overwrite"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_read_only_destination_is_refused(tmp_path, monkeypatch, capsys):
    # Tests may run as root, for whom chmod does not make a folder read-only: ask os.access instead.
    monkeypatch.setattr("graphzoo.run.os.access", lambda path, mode: False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.npz").write_bytes(b"")
    assert main([*RUN, "--out", str(tmp_path / "runs")]) == 2
    assert f"cannot write to {tmp_path} (read-only or not yours)" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    "exc, code, message",
    [
        (KeyboardInterrupt(), 130, "interrupted; the last checkpoint is intact: continue with graphzoo run --resume"),
        (OSError(errno.ENOSPC, "No space left on device", "runs/x/checkpoints/last.pt.tmp"), 1,
         "disk full writing runs/x/checkpoints/last.pt.tmp: free some space; the last checkpoint is intact"),
        (PermissionError(errno.EACCES, "Permission denied", "/ro/runs"), 2, "permission denied: /ro/runs"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "runs/x"), 2, "runs/x is a file where a folder"),
        (OSError(errno.EIO, "Input/output error", "/mnt/x"), 1, "Input/output error: /mnt/x"),
    ],
)
def test_failures_during_a_run(exc, code, message, tmp_path, monkeypatch, capsys):
    """Ctrl-C, a full or read-only disk during training: one line, the right code, the way on."""
    import graphzoo.train

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(graphzoo.train, "run_training", fail)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.npz").write_bytes(b"")
    assert main([*RUN, "--out", str(tmp_path)]) == code
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(f"graphzoo run: error: {message}")
    assert "Traceback" not in err


def test_a_bug_still_raises():
    """Unknown exceptions are bugs: they keep their traceback."""
    assert describe(AttributeError("x"), "run")[1] is None


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("GRAPHZOO_DEBUG", "1")
    with pytest.raises(ValueError, match="seed must lie in"):
        main([*RUN, "--seed", "-1"])
    monkeypatch.delenv("GRAPHZOO_DEBUG")
    with pytest.raises(ValueError, match="seed must lie in"):
        main(["--debug", *RUN, "--seed", "-1"])
