"""Simulated active labelling on fixed features: labels vs graph accuracy for each acquisition strategy.

Graph only, no retraining (so it is cheap): the kNN graph is built once over the features, then
for every strategy in ``graphzoo.acquisition.ACQUISITION`` and every seed
(``graphzoo.acquisition.simulate`` runs steps 2-3; the experiment grid's ``active:`` block runs
the same simulation):

1. start from ``--start`` random labels per class drawn from the training pool (the same start
   for every strategy of one seed);
2. ``--rounds`` times: run the graph step (the energy) on the labels so far, let the strategy
   pick ``--batch`` unlabelled training nodes, and reveal their labels from the hidden truth;
3. after each round, score the graph step's predictions on the test split (never labelled,
   never a candidate).

Prints one Markdown table: rows = number of labels, columns = strategies, cells = test accuracy
mean ± std over the seeds; then the accuracy of ``--reference-labels`` random labels (the same
start plus uniform random training nodes), the passive budget the active one is compared with.

Inputs
------
``--run RUN`` (its ``features.npy``, unless ``--features`` names another (N, d) file, its
``split.json``, the classes in ``predictions.csv``, and its graph settings from ``config.yaml``), or
by default synthetic data (``--synthetic moons`` or ``blobs``, a random 70/30 train/test split).

Examples
--------
    python bench/active_bench.py                                   # two moons, a few seconds
    python bench/active_bench.py --run runs/<name> --start 20 --rounds 5 --batch 40 \\
        --reference-labels 480 --seeds 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from graphzoo.acquisition import ACQUISITION, simulate, start_labels
from graphzoo.graph_step import build_graph, graph_step


def synthetic(kind: str, n: int, seed: int = 0):
    """(Z (n, 2 or 8), y (n,), split (n,) "train"/"test") of two moons or four overlapping blobs."""
    from sklearn.datasets import make_blobs, make_moons

    if kind == "moons":
        Z, y = make_moons(n, noise=0.15, random_state=seed)
    else:
        Z, y = make_blobs(n, n_features=8, centers=4, cluster_std=5.0, random_state=seed)
    split = np.where(np.random.default_rng(seed).random(n) < 0.7, "train", "test")
    return Z.astype(np.float32), y.astype(np.int64), split


def from_run(run: str, features: str | None):
    """Features, hidden truth, split and graph settings of a finished run."""
    from graphzoo.config import load_config
    from graphzoo.data import load_split
    from graphzoo.rundir import RunDir
    from graphzoo.suggest import read_predictions

    rd = RunDir(run)
    Z = np.load(features or rd.features)
    split = np.asarray(load_split(rd.split)["split"]).astype(str)
    names, _, y = read_predictions(rd)
    if len(Z) != len(y):
        raise SystemExit(f"{features or rd.features} has {len(Z)} rows but {rd.predictions} {len(y)}")
    cfg = load_config(rd.config)
    graph = dict(n_neighbors=cfg.n_neighbors, metric=cfg.graph_metric, energy=cfg.energy,
                 energy_params=cfg.energy_params)
    return Z, y, split, graph


def reference(W, y, split, lab0, n_labels, graph, seed) -> float:
    """Test accuracy with ``n_labels`` labels: ``lab0`` plus uniform random training nodes (passive)."""
    lab = lab0.copy()
    rest = np.flatnonzero((split == "train") & ~lab)
    lab[np.random.default_rng([seed, 999]).choice(rest, n_labels - lab.sum(), replace=False)] = True
    step = graph_step(None, np.where(lab, y, -1), energy=graph["energy"], energy_params=graph["energy_params"],
                      W=W, n_classes=int(y.max()) + 1)
    test = split == "test"
    return float((step.predictions[test] == y[test]).mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="a finished run folder: its split, classes and graph settings")
    ap.add_argument("--features", help="(N, d) .npy features (default: the run's features.npy)")
    ap.add_argument("--synthetic", default="moons", choices=["moons", "blobs"])
    ap.add_argument("--n", type=int, default=2000, help="synthetic: number of points")
    ap.add_argument("--start", type=int, default=2, help="random labels per class to start from")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=10, help="labels revealed per round")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--reference-labels", type=int, default=0, help="also score this many random labels")
    ap.add_argument("--strategies", nargs="*", default=None, help="default: all registered")
    args = ap.parse_args(argv)
    if args.run:
        Z, y, split, graph = from_run(args.run, args.features)
        source = f"{args.features or args.run} (features of the run; its split)"
    elif args.features:
        raise SystemExit("--features needs --run (the split and the hidden labels come from the run)")
    else:
        Z, y, split = synthetic(args.synthetic, args.n)
        graph = dict(n_neighbors=10, metric="euclidean", energy="label_spreading", energy_params={"alpha": 0.99})
        source = f"synthetic {args.synthetic}, n={args.n}"
    strategies = args.strategies or ACQUISITION.names()
    t0 = time.perf_counter()
    W = build_graph(Z, graph["n_neighbors"], graph["metric"])
    print(f"# {source}: N={len(Z)}, train pool {int((split == 'train').sum())}, test {int((split == 'test').sum())}; "
          f"{graph['energy']} {graph['energy_params']}, k={graph['n_neighbors']} {graph['metric']} "
          f"(graph {time.perf_counter() - t0:.1f} s)")
    cache: dict = {}  # per graph: the spectrum of model_change is computed once
    curves = {s: [] for s in strategies}
    ref, secs = [], {s: 0.0 for s in strategies}
    for seed in range(args.seeds):
        lab0 = start_labels(y, split == "train", args.start, np.random.default_rng(seed))
        for s in strategies:
            t = time.perf_counter()
            # an image without a truth (a partially labelled run) can be neither revealed nor scored
            curve = simulate(s, y, lab0, (split == "train") & (y >= 0), (split == "test") & (y >= 0), W=W, Z=Z,
                             rounds=args.rounds, batch=args.batch, energy=graph["energy"],
                             energy_params=graph["energy_params"], seed=seed, cache=cache)
            curves[s].append([(r.n_labels, r.accuracy) for r in curve])
            secs[s] += time.perf_counter() - t
        if args.reference_labels:
            ref.append(reference(W, y, split, lab0, args.reference_labels, graph, seed))
    print(f"\nTest accuracy (mean ± std over {args.seeds} seeds), {args.start} random labels per class, then "
          f"{args.rounds} rounds of {args.batch}:\n")
    print("| labels | " + " | ".join(strategies) + " |")
    print("|---:|" + "---:|" * len(strategies))
    for r in range(args.rounds + 1):
        cells = []
        for s in strategies:
            acc = np.array([c[r][1] for c in curves[s]])
            cells.append(f"{acc.mean():.4f} ± {acc.std():.4f}")
        print(f"| {curves[strategies[0]][0][r][0]} | " + " | ".join(cells) + " |")
    print("| time s (all seeds) | " + " | ".join(f"{secs[s]:.1f}" for s in strategies) + " |")
    if ref:
        print(f"\n{args.reference_labels} random labels (same start + uniform random): "
              f"{np.mean(ref):.4f} ± {np.std(ref):.4f}")


if __name__ == "__main__":
    main()
