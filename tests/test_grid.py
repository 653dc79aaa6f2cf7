"""Experiment grid: skip-on-rerun, appended results, identical splits across methods and baselines;
warm starts. The baselines themselves: tests/test_baselines.py; the aggregation: tests/test_aggregate.py."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from conftest import TINY_RUN, write_npz

from graphzoo.experiments import load_grid, plan_cells, read_results, run_grid
from graphzoo.experiments.grid import stale_cells


def write_grid(tmp_path, data, **kw):
    spec = {"name": "g", "out": str(tmp_path / "exp"), "set": {"data": str(data), **TINY_RUN}, "label_fractions": [0.3],
            "seeds": [0, 1],
            "methods": [{"mode": "one-pass", "energies": ["label_spreading", "poisson"]},
                        {"mode": "dynamic", "energies": ["label_spreading"], "set": {"epochs": 1}}],
            "baselines": ["supervised", "fully_supervised", "gcn", "sklearn_label_spreading"], "gcn": {"epochs": 30},
            "report": False}
    spec.update(kw)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def split_columns(run_dir):
    with open(run_dir / "split.csv") as fh:
        rows = list(csv.DictReader(fh))
    return [r["split"] for r in rows], [r["labelled"] for r in rows]


def test_grid_appends_skips_and_shares_splits(tmp_path, capsys):
    import io

    data = write_npz(tmp_path / "tiny.npz")
    spec = load_grid(write_grid(tmp_path, data))
    cells = plan_cells(spec)
    log = io.StringIO()
    records = run_grid(spec, log=log)
    assert len(records) == len(cells) == 14  # 2 seeds x (2 energies + dynamic + 3 graph baselines) + 2 fully supervised
    lines = spec.results_path.read_text().splitlines()
    assert len(lines) == len(cells) and [json.loads(x)["cell"] for x in lines] == [c.id for c in cells]
    assert log.getvalue().count("accuracy") == len(cells)  # one progress line per finished cell
    runs = [r for r in records if r["kind"] == "run"]  # pretrain=auto (the default) on a tiny set: none, recorded
    assert runs and all(r["config"]["pretrain"] == "auto" and r["pretrain_used"] == "" for r in runs)

    # identical splits: recorded hashes, and the run folders' own split files
    for seed in (0, 1):
        recs = [r for r in records if r["seed"] == seed]
        assert len({r["split_hash"] for r in recs}) == 1
        assert len({r["label_hash"] for r in recs if r["label_fraction"] == 0.3}) == 1
        full = next(r for r in recs if r["method"].startswith("fully_supervised"))
        assert full["label_hash"] != recs[0]["label_hash"]  # all labels, same partition
        op = split_columns(spec.folder / f"runs/op-small_cnn-label_spreading-lf0.3-s{seed}")
        dp = split_columns(spec.folder / f"runs/dp-small_cnn-label_spreading-lf0.3-s{seed}")
        fs = split_columns(spec.folder / f"runs/fully_supervised-small_cnn-lf1-s{seed}")
        assert op == dp and op[0] == fs[0] and set(fs[1][i] for i, s in enumerate(fs[0]) if s == "train") == {"1"}
    op_runs = [spec.folder / f"runs/op-small_cnn-label_spreading-lf0.3-s{seed}" for seed in (0, 1)]
    assert split_columns(op_runs[0]) != split_columns(op_runs[1])

    # the energy re-minimised on the One Pass features reproduces the run's own transductive result
    ls_run = next(r for r in records if r["cell"].startswith("op-small_cnn-label_spreading|") and r["seed"] == 0)
    assert ls_run["accuracy"] == pytest.approx(ls_run["test_transductive_accuracy"])
    sup = next(r for r in records if r["method"] == "supervised-small_cnn" and r["seed"] == 0)
    assert sup["accuracy"] == pytest.approx(ls_run["test_inductive_accuracy"])
    for r in records:
        assert 0 <= r["accuracy"] <= 1 and np.array(r["confusion"]).sum() == r["n_test"]

    # rerun: everything skipped, nothing appended
    log = io.StringIO()
    run_grid(load_grid(write_grid(tmp_path, data)), log=log)
    assert log.getvalue().count("done, skipped") == len(cells)
    assert len(spec.results_path.read_text().splitlines()) == len(cells)

    # a lost cell (its line removed) is the only one run again, and appended at the end
    lines = spec.results_path.read_text().splitlines()
    gone = json.loads(lines[4])["cell"]
    spec.results_path.write_text("\n".join(lines[:4] + lines[5:]) + "\n")
    log = io.StringIO()
    run_grid(load_grid(write_grid(tmp_path, data)), log=log)
    assert log.getvalue().count("done, skipped") == len(cells) - 1
    assert json.loads(spec.results_path.read_text().splitlines()[-1])["cell"] == gone

    # a changed method config is refused instead of silently reusing old cells
    changed = load_grid(write_grid(tmp_path, data, set={"data": str(data), **TINY_RUN, "lr": 0.01}))
    with pytest.raises(ValueError, match="another config"):
        run_grid(changed, log=io.StringIO())
    # every cell is stale: the runs by their config, the energies and baselines through their source run
    stale = stale_cells(plan_cells(changed), {r["cell"]: r for r in read_results(spec.results_path)})
    assert set(stale) == {c.id for c in cells}
    assert any("lr" in d[0] for d in stale.values()) and any("source run" in d[0] for d in stale.values())


def test_grid_spec_errors(tmp_path):
    data = write_npz(tmp_path / "tiny.npz", n=40)
    with pytest.raises(ValueError, match="decide the split"):
        load_grid(write_grid(tmp_path, data, methods=[{"mode": "one-pass", "set": {"seed": 3}}]))
    with pytest.raises(ValueError, match="Did you mean 'gcn'"):
        load_grid(write_grid(tmp_path, data, baselines=["gnc"]))
    with pytest.raises(ValueError, match="Did you mean 'seeds'"):
        load_grid(write_grid(tmp_path, data, seedz=[0]))
    with pytest.raises(ValueError, match="energy"):
        load_grid(write_grid(tmp_path, data, methods=[{"mode": "one-pass", "energies": ["lapalce_nope"]}]))


def test_dynamic_warm_start_from_one_pass_run(tmp_path):
    """``warm_start: one-pass``: the Dynamic Pass cell skips its warm-up and starts from the One Pass
    run's best network of the same fraction and seed (only the dynamic epochs run)."""
    import io

    import torch

    data = write_npz(tmp_path / "tiny.npz")
    methods = [{"mode": "one-pass", "energies": ["label_spreading"]},
               {"mode": "dynamic", "energies": ["label_spreading"], "set": {"epochs": 1}, "warm_start": "one-pass"}]
    spec = load_grid(write_grid(tmp_path, data, methods=methods, baselines=[], seeds=[0]))
    op, dp = plan_cells(spec)
    assert dp.source == op.id and dp.cfg.warmup_epochs == 0
    assert dp.cfg.pretrained == str(spec.folder / "runs" / op.cfg.name / "checkpoints" / "best.pt")
    records = run_grid(spec, log=io.StringIO())
    assert [r["cell"] for r in records] == [op.id, dp.id]
    hist = (spec.folder / "runs" / dp.cfg.name / "history.csv").read_text().splitlines()
    phases = [row.split(",")[hist[0].split(",").index("phase")] for row in hist[1:]]
    assert phases and set(phases) == {"dynamic"}  # no supervised warm-up epoch ran
    # the loaded backbone is the One Pass run's best one (checked on a conv weight before training)
    from graphzoo.models import create_backbone

    best = torch.load(dp.cfg.pretrained, weights_only=False)["model"]
    bb = create_backbone("small_cnn", in_chans=1, pretrained=dp.cfg.pretrained, width=4)
    name, w = next((k, v) for k, v in bb.state_dict().items() if v.ndim == 4)
    assert torch.equal(w, best["backbone." + name])

    # dynamic_last: the One Pass cells and baselines of every seed first, the costly dynamic ones after
    order = plan_cells(load_grid(write_grid(tmp_path, data, methods=methods, seeds=[0, 1], baselines=["gcn"],
                                            dynamic_last=True)))
    modes = [c.mode for c in order]
    assert modes.count("dynamic") == 2 and modes[-2:] == ["dynamic", "dynamic"]
    ids = [c.id for c in order]
    assert all(ids.index(c.source) < ids.index(c.id) for c in order if c.source)

    with pytest.raises(ValueError, match="no One Pass method"):
        load_grid(write_grid(tmp_path, data, methods=methods[1:]))
    with pytest.raises(ValueError, match="dynamic only"):
        load_grid(write_grid(tmp_path, data, methods=[{"mode": "one-pass", "warm_start": "one-pass"}]))


