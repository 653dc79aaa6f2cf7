"""Accuracy of every registered energy on the real NIH malaria cells (27,558 cells, 50×50 gray).

Pipeline (no deep features, so it runs in about a minute on 2 cores):
standardise each pixel over the data set -> PCA (``--n-components``, default 50) ->
``graphzoo.knn_graph`` (k = 50, cosine, LP-DeepSSL's cos³ weights, W + Wᵀ) -> ``graphzoo.diffuse``
with each energy. Labels: a stratified random ``rate`` of each class (1 %, 5 %, 20 %), drawn with
seeds 0, 1, 2; accuracy is measured on the unlabelled cells only and reported as mean ± std
(population std over the seeds). A supervised baseline trained on the labelled cells alone
(logistic regression on the same PCA features) gives the reference a graph has to beat.

The features and the graph are label-free, so they are built once and shared by every rate and
seed; only the labelled set changes.

Data: ``../shared/data/malaria/malaria_50_gray.npz`` relative to the repository root, or
``$GRAPHZOO_DATA/malaria/malaria_50_gray.npz``.

Examples
--------
    python bench/malaria_energies.py                          # PCA-50 features, all energies
    python bench/malaria_energies.py --features pixels        # raw standardised pixels (d = 2500)
    python bench/malaria_energies.py --energies poisson laplace --rates 0.01 --seeds 0
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import graphzoo
from graph_bench import sample_labels  # bench/ is on sys.path when a script of it runs
from graphzoo import ENERGIES

try:  # registers "tv_ratio" even where graphzoo.energies does not import it (yet)
    import graphzoo.energies.tv_ratio  # noqa: F401
except ImportError:
    pass

REPO = Path(__file__).resolve().parents[1]


def data_path() -> Path:
    root = Path(os.environ.get("GRAPHZOO_DATA", REPO / ".." / "shared" / "data"))
    return root / "malaria" / "malaria_50_gray.npz"


def load_features(kind: str, n_components: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Return (features float32 (n, d), labels int64 (n,)) for all 27,558 cells."""
    path = data_path()
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; set GRAPHZOO_DATA to the folder holding malaria/")
    d = np.load(path)
    X = d["images"].reshape(len(d["images"]), -1).astype(np.float32)
    y = d["labels"].astype(np.int64)
    X = StandardScaler().fit_transform(X).astype(np.float32)
    if kind == "pca":
        X = PCA(n_components=n_components, random_state=seed).fit_transform(X).astype(np.float32)
    return X, y


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--features", choices=("pca", "pixels"), default="pca")
    p.add_argument("--n-components", type=int, default=50)
    p.add_argument("--n-neighbors", type=int, default=50)
    p.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.05, 0.20])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--energies", nargs="+", default=None, help="default: every registered energy")
    p.add_argument("--no-baseline", action="store_true", help="skip the labelled-only logistic regression")
    args = p.parse_args(argv)
    energies = args.energies or ENERGIES.names()

    t0 = time.perf_counter()
    X, y = load_features(args.features, args.n_components)
    t_feat = time.perf_counter() - t0
    t0 = time.perf_counter()
    W = graphzoo.knn_graph(X, args.n_neighbors, metric="cosine")
    t_graph = time.perf_counter() - t0
    print(f"features {args.features} {X.shape} in {t_feat:.1f} s; graph k={args.n_neighbors} "
          f"nnz={W.nnz} in {t_graph:.1f} s", file=sys.stderr, flush=True)

    acc: dict[str, dict[float, list[float]]] = {}
    secs: dict[str, list[float]] = {}
    notes: dict[str, set[str]] = {}
    rows = list(energies) + ([] if args.no_baseline else ["logreg (labelled only)"])
    for rate in args.rates:
        for seed in args.seeds:
            lab = sample_labels(y, rate, seed)
            unl = ~lab
            y_lab = np.where(lab, y, -1)
            for name in rows:
                t0 = time.perf_counter()
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    if name.startswith("logreg"):
                        pred = LogisticRegression(max_iter=2000).fit(X[lab], y[lab]).predict(X)
                    else:
                        pred = graphzoo.diffuse(W, y_lab, name).scores.argmax(1)
                dt = time.perf_counter() - t0
                a = float((pred[unl] == y[unl]).mean())
                acc.setdefault(name, {}).setdefault(rate, []).append(a)
                secs.setdefault(name, []).append(dt)
                for w in caught:
                    notes.setdefault(name, set()).add(type(w.message).__name__)
                print(f"  rate {rate:g} seed {seed} {name:<24s} acc {a:.4f}  {dt:.2f} s",
                      file=sys.stderr, flush=True)

    n_lab = {r: int(sample_labels(y, r, 0).sum()) for r in args.rates}
    if args.features == "pca":
        desc = f"PCA-{args.n_components} of standardised pixels"
    else:
        desc = "standardised pixels (2500-d)"
    print(f"\nMalaria cells (n={len(y)}, 2 classes), features: {desc}; kNN k={args.n_neighbors} cosine, "
          f"cos^3 weights, W+W^T (built in {t_graph:.1f} s). Accuracy on unlabelled cells, mean ± std over "
          f"seeds {args.seeds}.\n")
    head = " | ".join(f"{r:.0%} labels (n_l={n_lab[r]})" for r in args.rates)
    print(f"| energy | {head} | mean s / fit | warnings |")
    print("|---|" + "---:|" * len(args.rates) + "---:|---|")
    for name in rows:
        cells = " | ".join(f"{100 * np.mean(acc[name][r]):.2f} ± {100 * np.std(acc[name][r]):.2f}" for r in args.rates)
        print(f"| {name} | {cells} | {np.mean(secs[name]):.2f} | {', '.join(sorted(notes.get(name, []))) or '–'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
