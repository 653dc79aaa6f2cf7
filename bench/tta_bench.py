"""Test-time averaging on finished runs: test accuracy of the net and the graph with 1, 4 and 8 views.

For each run folder, its final network (the checkpoint the run evaluated) embeds every image three
ways — the image as it is, averaged over the default flips (identity, left-right, up-down, half turn:
what ``tta=true`` gives with the default ``hflip`` / ``vflip``), and over all 8 symmetries of the
square (``tta_views=dihedral``) — and each ψ gets the run's own graph step (energy, k, metric) with
the run's own labels. Nothing is trained, so the three columns differ only by the views. The first
column must reproduce the run's own metrics (checked: ``plain_matches``) when the run was made
without ``tta``.

Prints one JSON line per run: ``name {"plain": [net, graph], "flips4": [...], "dihedral8": [...],
"recorded": [net, graph], "plain_matches": bool, "s": seconds}``; ``--table`` prints mean ± std per
run-name prefix (the name without its ``-sS`` seed suffix) from such lines.

Examples
--------
    python bench/tta_bench.py OUT/new-0.01-s0 OUT/new-0.01-s1 OUT/new-0.01-s2 > /tmp/tta.jsonl
    python bench/tta_bench.py --table /tmp/tta.jsonl
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import time

import numpy as np
import torch

from graphzoo.config import load_config
from graphzoo.data import prepare_data
from graphzoo.data.torchdata import tta_views
from graphzoo.experiments.baselines import final_checkpoint
from graphzoo.graph_step import graph_step
from graphzoo.predict import load_model
from graphzoo.rundir import RunDir

VIEWS = {"plain": [(0, False)], "flips4": tta_views(True, True, False), "dihedral8": tta_views(True, True, True)}


def accuracies(run: str, images_cache: dict) -> dict:
    """``{views name: [net accuracy, graph accuracy]}`` on the run's test split, and the recorded pair."""
    t0 = time.perf_counter()
    cfg = load_config(RunDir(run).config)
    key = json.dumps(cfg.data_options(), sort_keys=True, default=str)
    if key not in images_cache:  # runs of one split share the prepared data
        images_cache[key] = prepare_data(**cfg.data_options())
    d = images_cache[key]
    if d.multilabel:
        raise ValueError(f"{run}: a multi-label run; this benchmark scores single-label accuracy")
    model, _, norm = load_model(run, final_checkpoint(run))
    y = np.where(d.graph_labels, d.targets, -1)
    test = np.flatnonzero(d.split == "test")
    out = {}
    for name, views in VIEWS.items():
        logits, Z = [], []
        with torch.no_grad():
            for b in torch.arange(len(d.images)).split(512):
                lg, z = model.infer(norm(d.images[b]), views)
                logits.append(lg.float())
                Z.append(z.float())
        logits, Z = torch.cat(logits).numpy(), torch.cat(Z).numpy()
        step = graph_step(Z, y, energy=cfg.energy, energy_params=cfg.energy_params, n_neighbors=cfg.n_neighbors,
                          metric=cfg.graph_metric, n_classes=int(d.n_outputs))
        out[name] = [round(float((logits[test].argmax(1) == d.targets[test]).mean()), 4),
                     round(float((step.proba[test].argmax(1) == d.targets[test]).mean()), 4)]
    m = RunDir(run).read_metrics()
    out["recorded"] = [round(m["test_inductive"]["accuracy"], 4), round(m["test_transductive"]["accuracy"], 4)]
    out["plain_matches"] = out["plain"] == out["recorded"]
    out["s"] = round(time.perf_counter() - t0)
    return out


def table(paths: list[str]) -> None:
    """Mean ± sample std over seeds per run-name prefix, and the mean change against "plain"."""
    rows = collections.defaultdict(dict)
    for path in paths:
        for line in open(path):
            name, payload = line.split(" ", 1)
            prefix, seed = name.rsplit("-s", 1)
            rows[prefix][int(seed)] = json.loads(payload)
    for prefix, by_seed in rows.items():
        seeds = sorted(by_seed)
        for views in VIEWS:
            for j, what in ((1, "graph"), (0, "net")):
                xs = [by_seed[s][views][j] for s in seeds]
                delta = [100 * (by_seed[s][views][j] - by_seed[s]["plain"][j]) for s in seeds]
                spread = f" ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else ""
                print(f"{prefix:16s} {views:9s} {what:5s} {statistics.mean(xs):.4f}{spread} "
                      f"({', '.join(f'{x:.4f}' for x in xs)})  change {statistics.mean(delta):+.2f} "
                      f"({', '.join(f'{x:+.2f}' for x in delta)}) points")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", help="finished run folders (or, with --table, files of this script's lines)")
    p.add_argument("--table", action="store_true", help="summarise saved output lines instead of running")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.table:
        table(args.runs)
        return 0
    torch.set_num_threads(args.threads)
    cache: dict = {}
    for run in args.runs:
        print(run.rstrip("/").split("/")[-1], json.dumps(accuracies(run, cache)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
