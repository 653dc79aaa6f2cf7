"""Exact kNN self-search (the graph's neighbours) on every engine this machine has: time and recall.

Prints ONE markdown table, one row per engine of ``graphzoo.knn_search``, all on the same synthetic
features (``graph_bench.make_data``: a Gaussian mixture, 512-d by default):

* ``numpy:cpu``   blocked matrix products + partial sort (``backend="numpy"``);
* ``faiss:cpu``   faiss over the upper block triangle of X Xᵀ (``backend="faiss"``, the CPU default);
* ``torch:cpu``   the device path's blocked ``torch.topk``, run on the CPU (``backend="torch"``);
* ``faiss:cuda:0`` faiss's GPU flat index, where the installed faiss has GPU support;
* ``torch:cuda:0`` (or ``torch:mps``) the blocked ``torch.topk`` on the GPU (``backend="torch", device=...``).

Columns
-------
time s      wall time of ``knn_search(X, k)`` over all n points (features to (dist, idx) on the host:
            normalisation, transfers and the copy back included). GPU rows run a small warm-up search
            first so that CUDA / cuBLAS start-up is not counted; ``first s`` is that warm-up.
recall@k    |found ∩ exact| / k, averaged over ``--ref-queries`` random points, against an exact
            float64 brute-force top-k of those points; below 1 only where float32 rounding swaps
            near-equal neighbours at the k-th place.
max Δdist   largest |distance - exact distance| over those points' lists (position by position).

Examples
--------
    python bench/knn_device_bench.py --n 20000                      # CPU engines, a few minutes on 2 cores
    python bench/knn_device_bench.py --n 112000 --backends torch:cuda faiss:cuda   # the GPU target row
    python bench/knn_device_bench.py --quick                        # smoke run, 5k points

Target (issue 15): exact kNN 112k × 512 on one H200-class GPU ≤ 5 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from graph_bench import make_data  # noqa: E402  (the same synthetic features as the graph benchmark)

from graphzoo import knn_search  # noqa: E402

ALL = ("numpy:cpu", "faiss:cpu", "torch:cpu", "faiss:cuda", "torch:cuda", "torch:mps")


def available() -> list[str]:
    """The engines of :data:`ALL` that this machine can run."""
    out = ["numpy:cpu"]
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None:
        out.append("faiss:cpu")
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        out.append("torch:cpu")
    if faiss is not None and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        out.append("faiss:cuda")
    if torch is not None and torch.cuda.is_available():
        out.append("torch:cuda")
    if torch is not None and torch.backends.mps.is_available():
        out.append("torch:mps")
    return out


def exact_reference(X: np.ndarray, rows: np.ndarray, k: int, metric: str, block: int = 250):
    """Exact top-k (self excluded) of ``X[rows]`` among all of X in float64: (dist, idx), nearest first."""
    Z = X.astype(np.float64)
    if metric == "cosine":
        Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    sq = np.einsum("ij,ij->i", Z, Z)
    dist = np.empty((len(rows), k))
    idx = np.empty((len(rows), k), dtype=np.int64)
    for a in range(0, len(rows), block):
        r = rows[a : a + block]
        G = Z[r] @ Z.T
        D = 1 - G if metric == "cosine" else np.sqrt(np.maximum(sq[r, None] - 2 * G + sq[None, :], 0))
        D[np.arange(len(r)), r] = np.inf
        part = np.argpartition(D, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(D, part, 1), axis=1, kind="stable")
        idx[a : a + len(r)] = np.take_along_axis(part, order, 1)
        dist[a : a + len(r)] = np.take_along_axis(D, idx[a : a + len(r)], 1)
    return dist, idx


def run_engine(name: str, X: np.ndarray, k: int, metric: str):
    """Time one engine; returns (seconds, warm-up seconds or None, backend reported, dist, idx)."""
    backend, where = name.split(":")
    device = None if where == "cpu" and backend != "torch" else where
    warm = None
    if where != "cpu":  # start CUDA / cuBLAS / faiss's GPU resources outside the timed call
        t0 = time.perf_counter()
        knn_search(X[:2000], min(k, 100), metric=metric, backend=backend, device=device)
        warm = time.perf_counter() - t0
    info: dict = {}
    t0 = time.perf_counter()
    dist, idx = knn_search(X, k, metric=metric, backend=backend, device=device, info=info)
    return time.perf_counter() - t0, warm, info["backend"], dist, idx


def machine_line() -> str:
    parts = [platform.processor() or platform.machine(), f"{os.cpu_count()} CPUs"]
    if hasattr(os, "getloadavg"):
        parts.append("load %.1f" % os.getloadavg()[0])
    try:
        import torch

        parts.append(f"torch {torch.__version__}")
        if torch.cuda.is_available():
            parts.append(torch.cuda.get_device_name(0))
    except ImportError:
        pass
    try:
        import faiss

        parts.append(f"faiss {faiss.__version__}{' (GPU build)' if hasattr(faiss, 'StandardGpuResources') else ''}")
    except ImportError:
        pass
    return ", ".join(parts)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=112_000, help="number of points (default 112,000)")
    p.add_argument("--d", type=int, default=512, help="feature dimension (default 512)")
    p.add_argument("--k", type=int, default=50, help="neighbours per point (default 50)")
    p.add_argument("--classes", type=int, default=14, help="classes of the Gaussian mixture (default 14)")
    p.add_argument("--metric", choices=["cosine", "euclidean"], nargs="+", default=["cosine"])
    p.add_argument("--backends", nargs="+", choices=ALL, help="engines to run (default: every one available)")
    p.add_argument("--ref-queries", type=int, default=1000, help="points whose recall is checked (default 1000)")
    p.add_argument("--quick", action="store_true", help="smoke run: n = 5000")
    args = p.parse_args(argv)
    n = 5000 if args.quick else args.n
    have = available()
    engines = [e for e in (args.backends or have)]
    X, _ = make_data(n, args.classes, d=args.d)
    rows = np.random.default_rng(1).choice(n, min(args.ref_queries, n), replace=False)
    print(f"exact kNN self-search, n = {n:,}, d = {args.d}, k = {args.k}; {machine_line()}\n")
    print("| engine | metric | time s | first s | recall@k | max Δdist |")
    print("|---|---|---:|---:|---:|---:|")
    for metric in args.metric:
        ref_dist, ref_idx = exact_reference(X, rows, args.k, metric)
        for name in engines:
            if name not in have:
                print(f"| {name} | {metric} | not available here | | | |", flush=True)
                continue
            seconds, warm, used, dist, idx = run_engine(name, X, args.k, metric)
            recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(idx[rows], ref_idx)])
            err = np.abs(dist[rows].astype(np.float64) - ref_dist).max()
            first = "–" if warm is None else f"{warm:.2f}"
            print(f"| {used} | {metric} | {seconds:.2f} | {first} | {recall:.4f} | {err:.1e} |", flush=True)


if __name__ == "__main__":
    main()