ACTIVE = {"strategies": ["random", "uncertainty", "model_change"], "start_per_class": 2, "rounds": 2, "batch": 4}


def test_active_block_adds_only_active_cells_and_configs_plan_as_before(tmp_path):
    """An ``active:`` block adds one cell per strategy at each (fraction, seed) after that pair's baselines,
    reading the One Pass run; every other cell (ids, order, sources) is exactly the plan without it, for
    the shipped experiment files too (the block removed, or added where absent)."""
    from pathlib import Path

    data = write_npz(tmp_path / "tiny.npz", n=40)
    plain = plan_cells(load_grid(write_grid(tmp_path, data)))
    with_active = plan_cells(load_grid(write_grid(tmp_path, data, active=ACTIVE)))
    act = [c for c in with_active if c.kind == "active"]
    assert [c.id for c in with_active if c.kind != "active"] == [c.id for c in plain]
    assert len(act) == 2 * 3 and {c.options["strategy"] for c in act} == set(ACTIVE["strategies"])
    op = {c.seed: c.id for c in plain if c.id.startswith("op-small_cnn-label_spreading|")}
    assert all(c.source == op[c.seed] and c.role == "active" for c in act)
    # no One Pass method with the baseline backbone and no baseline: a source run is planned for them
    only = plan_cells(load_grid(write_grid(tmp_path, data, methods=[], baselines=[], active=ACTIVE)))
    assert [c.role for c in only] == ["source", "active", "active", "active"] * 2
    for path in sorted(Path(__file__).parents[1].glob("configs/experiments/*.yaml")):
        spec = load_grid(path)
        cells = plan_cells(spec)
        spec.active = None
        without = plan_cells(spec)
        assert [(c.id, c.source) for c in cells if c.kind != "active"] == [(c.id, c.source) for c in without], path
        assert all(c.kind != "active" for c in without)


