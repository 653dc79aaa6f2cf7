"""``graphzoo run``: train and evaluate the hybrid model; writes ``runs/<name>/``.

Examples
--------
graphzoo run --config configs/malaria.yaml --set mode=dynamic label_fraction=0.01
graphzoo run --data ../shared/data/malaria/malaria_50_gray.npz --label-fraction 0.05 --epochs 20
graphzoo run --data FOLDER --labels labels.csv --label-fraction 1   # a partially labelled folder
graphzoo run --data FOLDER --labels labels.csv --label-fraction 1 --no-holdout   # production: every label trains
graphzoo run --init-from runs/x                         # continue runs/x with its labels.csv -> runs/x-r2
graphzoo run --config configs/demo.yaml --resume        # continue a killed run
graphzoo run --config configs/demo.yaml --overwrite     # start the run in that folder again
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import sys
from pathlib import Path

from .config import RunConfig, load_config, parse_set
from .rundir import RunDir

_CONFIG_KEYS = {f.name for f in dataclasses.fields(RunConfig)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Flags whose dest is a RunConfig key override it (everything else through --set key=value).
    parser.add_argument("--config", help="YAML config (see configs/); flags and --set override it")
    parser.add_argument("--data", help="dataset path (any format the readers detect)")
    parser.add_argument("--labels", help="path,label CSV: the labels of a --data folder of plain images (paths "
                        "relative to it; an empty label or no row: unlabelled), or labels added to a source that has "
                        "its own (npz with -1, class folders; rows by file name or #index); with --init-from: the "
                        "new labels")
    parser.add_argument("--init-from", metavar="RUN",
                        help="continue the finished run RUN: its settings, split and final weights, plus the new "
                        "labels of --labels or RUN/labels.csv; writes a new folder (RUN's name + -r2, -r3, ...)")
    parser.add_argument("--no-holdout", dest="holdout", action="store_false", default=None,
                        help="production: no test split, every label trains; quality estimated by 5-fold "
                        "cross-validation of the graph step on the labels")
    parser.add_argument("--label-fraction", type=float, help="share of training images whose label is used")
    parser.add_argument("--backbone", help="feature extractor (graphzoo list shows them)")
    parser.add_argument("--energy", help="graph energy (graphzoo list shows them)")
    parser.add_argument("--mode", choices=["one-pass", "dynamic"])
    parser.add_argument("--epochs", type=int, help="One Pass: max supervised epochs; Dynamic Pass: dynamic epochs")
    parser.add_argument("--pretrain", metavar="NAME|none|auto",
                        help="start ψ from a self-supervised encoder pretrained on every training image "
                        "(simclr, vicreg, autoencoder; cached and reused, see graphzoo pretrain), or none; "
                        "default auto: simclr when the training split holds at least 5,000 images (on a CPU: and "
                        "pretraining reads at most 1e9 pixel values), else none")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", help="parent folder of the run folder (default runs)")
    parser.add_argument("--name", help="run folder name (default derived from the config)")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's choice); a result key: results depend on it")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--skip-corrupt", action="store_true", default=None,
                        help="leave out images that cannot be decoded (each one named) instead of stopping")
    parser.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=[], action="extend",
                        help="override any config key, e.g. --set warmup_epochs=20 energy_params='{alpha: 0.9}'")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    again.add_argument("--overwrite", action="store_true",
                       help="delete the run already in the run folder (finished or not) and start it again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_config(args: argparse.Namespace) -> RunConfig:
    """The validated config: ``--config`` file, then ``--set``, then the flags named after config keys
    (with ``--init-from``: :func:`continue_config`)."""
    overrides = parse_set(args.set)
    overrides.update({k: v for k, v in vars(args).items() if k in _CONFIG_KEYS and v is not None})
    if args.no_progress:
        overrides["progress"] = False
    if getattr(args, "init_from", None):
        return continue_config(args, overrides)
    cfg = load_config(args.config, overrides)
    for key in ("data", "labels"):
        value = getattr(cfg, key)
        if value and Path(value).exists():
            # the resolved config records where the data was, independent of the cwd
            cfg = dataclasses.replace(cfg, **{key: str(Path(value).resolve())})
    return cfg.validate()


# What a continued run must share with the run it continues: the images, the split and the label budget (so
# that no test image of the first run trains the second), and the network the weights are for.
KEPT_ON_INIT = ("data", "data_format", "task", "split", "split_fractions", "label_fraction", "labels_per_class",
                "val_labels", "seed", "labels", "class_names", "unlabelled_dirs", "holdout", "add_labels",
                "backbone", "backbone_kwargs", "in_chans", "reader_options")


def next_round_name(run: Path, out: Path) -> str:
    """``NAME-r2``, ``-r3``, ...: the first free folder in ``out`` (a ``-rK`` ending of ``run``'s name counts)."""
    base = re.sub(r"-r[0-9]+$", "", run.name)
    k = 2
    while (out / f"{base}-r{k}").exists() or f"{base}-r{k}" == run.name:
        k += 1
    return f"{base}-r{k}"


def continue_config(args: argparse.Namespace, overrides: dict) -> RunConfig:
    """The config of ``graphzoo run --init-from RUN``: RUN's config.yaml, then the command line's settings.

    The new run starts ψ from RUN's final weights (``pretrained=RUN/checkpoints/<final_model>.pt``; the head is
    new), keeps RUN's split (:data:`KEPT_ON_INIT` may not change; added labels do not redraw it,
    :func:`graphzoo.data.prepare_data`'s ``add_labels``) and adds the labels of ``--labels`` or, without it,
    ``RUN/labels.csv`` (``graphzoo label``'s file). Its folder is new: never RUN's.
    """
    from .config import apply_overrides

    rd = RunDir(args.init_from)
    if not rd.config.is_file():
        raise FileNotFoundError(f"--init-from {rd}: not a graphzoo run folder (no config.yaml); give a run folder")
    if args.config or args.resume:
        raise ValueError("--init-from takes its settings from the run it continues: drop --config / --resume "
                         "(a killed continued run resumes with graphzoo run --config RUN-r2/config.yaml --resume)")
    which = rd.read_metrics().get("final_model", "best")  # refuses an unfinished run, saying how to finish it
    weights = rd.checkpoint("last" if which == "last" else "best")
    if not weights.is_file():
        raise FileNotFoundError(f"--init-from {rd}: {weights} is missing; the run's final weights are needed")
    base = load_config(rd.config)
    new = {k: v for k, v in overrides.items() if k != "labels"}
    if new.get("data") and Path(new["data"]).exists():  # the same data given by another path is the same data
        new["data"] = str(Path(new["data"]).resolve())
    changed = [k for k in KEPT_ON_INIT if k in new and getattr(apply_overrides(base, {k: new[k]}), k) != getattr(
        base, k)]
    if changed:
        raise ValueError(f"--init-from keeps {rd.name}'s {', '.join(changed)} (its split and network); drop "
                         "those settings, or start a new run without --init-from")
    labels = overrides.get("labels") or (str(rd.labels) if rd.labels.is_file() else "")
    if labels and not Path(labels).is_file():
        raise FileNotFoundError(f"--labels {labels}: no such file; give the labels CSV to add")
    out = Path(new.get("out") or rd.path.parent)
    name = new.get("name") or next_round_name(rd.path, out)
    if (out / name).resolve() == rd.path.resolve():
        raise ValueError(f"--init-from never writes into the run it continues ({rd}); choose another --name")
    args.new_labels = str(Path(labels).resolve()) if labels else ""  # for the start line
    added = list(base.add_labels) + ([args.new_labels] if labels else [])
    cfg = apply_overrides(base, {**new, "out": str(out), "name": name, "pretrained": str(weights.resolve()),
                                 "init_from": str(rd.path.resolve()), "add_labels": list(dict.fromkeys(added))},
                          source="--init-from")
    return cfg.validate()


def keep_added_labels(cfg: RunConfig, rundir: RunDir, labels: str) -> RunConfig:
    """Copy the labels file a ``--init-from`` run adds into its folder (:attr:`RunDir.added_labels`) and name the
    copy in its config instead of ``labels``: the original (often the previous run's labels.csv, which
    ``graphzoo label`` keeps writing) may change after the run starts, and a resumed or repeated run must read the
    labels this one trained on. Returns the config with the copy in ``add_labels``."""
    from .config import apply_overrides

    rundir.path.mkdir(parents=True, exist_ok=True)
    tmp = rundir.added_labels.with_name(rundir.added_labels.name + ".tmp")
    shutil.copyfile(labels, tmp)
    os.replace(tmp, rundir.added_labels)  # atomic: a kill leaves the old copy or the new one, never half of one
    copy = str(rundir.added_labels.resolve())
    added = [copy if a == labels else a for a in cfg.add_labels]
    return apply_overrides(cfg, {"add_labels": added}, source="--init-from")


def check_destination(path: Path) -> None:
    """Refuse a run folder that cannot be created: a file on the way, or a folder we may not write to."""
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{parent} is a file, but the run folder {path} must go below it: choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write to {parent} (read-only or not yours): choose another --out")


def clear_run(rundir: RunDir) -> list[Path]:
    """Delete the files a run writes in ``rundir`` (nothing else); return the paths removed.

    ``metrics.json`` goes first: should the deletion be interrupted, the folder no longer claims a
    finished run. Files the run does not write (a report, notes of yours) are kept.
    """
    files = [rundir.metrics, rundir.config, rundir.split, rundir.split_csv, rundir.history, rundir.predictions,
             rundir.features, rundir.added_labels, rundir.checkpoint("best"), rundir.checkpoint("last")]
    if rundir.checkpoints.is_dir():
        files += sorted(rundir.checkpoints.glob("*.pt.tmp"))  # left by a kill during a save
    removed = [f for f in files if f.is_file()]
    for f in removed:
        f.unlink()
    if rundir.checkpoints.is_dir() and not any(rundir.checkpoints.iterdir()):
        rundir.checkpoints.rmdir()
    return removed


def main(args: argparse.Namespace) -> int:
    cfg = build_config(args)  # every value checked before any data is read or model built
    from . import distributed
    from .train import default_run_name, run_training

    if not Path(cfg.data).exists():  # said before the destination line, not after it
        raise FileNotFoundError(f"data {cfg.data} does not exist: check the path (--data, or data: in the config)")
    device = distributed.init(cfg.device)  # under torchrun: joins the process group; files by rank 0 only
    main_rank = distributed.is_main()
    say = print if main_rank else (lambda *a, **k: None)  # noqa: E731
    rundir = RunDir(Path(cfg.out) / (cfg.name or default_run_name(cfg)))
    check_destination(rundir.path)
    if args.overwrite and rundir.path.is_dir():
        distributed.barrier()  # every rank has looked at the folder before rank 0 clears it
        if main_rank:
            state = "finished" if rundir.finished else "unfinished"
            removed = clear_run(rundir)
            if removed:
                say(f"--overwrite: removed the {state} run in {rundir} ({len(removed)} files)", file=sys.stderr)
        distributed.barrier()
    world = distributed.world_size()
    where = f"{world} processes (torchrun), {device.type}" if world > 1 else str(device)
    say(f"run {rundir.name}: mode={cfg.mode} backbone={cfg.backbone} energy={cfg.energy} on {where} -> {rundir}",
        file=sys.stderr)
    if cfg.init_from and getattr(args, "new_labels", "") and not args.resume:
        if main_rank:
            cfg = keep_added_labels(cfg, rundir, args.new_labels)
        distributed.barrier()
        cfg = distributed.on_main(lambda: cfg)  # the config naming the copy, on every rank
    if cfg.init_from:
        added = getattr(args, "new_labels", "") or "none (no --labels, and no labels.csv in the run)"
        say(f"--init-from {cfg.init_from}: same split and settings; backbone weights from {cfg.pretrained} "
            f"(the classifier head starts afresh); labels added: {added}", file=sys.stderr)
    try:
        metrics = run_training(cfg, resume=args.resume).metrics
    except FloatingPointError as exc:
        say(f"graphzoo run: stopped: {exc}", file=sys.stderr)
        return 3
    keys = ("accuracy", "balanced_accuracy", "auc", "test_prediction", "n_labelled_train", "n_test",
            "n_unlabelled_source", "wall_time_s")
    summary = {k: metrics.get(k) for k in keys}
    summary["inductive_accuracy"] = metrics["test_inductive"].get("accuracy")
    summary["transductive_accuracy"] = metrics["test_transductive"].get("accuracy")
    if "cross_validation" in metrics:
        summary["cv_accuracy"] = metrics["cross_validation"].get("accuracy")
    say(json.dumps(summary))
    return 0
