"""The published energy benchmark: every registered energy at 1 / 3 / 10 labels per class.

Sets (``--sets``; features are label-free, so each set's graph is built once and shared):

===============  ==============================================================================
``digits``       scikit-learn digits, 1,797 × 64, 10 classes; kNN k = 10, cosine
``moons0.1``     two moons, n = 2,000, noise 0.1 (``random_state=0``); k = 10, euclidean
``moons0.15``    the same with noise 0.15
``malaria``      ``features.npy`` of a finished graphzoo run (``--malaria RUN_DIR``), the run's
                 own k and metric; the true labels from its ``predictions.csv``
``chest``        the same for a ChestX-ray14 run (``--chest RUN_DIR``)
===============  ==============================================================================

Protocol: for each set, labels-per-class count and seed, one stratified draw of labelled nodes
(``numpy.random.default_rng([seed, per_class])``) is shared by every energy, all on the same graph
(:func:`graphzoo.graph_step.build_graph`), each through :func:`graphzoo.diffuse` with the energy's
defaults. Accuracy is measured on the unlabelled nodes. The table gives, per energy, the mean
accuracy over seeds, the worst seed, and the mean wall time of one solve (``diffuse`` only; the
kNN search is not counted). Warnings raised by a solve (iteration cap, degenerate answer) are
counted in the last column.

Peer (``--peers``, on when installed): ``graphlearning``'s ``gl.ssl.poisson_mbo`` on *our* graph
(``W`` passed to it) with the same class priors as ours (the labelled class frequencies), to check
our ``poisson_mbo`` against the reference implementation on identical input.

Runs' own labels (``--runs RUN ...``): instead of random draws, every energy on each finished run's
``features.npy`` with *that run's* labelled training images, scored on its test split — the
question "would another energy have done better on the features this run learnt?". One row per
run, one column per energy, and their mean; the run's own graph prediction is the first column
(the energy the run used must reproduce it).

Examples
--------
    python bench/energy_bench.py --quick
    python bench/energy_bench.py --sets digits moons0.1 moons0.15 --seeds 20 --out /tmp/energy.csv
    python bench/energy_bench.py --sets malaria chest --malaria runs/MAL --chest runs/CHEST --seeds 5
    python bench/energy_bench.py --table /tmp/energy.csv /tmp/energy_tv.csv   # one table from saved rows
    python bench/energy_bench.py --runs OUT/dp12-s0 OUT/dp12-s1 OUT/dp12-s2 --energies label_spreading poisson
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from graphzoo.energies import ENERGIES, diffuse
from graphzoo.graph_step import build_graph

SYNTHETIC = ("digits", "moons0.1", "moons0.15")
FROM_RUNS = ("malaria", "chest")
PEER = "graphlearning poisson_mbo"


def load_set(name: str, run: str | None = None, quick: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """Features (n, d) float32, true classes (n,) int64 and graph settings ``{n_neighbors, metric}``."""
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        n = 400 if quick else len(y)
        return X[:n].astype(np.float32), y[:n].astype(np.int64), {"n_neighbors": 10, "metric": "cosine"}
    if name.startswith("moons"):
        from sklearn.datasets import make_moons

        X, y = make_moons(300 if quick else 2000, noise=float(name[len("moons"):]), random_state=0)
        return X.astype(np.float32), y.astype(np.int64), {"n_neighbors": 10, "metric": "euclidean"}
    if name in FROM_RUNS:
        if run is None:
            raise SystemExit(f"set {name!r} needs --{name} RUN_DIR (a finished graphzoo run with features.npy)")
        return load_run(run)
    raise SystemExit(f"unknown set {name!r}; choose from {', '.join(SYNTHETIC + FROM_RUNS)}")


def load_run(run: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """``features.npy``, true classes and the graph settings of a finished multiclass run."""
    from graphzoo.config import load_config
    from graphzoo.rundir import RunDir
    from graphzoo.suggest import read_predictions

    rd = RunDir(run)
    for path in (rd.features, rd.predictions, rd.config):
        if not path.is_file():
            raise SystemExit(f"{path} is missing: {rd} is not a finished graphzoo run")
    Z = np.load(rd.features).astype(np.float32)
    _, _, y = read_predictions(rd)
    if len(Z) != len(y) or (y < 0).any():
        raise SystemExit(f"{rd}: features.npy has {len(Z)} rows, predictions.csv {len(y)} (some without a class)")
    cfg = load_config(rd.config)
    return Z, y, {"n_neighbors": cfg.n_neighbors, "metric": cfg.graph_metric}


def run_labels(run: str, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A finished run's labelled training images as ``y`` (their class in ``truth``, from :func:`load_run`;
    -1 elsewhere), its test mask and its own graph prediction (class index, ``pred_graph`` of
    ``predictions.csv``), all (n,) in ``features.npy``'s row order."""
    import csv

    from graphzoo.rundir import RunDir

    with open(RunDir(run).predictions, newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = [h[len("prob_"):] for h in rows[0] if h.startswith("prob_")]  # the class order of ``truth``
    labelled = np.array([r["labelled"] == "1" and r["split"] == "train" for r in rows])
    test = np.array([r["split"] == "test" for r in rows])
    if not test.any() or not labelled.any():
        raise SystemExit(f"{run}: needs labelled training images and a test split (a research run on a labelled set)")
    own = np.array([names.index(r["pred_graph"]) for r in rows])
    return np.where(labelled, truth, -1), test, own


def bench_runs(runs: list[str], energies, log=None) -> str:
    """The ``--runs`` table: per run, test accuracy of its own graph prediction and of every energy solved on
    its features and graph settings with its own labelled training images; a mean row at the end."""
    cols = ["run's graph", *energies]
    lines = ["| run | labelled | test images | " + " | ".join(cols) + " |", "|---|---:|---:|" + "---:|" * len(cols)]
    accs = []
    for run in runs:
        Z, truth, graph = load_run(run)
        y, test, own = run_labels(run, truth)
        W = build_graph(Z, **graph)
        acc = [float((own[test] == truth[test]).mean())]
        for energy in energies:
            pred, seconds, warned = solve(W, y, int(truth.max()) + 1, energy)
            acc.append(float((pred[test] == truth[test]).mean()))
            if log:
                print(f"  {run} {energy:<26s} acc {acc[-1]:.4f} {seconds:.3f} s {'+'.join(warned)}", file=log,
                      flush=True)
        accs.append(acc)
        lines.append(f"| {Path(run).name} | {int((y >= 0).sum())} | {int(test.sum())} | "
                     + " | ".join(f"{a:.4f}" for a in acc) + " |")
    mean = np.mean(accs, axis=0)
    lines.append(f"| mean of {len(runs)} | | | " + " | ".join(f"{a:.4f}" for a in mean) + " |")
    return "\n".join(lines)


def draw_labels(truth: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` random labelled nodes of every class (-1 elsewhere); one draw per (seed, per_class)."""
    rng = np.random.default_rng([seed, per_class])
    y = np.full(len(truth), -1, dtype=np.int64)
    for c in np.unique(truth):
        y[rng.choice(np.flatnonzero(truth == c), per_class, replace=False)] = c
    return y


def solve(W, y: np.ndarray, n_classes: int, energy: str) -> tuple[np.ndarray, float, list[str]]:
    """Predictions (n,), seconds and names of the warnings of one solve (an energy or the peer)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        if energy == PEER:
            import graphlearning as gl

            lab = np.flatnonzero(y >= 0)
            priors = np.bincount(y[lab], minlength=n_classes) / len(lab)
            pred = gl.ssl.poisson_mbo(W.astype(np.float64), priors).fit_predict(lab, y[lab])
        else:
            pred = diffuse(W, y, energy, n_classes).scores.argmax(1)
        seconds = time.perf_counter() - t0
    names = sorted({type(w.message).__name__ for w in caught if not issubclass(w.category, DeprecationWarning)})
    return np.asarray(pred), seconds, names


def bench_set(W, truth: np.ndarray, energies, labels_per_class, seeds, set_name: str = "", log=None) -> list[dict]:
    """One row per (energy, labels per class, seed): accuracy on the unlabelled nodes and solve time.

    Every energy sees the same graph ``W`` and, for a given (labels per class, seed), the same
    labelled nodes.
    """
    n_classes = int(truth.max()) + 1
    rows = []
    for per_class in labels_per_class:
        for seed in seeds:
            y = draw_labels(truth, per_class, seed)
            unl = y < 0
            for energy in energies:
                pred, seconds, warned = solve(W, y, n_classes, energy)
                acc = float((pred[unl] == truth[unl]).mean())
                rows.append({"set": set_name, "energy": energy, "labels_per_class": per_class, "seed": seed,
                             "accuracy": acc, "seconds": seconds, "warnings": "+".join(warned)})
                if log:
                    print(f"  {set_name} {per_class}/class seed {seed} {energy:<26s} acc {acc:.4f} {seconds:.3f} s",
                          file=log, flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean accuracy, worst seed, mean seconds and warned solves per (set, labels per class, energy)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["set"], r["labels_per_class"], r["energy"]), []).append(r)
    out = []
    for (set_name, per_class, energy), rs in groups.items():
        acc = np.array([r["accuracy"] for r in rs])
        out.append({"set": set_name, "labels_per_class": per_class, "energy": energy, "seeds": len(rs),
                    "mean": float(acc.mean()), "worst": float(acc.min()),
                    "seconds": float(np.mean([r["seconds"] for r in rs])),
                    "warned": sum(bool(r["warnings"]) for r in rs),
                    "warnings": "+".join(sorted({w for r in rs for w in r["warnings"].split("+") if w}))})
    return out


def markdown(summary: list[dict]) -> str:
    """The published table: one row per (set, labels per class, energy); the best mean in bold."""
    lines = ["| set | labels/class | energy | seeds | mean acc | worst seed | s / solve | warned |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    best: dict[tuple, float] = {}
    for s in summary:
        key = (s["set"], s["labels_per_class"])
        best[key] = max(best.get(key, -1.0), s["mean"])
    for s in summary:
        mean = f"{s['mean']:.4f}"
        if s["mean"] == best[(s["set"], s["labels_per_class"])]:
            mean = f"**{mean}**"
        warned = f"{s['warned']} ({s['warnings']})" if s["warned"] else "–"
        lines.append(f"| {s['set']} | {s['labels_per_class']} | {s['energy']} | {s['seeds']} | {mean} | "
                     f"{s['worst']:.4f} | {s['seconds']:.3f} | {warned} |")
    return "\n".join(lines)


def write_rows(rows: list[dict], path: str) -> None:
    """Per-solve rows as CSV (``.csv``) or JSON lines (anything else)."""
    if path.endswith(".csv"):
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_rows(path: str) -> list[dict]:
    """Rows written by ``--out`` (CSV or JSON lines), with their numbers as numbers."""
    if path.endswith(".csv"):
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        for r in rows:
            r.update(labels_per_class=int(r["labels_per_class"]), seed=int(r["seed"]),
                     accuracy=float(r["accuracy"]), seconds=float(r["seconds"]))
        return rows
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def peer_available() -> bool:
    try:
        import graphlearning  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", nargs="+", default=None, help=f"default: {' '.join(SYNTHETIC)} (+ malaria / chest "
                                                             "when their run is given)")
    p.add_argument("--malaria", help="run folder whose features.npy holds the malaria cells' features")
    p.add_argument("--chest", help="run folder whose features.npy holds the ChestX-ray14 subset's features")
    p.add_argument("--labels", type=int, nargs="+", default=[1, 3, 10], help="labels per class")
    p.add_argument("--seeds", type=int, default=20, help="seeds 0 .. N-1")
    p.add_argument("--energies", nargs="+", default=None, help="default: every registered energy")
    p.add_argument("--peers", choices=("auto", "yes", "no"), default="auto",
                   help="graphlearning's poisson_mbo on our graph (auto: when installed, not with --quick)")
    p.add_argument("--quick", action="store_true", help="smoke test: small sets, 2 seeds, 1 label per class")
    p.add_argument("--out", help="write every solve as a row: .csv, or JSON lines otherwise")
    p.add_argument("--table", nargs="+", metavar="ROWS", help="only reprint the table of rows saved by --out runs")
    p.add_argument("--runs", nargs="+", metavar="RUN",
                   help="instead: every energy on these finished runs' features with their own labels, test split")
    args = p.parse_args(argv)
    if args.table:
        print(markdown(summarise([r for path in args.table for r in read_rows(path)])))
        return 0

    sets = args.sets or list(SYNTHETIC) + [s for s in FROM_RUNS if getattr(args, s)]
    energies = args.energies or ENERGIES.names()
    unknown = [e for e in energies if e not in ENERGIES.names()]
    if unknown:
        raise SystemExit(f"unknown energies {unknown}; registered: {', '.join(ENERGIES.names())}")
    if args.peers == "yes" or (args.peers == "auto" and not args.quick and peer_available()):
        energies = list(energies) + [PEER]
    if args.runs:
        print(bench_runs(args.runs, energies, log=sys.stderr))
        return 0
    labels, seeds = ([1], range(2)) if args.quick else (args.labels, range(args.seeds))

    rows = []
    for name in sets:
        Z, truth, graph = load_set(name, getattr(args, name, None) if name in FROM_RUNS else None, args.quick)
        t0 = time.perf_counter()
        W = build_graph(Z, **graph)
        print(f"{name}: n={len(truth)}, d={Z.shape[1]}, {truth.max() + 1} classes, k={graph['n_neighbors']} "
              f"{graph['metric']}, graph in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        rows += bench_set(W, truth, energies, labels, seeds, name, log=sys.stderr)
    if args.out:
        write_rows(rows, args.out)
    print(markdown(summarise(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
