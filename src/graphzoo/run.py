"""``graphzoo run``: train and evaluate the hybrid model; writes ``runs/<name>/``.

Examples
--------
graphzoo run --config configs/malaria.yaml --set mode=dynamic label_fraction=0.01
graphzoo run --data ../shared/data/malaria/malaria_50_gray.npz --label-fraction 0.05 --epochs 20
graphzoo run --config configs/demo.yaml --resume        # continue a killed run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .config import load_config, parse_set

# flag -> config key, for the common choices (everything else through --set key=value)
FLAGS = {
    "data": "data",
    "label_fraction": "label_fraction",
    "backbone": "backbone",
    "energy": "energy",
    "mode": "mode",
    "epochs": "epochs",
    "seed": "seed",
    "out": "out",
    "name": "name",
    "threads": "threads",
    "device": "device",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config (see configs/); flags and --set override it")
    parser.add_argument("--data", help="dataset path (any format the readers detect)")
    parser.add_argument("--label-fraction", type=float, help="share of training images whose label is used")
    parser.add_argument("--backbone", help="feature extractor (graphzoo list shows them)")
    parser.add_argument("--energy", help="graph energy (graphzoo list shows them)")
    parser.add_argument("--mode", choices=["one-pass", "dynamic"])
    parser.add_argument("--epochs", type=int, help="One Pass: max supervised epochs; Dynamic Pass: dynamic epochs")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--out", help="parent folder of the run folder (default runs)")
    parser.add_argument("--name", help="run folder name (default derived from the config)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=[], action="extend",
                        help="override any config key, e.g. --set warmup_epochs=20 energy_params='{alpha: 0.9}'")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_config(args: argparse.Namespace):
    overrides = parse_set(args.set)
    for flag, key in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    if args.no_progress:
        overrides["progress"] = False
    cfg = load_config(args.config, overrides)
    if cfg.data and Path(cfg.data).exists():
        # the resolved config records where the data was, independent of the cwd
        cfg = dataclasses.replace(cfg, data=str(Path(cfg.data).resolve()))
    return cfg.validate()


def main(args: argparse.Namespace) -> int:
    cfg = build_config(args)  # every value checked before any data is read or model built
    from .train import Trainer, default_run_name, run_training

    Trainer(cfg, resume=args.resume)  # refuses an existing run folder (or a changed config) before anything is read
    print(f"run: mode={cfg.mode} backbone={cfg.backbone} energy={cfg.energy} -> {Path(cfg.out) / (cfg.name or default_run_name(cfg))}",
          file=sys.stderr)
    try:
        metrics = run_training(cfg, resume=args.resume).metrics
    except FloatingPointError as exc:
        print(f"graphzoo run: stopped: {exc}", file=sys.stderr)
        return 3
    summary = {k: metrics.get(k) for k in ("accuracy", "balanced_accuracy", "auc", "test_prediction", "n_labelled_train", "n_test", "wall_time_s")}
    summary["inductive_accuracy"] = metrics["test_inductive"].get("accuracy")
    summary["transductive_accuracy"] = metrics["test_transductive"].get("accuracy")
    print(json.dumps(summary))
    return 0
