"""Benchmark getting real data in: the malaria npz to a training-ready tensor, and PNG folder decoding.

Prints ONE markdown table. Rows:

* ``npz -> ImageSet``: ``graphzoo.data.load`` of ``malaria/malaria_50_gray.npz`` (all 27,558
  cells: zip inflate, strings for file names / patient ids, label checks).
* ``train mean/std``: exact mean and standard deviation of the training-split pixels, from a
  256-bin histogram of the uint8 values (``np.bincount``; no float copy of the data).
* ``-> float32 (N,1,50,50) normalised``: ``torch.from_numpy`` -> float32 -> ``(x - mean) / std``
  in place -> add the channel axis.
* ``total npz -> tensor``: the three above, end to end (target <= 5 s on 2 cores).
* ``torchdata path`` (when ``graphzoo.data.torchdata`` offers ``to_image_tensor`` and
  ``Normalizer``): the same through the training wrapper's helpers, for comparison.
* ``PNG folder cold / cached``: ``graphzoo.data.load`` of the 100-PNG malaria ``raw_sample``
  folder with an empty cache (decoding with the default thread pool, and with ``workers=1``), then
  again with the cache filled. The OS page cache is warm in every row (the files were read
  before), so "cold" means "not in graphzoo's cache", not "not in RAM".

Each row is timed ``--repeat`` times; the table gives the best and the median. The machine is
shared, so timings are noisy: compare rows of one run.

Examples
--------
    python bench/data_bench.py
    python bench/data_bench.py --repeat 5 --data ../shared/data
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, min(times), statistics.median(times)


def train_mean_std(images: np.ndarray, train: np.ndarray) -> tuple[float, float]:
    """Exact pixel mean/std of images[train] from a 256-bin histogram (uint8 only)."""
    counts = np.bincount(images[train].reshape(-1), minlength=256).astype(np.float64)
    v = np.arange(256, dtype=np.float64)
    n = counts.sum()
    mean = float(counts @ v / n)
    return mean, float(np.sqrt(counts @ (v - mean) ** 2 / n))


def to_tensor(images: np.ndarray, mean: float, std: float):
    import torch

    x = torch.from_numpy(images).to(torch.float32)
    x.sub_(mean).div_(std)
    return x.unsqueeze(1)


def main() -> None:
    """Time the rows of the module docstring, in its order, and print the table.

    Long: one straight script of timed steps, read top to bottom as the table's rows.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("GRAPHZOO_DATA", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import torch

    import graphzoo.data as gd

    torch.set_num_threads(os.cpu_count() or 1)
    data = Path(args.data)
    npz = data / "malaria" / "malaria_50_gray.npz"
    folder = data / "malaria" / "raw_sample"
    rows = []

    ds, best, med = timed(lambda: gd.load(npz), args.repeat)
    rows.append(("npz -> ImageSet", len(ds), best, med))
    train = ds.split == "train"
    (mean, std), best, med = timed(lambda: train_mean_std(ds.images, train), args.repeat)
    rows.append((f"train mean/std ({mean:.2f} / {std:.2f})", int(train.sum()), best, med))
    x, best, med = timed(lambda: to_tensor(ds.images, mean, std), args.repeat)
    assert x.shape == (len(ds), 1, 50, 50) and x.dtype == torch.float32
    check = x[torch.from_numpy(train)]
    rows.append(("-> float32 (N,1,50,50) normalised", len(ds), best, med))
    del x

    def end_to_end():
        d = gd.load(npz)
        tr = d.split == "train"
        m, s = train_mean_std(d.images, tr)
        return to_tensor(d.images, m, s)

    x, best, med = timed(end_to_end, args.repeat)
    rows.append(("total npz -> tensor  (target <= 5 s)", len(ds), best, med))
    del x

    try:
        from graphzoo.data.torchdata import Normalizer, to_image_tensor
    except ImportError:
        Normalizer = None
    if Normalizer is not None:

        def via_torchdata():
            d = gd.load(npz)
            t = to_image_tensor(d.images)
            norm = Normalizer.fit(t, indices=np.flatnonzero(d.split == "train"))
            return norm(t)

        try:
            x, best, med = timed(via_torchdata, args.repeat)
            rows.append(
                (f"torchdata path -> {tuple(x.shape)} {str(x.dtype).replace('torch.', '')}", len(ds), best, med)
            )
            del x
        except Exception as exc:  # another engineer's API may move; the table should still print
            rows.append(
                (f"torchdata path failed: {type(exc).__name__}: {exc}"[:60], len(ds), float("nan"), float("nan"))
            )

    if folder.exists():
        n_files = sum(1 for _ in folder.rglob("*.png"))
        cache_root = Path(tempfile.mkdtemp(prefix="graphzoo-bench-cache-"))
        try:
            for label, workers in (("PNG folder cold, thread pool", None), ("PNG folder cold, workers=1", 1)):
                times = []
                for r in range(args.repeat):
                    cdir = cache_root / f"{workers}-{r}"
                    t0 = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        gd.load(folder, cache_dir=cdir, workers=workers)
                    times.append(time.perf_counter() - t0)
                rows.append((label, n_files, min(times), statistics.median(times)))
            cdir = cache_root / "warm"
            gd.load(folder, cache_dir=cdir)
            _, best, med = timed(lambda: gd.load(folder, cache_dir=cdir), args.repeat)
            rows.append(("PNG folder cached", n_files, best, med))
        finally:
            shutil.rmtree(cache_root, ignore_errors=True)

    print(
        f"data_bench: {os.cpu_count()} CPUs, torch {torch.__version__}, {args.repeat} repeats; "
        f"normalised train pixels: mean {float(check.mean()):+.4f}, std {float(check.std()):.4f}"
    )
    print()
    print("| step | images | best s | median s |")
    print("|---|---:|---:|---:|")
    for name, n, best, med in rows:
        print(f"| {name} | {n:,} | {best:.3f} | {med:.3f} |")


if __name__ == "__main__":
    main()
