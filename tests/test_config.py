"""RunConfig: YAML reading, conversion and the checks made before any work."""

from __future__ import annotations

import pytest

from graphzoo import ENERGIES
from graphzoo.config import RESUME_FREE_KEYS, RunConfig, config_diff, load_config, load_yaml
from graphzoo.energies._base import check_energy_params


def test_threads_is_a_result_key():
    # Features differ with the thread count (issue 11 #4): a resume or a grid cell must not mix them.
    assert "threads" not in RESUME_FREE_KEYS
    assert config_diff({"threads": 1}, {"threads": 2}) == ["threads: 1 -> 2"]
    assert config_diff({"progress": True}, {"progress": False}) == []


def test_duplicate_keys_are_refused_at_any_depth(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: x\nenergy_params:\n  alpha: 0.5\n  alpha: 0.9\n")
    with pytest.raises(ValueError, match=r"c.yaml, line 4, column 3: invalid YAML: duplicate key 'alpha'"):
        load_yaml(path)
    path.write_text("data: x\nenergy_params:\n  alpha: 0.5\nlr: 0.01\n")
    assert load_yaml(path) == {"data": "x", "energy_params": {"alpha": 0.5}, "lr": 0.01}


def test_yaml_never_builds_python_objects(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        load_config(path)


@pytest.mark.parametrize("energy", ENERGIES.names())
def test_every_energy_accepts_its_defaults_and_refuses_an_unknown_key(energy):
    check_energy_params(energy, {})
    with pytest.raises(ValueError, match=f"energy {energy!r} has no parameter 'bogus'"):
        check_energy_params(energy, {"bogus": 1})


def test_energy_values_are_checked_by_the_energy():
    RunConfig(data="x", energy_params={"alpha": 0.5}).validate()
    with pytest.raises(ValueError, match=r"energy_params for 'label_spreading': alpha must lie in \(0, 1\)"):
        RunConfig(data="x", energy_params={"alpha": 1.5}).validate()
    # a list depends on the data's classes: checked by name only here
    RunConfig(data="x", energy="poisson", energy_params={"class_priors": [0.2, 0.3, 0.5]}).validate()


def test_backbone_kwargs_are_checked_against_the_constructor():
    pytest.importorskip("torch")
    RunConfig(data="x", backbone_kwargs={"width": 4}).validate()
    with pytest.raises(ValueError, match="Did you mean 'width'"):
        RunConfig(data="x", backbone_kwargs={"widht": 4}).validate()
    with pytest.raises(ValueError, match="do not fit backbone 'small_cnn'"):
        RunConfig(data="x", backbone_kwargs={"width": -2}).validate()


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_range_names_the_key(seed):
    with pytest.raises(ValueError, match=r"seed must lie in \[0, 2\*\*32\)"):
        RunConfig(data="x", seed=seed).validate()


def test_run_flags_named_after_config_keys_override_the_file(tmp_path):
    import argparse

    from graphzoo import run

    (tmp_path / "c.yaml").write_text("data: x\nlabel_fraction: 0.5\nskip_corrupt: false\n")
    parser = argparse.ArgumentParser()
    run.add_arguments(parser)
    args = parser.parse_args(["--config", str(tmp_path / "c.yaml"), "--label-fraction", "0.1", "--skip-corrupt",
                              "--set", "label_fraction=0.3", "seed=4"])
    cfg = run.build_config(args)
    assert (cfg.label_fraction, cfg.skip_corrupt, cfg.seed) == (0.1, True, 4)  # flag > --set > file
    assert run.build_config(parser.parse_args(["--config", str(tmp_path / "c.yaml")])).skip_corrupt is False
