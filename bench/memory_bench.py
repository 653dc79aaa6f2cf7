"""Peak memory of a One Pass run over a synthetic folder of 224 px gray PNGs, read lazily or in memory.

Question: does peak resident memory stay flat as the number of images grows when the set is read
lazily (``data_in_memory=false``, :mod:`graphzoo.data.store`), and how does it compare with holding
the images in memory (``data_in_memory=true``)? Target (issue 15): a 112k-image 224 px gray folder
goes through One Pass extraction and the graph step with peak resident memory ≤ 4 GB beyond the
features (n × d float32).

Each cell is one ``graphzoo`` One Pass run in a fresh process: read / list the folder, resize to 224,
fingerprint, normaliser, one short supervised epoch on the labelled subset (``label_fraction``), then
the evaluation — ψ of every image (the extraction), the kNN graph and the energy (the graph step) —
and the run's files. Peak RSS is the child's ``ru_maxrss``; "base" is its RSS after importing torch
and graphzoo, before any data; "beyond" = peak − base − features. The backbone is ``small_cnn`` with
``width=4`` (d = 32) so that a CPU extracts 112k images at 224 px in minutes: memory is the question
here, not accuracy.

The images (two classes: a bright bar left or right on a smooth random background with a little
noise; PNG, ~26 kB each) are generated once under ``--root`` (default /tmp/graphzoo-memory) into a
pool, and a folder of ``n`` symbolic links is made per size.

Run (tells its own numbers; on a shared machine the times are loaded ones)::

    nice python bench/memory_bench.py --sizes 10000 28000 56000 112000 --in-memory-up-to 28000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SIDE = 224


def _make(args: tuple[Path, int, int]) -> None:
    from PIL import Image

    pool, start, stop = args
    rng = np.random.default_rng(start)
    noise = [rng.integers(0, 6, (SIDE, SIDE), dtype=np.uint8) for _ in range(16)]
    for i in range(start, stop):
        c = i % 2
        out = pool / "ab"[c] / f"{i:06d}.png"
        if out.exists():
            continue
        low = rng.integers(20, 120, (7, 7), dtype=np.uint8)
        x = np.asarray(Image.fromarray(low).resize((SIDE, SIDE), Image.BILINEAR)).copy()
        x[60:164, (30 if c else 130):(94 if c else 194)] += 100
        x += noise[i % 16]
        Image.fromarray(x).save(out, compress_level=1)


def generate(root: Path, n: int, workers: int) -> Path:
    """The pool of ``n`` images (made once; existing files are kept)."""
    pool = root / "pool"
    for c in "ab":
        (pool / c).mkdir(parents=True, exist_ok=True)
    step = 2000
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(_make, [(pool, s, min(s + step, n)) for s in range(0, n, step)]))
    return pool


def folder_of(root: Path, pool: Path, n: int) -> Path:
    """A folder ``n<n>/{a,b}`` of links to the first ``n`` pool images."""
    d = root / f"n{n}"
    if (d / "done").exists():
        return d
    for i in range(n):
        c = "ab"[i % 2]
        (d / c).mkdir(parents=True, exist_ok=True)
        link = d / c / f"{i:06d}.png"
        if not link.is_symlink():
            link.symlink_to(pool / c / f"{i:06d}.png")
    (d / "done").write_text("")
    return d


def child(folder: str, mode: str, out: str) -> None:
    """One run in this process; prints a JSON line with its peak memory and stage times."""
    import torch  # noqa: F401

    from graphzoo.config import RunConfig
    from graphzoo.train import run_training

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cfg = RunConfig(data=folder, out=out, name=f"{Path(folder).name}-{mode}", image_size=SIDE, in_chans=1,
                    backbone_kwargs={"width": 4}, epochs=1, min_epoch_steps=2, batch_size=128, label_fraction=0.01,
                    split="random", n_neighbors=10, progress=False, augment=False, data_in_memory=mode, threads=2)
    shutil.rmtree(Path(out) / cfg.name, ignore_errors=True)  # a fresh run each time
    t0 = time.perf_counter()
    result = run_training(cfg)
    total = time.perf_counter() - t0
    m = json.loads(result.rundir.metrics.read_text())
    feats = np.load(result.rundir.features, mmap_mode="r")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"n": len(feats), "mode": mode, "base": base, "peak": peak, "features": feats.nbytes,
                      "d": feats.shape[1], "total_s": total, "graph_s": m.get("graph", {}).get("graph_s"),
                      "lazy": type(result.data.images).__name__ == "LazyImages"}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 28000, 56000, 112000])
    ap.add_argument("--in-memory-up-to", type=int, default=28000, help="also run data_in_memory=true up to this n")
    ap.add_argument("--root", default="/tmp/graphzoo-memory")
    ap.add_argument("--workers", type=int, default=2, help="processes that generate the PNGs")
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--child", nargs=3, metavar=("FOLDER", "MODE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    root = Path(args.root)
    os.environ.setdefault("GRAPHZOO_CACHE", str(root / "cache"))  # the in-memory path's decoded-set cache
    t0 = time.perf_counter()
    pool = generate(root, max(args.sizes), args.workers)
    print(f"images: {max(args.sizes)} PNGs in {pool} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if args.generate_only:
        return
    rows = []
    for n in args.sizes:
        folder = folder_of(root, pool, n)
        for mode in ("false", "true") if n <= args.in_memory_up_to else ("false",):
            out = subprocess.run([sys.executable, __file__, "--child", str(folder), mode, str(root / "runs")],
                                 capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"the run n={n} data_in_memory={mode} failed")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"  done n={n} {mode}: peak {r['peak'] / 2**30:.2f} GiB in {r['total_s']:.0f} s {json.dumps(r)}",
                  flush=True)
    gib = 2**30
    print(f"\n{'images':>8} {'data_in_memory':>14} {'decoded':>9} {'base':>7} {'peak':>7} {'features':>9} "
          f"{'beyond':>7} {'run':>7} {'graph':>6}")
    for r in rows:
        beyond = r["peak"] - r["base"] - r["features"]
        print(f"{r['n']:>8} {r['mode']:>14} {r['n'] * SIDE * SIDE / gib:>7.2f}Gi {r['base'] / gib:>5.2f}Gi "
              f"{r['peak'] / gib:>5.2f}Gi {r['features'] / 2**20:>7.1f}Mi {beyond / gib:>5.2f}Gi "
              f"{r['total_s']:>6.0f}s {r['graph_s'] or 0:>5.1f}s")
    print("\nGi = GiB; decoded = n × 224² bytes (the uint8 tensor the in-memory path holds); "
          "beyond = peak − base − features;\nrun = the whole run's wall time (loaded machine), graph = kNN + energy.")


if __name__ == "__main__":
    main()