def test_active_block_errors(tmp_path):
    data = write_npz(tmp_path / "tiny.npz", n=40)
    for bad, match in (({"strategies": ["uncertanity"]}, "Did you mean 'uncertainty'"),
                       ({"rounds": 0}, r"active.rounds must be an integer ≥ 1"),
                       ({"batch": 2.5}, "active.batch"), ({"step": 3}, r"unknown key\(s\) \['step'\] in active"),
                       ([1, 2], "active must be a mapping")):
        with pytest.raises(ValueError, match=match):
            load_grid(write_grid(tmp_path, data, active=bad))
    with pytest.raises(ValueError, match="single-label task"):
        load_grid(write_grid(tmp_path, data, active=ACTIVE, set={"data": str(data), **TINY_RUN, "task": "multilabel"}))


def test_changed_energy_params_baseline_options_and_moved_folder_are_seen(tmp_path):
    """stale_cells sees a second energy's new parameters and a baseline's new options (their cells have no
    run config of their own), and not a warm start whose experiment folder was reached by another path."""
    import dataclasses

    from graphzoo.experiments.cells import cfg_fingerprint

    data = write_npz(tmp_path / "tiny.npz")
    methods = [{"mode": "one-pass", "energies": ["label_spreading", "poisson"]},
               {"mode": "dynamic", "energies": ["label_spreading"], "warm_start": "one-pass"}]
    old = plan_cells(load_grid(write_grid(tmp_path, data, methods=methods, seeds=[0])))
    by_id = {c.id: c for c in old}

    def record(c):
        if c.cfg is not None:
            return {"config": cfg_fingerprint(c.cfg)}
        if c.kind == "energy":
            src = by_id[c.source].cfg
            return {"config": cfg_fingerprint(dataclasses.replace(src, energy=c.energy,
                                                                  energy_params=dict(c.energy_params)))}
        return {"options": dict(c.options)} if c.options else {}

    done = {c.id: record(c) for c in old}
    assert stale_cells(old, done) == {}
    moved = plan_cells(load_grid(write_grid(tmp_path, data, methods=methods, seeds=[0]), out=str(tmp_path / "x")))
    assert stale_cells(moved, done) == {}  # the warm start's best.pt path moved with the folder: not a change
    methods[0]["energy_params"] = {"poisson": {"class_priors": "labelled"}}
    changed = plan_cells(load_grid(write_grid(tmp_path, data, methods=methods, seeds=[0], gcn={"epochs": 5})))
    stale = stale_cells(changed, done)
    assert any(k.startswith("op-") and "poisson" in k for k in stale), stale
    assert any(k.startswith("gcn-") for k in stale), stale


def test_a_half_written_line_does_not_swallow_the_next_record(tmp_path):
    from graphzoo.experiments.grid import _append_record

    path = tmp_path / "results.jsonl"
    path.write_text('{"cell": "a"}\n{"cell": "b", "acc')  # killed mid-line
    _append_record(path, {"cell": "c"})
    assert [r["cell"] for r in read_results(path)] == ["a", "c"]


def test_experiment_set_refuses_the_grid_keys(tmp_path):
    data = write_npz(tmp_path / "tiny.npz")
    with pytest.raises(ValueError, match="label fractions and seeds from"):
        load_grid(write_grid(tmp_path, data), overrides={"seed": "7"})


def test_supervised_pretrained_baseline_runs_at_each_fraction_from_the_grids_encoder(tmp_path):
    """``supervised_pretrained``: an own One Pass run per (fraction, seed), inductive, ψ from the encoder the
    grid's runs use (simclr unless the grid sets another); asked for by name, not in the default list."""
    data = write_npz(tmp_path / "tiny.npz")
    grid = dict(methods=[{"mode": "one-pass", "energies": ["label_spreading"]}], baselines=["supervised_pretrained"],
                seeds=[0], label_fractions=[0.3, 0.6])
    cells = [c for c in plan_cells(load_grid(write_grid(tmp_path, data, **grid)))
             if c.method.startswith("supervised_pretrained")]
    assert [c.label_fraction for c in cells] == [0.3, 0.6]
    assert all(c.cfg.pretrain == "simclr" and c.cfg.test_prediction == "inductive" for c in cells)
    spec = load_grid(write_grid(tmp_path, data, **grid), {"pretrain": "vicreg"})
    assert {c.cfg.pretrain for c in plan_cells(spec)} == {"vicreg"}
    from graphzoo.experiments.baselines import default_baselines

    assert "supervised_pretrained" not in default_baselines()
