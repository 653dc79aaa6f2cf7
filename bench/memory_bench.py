"""Peak memory of a One Pass run over a synthetic folder of 224 px gray PNGs, per stage, read lazily or in memory.

Question: does peak resident memory stay flat as the number of images grows when the set is read
lazily (``data_in_memory=false``, :mod:`graphzoo.data.store`)? Target (issue 15): a 112k-image 224 px
gray folder goes through One Pass extraction and the graph step with peak resident memory ≤ 4 GB
beyond the features (n × d float32).

Each size is one ``graphzoo`` One Pass run in a fresh process: list the folder, fingerprint,
normaliser, one short supervised epoch on the labelled subset (``label_fraction``), then the
evaluation — ψ of every image (the extraction), the kNN graph and the energy (the graph step),
calibration, the evidence search, predictions.csv and metrics.json. The backbone is ``small_cnn``
with ``width=4`` (d = 32) so that a CPU extracts 112k images at 224 px in tens of minutes: memory is
the question here, not accuracy.

**Per stage.** The child wraps the run's functions (at run time; nothing in graphzoo is changed) and,
when a stage starts, resets Linux's peak-RSS mark (``VmHWM``, by writing 5 to ``/proc/self/clear_refs``),
so that each stage's *peak* is exact, C/C++ allocations (torch, PIL, faiss) included. A stage runs
from the entry of its function to the entry of the next stage's. "base" is the child's RSS after
importing torch and graphzoo, before any data; "beyond" = peak − base − features. ``malloc free`` is
memory that glibc holds freed but has not given back to the system (``mallinfo2``): resident, unused.

The images (two classes: a bright bar left or right on a smooth random background with a little
noise; PNG, ~26 kB each) are written once into a temporary folder under ``--root`` (removed at the
end unless ``--keep``); a smaller size is a folder of symbolic links to the first ``n`` of them.
``--images DIR`` reuses a folder this script wrote before with ``--keep`` (it is never removed).

Run (tells its own numbers; on a shared machine the times are loaded ones)::

    nice -n 10 python bench/memory_bench.py --sizes 28000 56000 112000
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SIDE = 224
GIB = 2**30
#: (module, attribute, stage label): the functions whose entry starts a stage, in the order a run calls them.
STAGES = (
    ("graphzoo.train.trainer", "prepare_data", "read + index the folder"),
    ("graphzoo.data.torchdata", "Normalizer.fit", "normaliser (+ network)"),
    ("graphzoo.train.trainer", "data_fingerprint", "fingerprint (+ split files)"),
    ("graphzoo.train.trainer", "Trainer.phase", "training"),
    ("graphzoo.train.trainer", "Trainer.infer", "extraction (ψ of every image)"),
    ("graphzoo.graph_step", "knn_graph", "kNN graph"),
    ("graphzoo.graph_step", "diffuse", "diffusion (energy)"),
    ("graphzoo.train.evaluate", "calibrate", "calibration"),
    ("graphzoo.train.evaluate", "nearest_labelled", "evidence (kNN to labelled)"),
    ("graphzoo.train.evaluate", "_write_predictions", "predictions.csv"),
    ("graphzoo.train.runner", "write_history", "history + metrics.json"),
)


# --------------------------------------------------------------------------------------------
# The images
# --------------------------------------------------------------------------------------------


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


def generate(pool: Path, n: int, workers: int) -> None:
    """``n`` images in ``pool/{a,b}`` (files already there are kept)."""
    for c in "ab":
        (pool / c).mkdir(parents=True, exist_ok=True)
    step = 2000
    with ProcessPoolExecutor(workers) as ex:
        list(ex.map(_make, [(pool, s, min(s + step, n)) for s in range(0, n, step)]))


def folder_of(root: Path, pool: Path, n: int) -> Path:
    """The pool itself when it holds exactly ``n`` images, else a folder ``n<n>/{a,b}`` of links to its first ``n``."""
    if sum(len(os.listdir(pool / c)) for c in "ab") == n:
        return pool
    d = root / f"n{n}"
    for i in range(n):
        c = "ab"[i % 2]
        (d / c).mkdir(parents=True, exist_ok=True)
        link = d / c / f"{i:06d}.png"
        if not link.is_symlink():
            link.symlink_to(pool / c / f"{i:06d}.png")
    return d


# --------------------------------------------------------------------------------------------
# One run, stage by stage (the child process)
# --------------------------------------------------------------------------------------------


def _status_gib(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / GIB
    return float("nan")


def _malloc_free_gib() -> float | None:
    """Bytes glibc holds freed (``mallinfo2().fordblks``), or None off glibc ≥ 2.33."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        fields = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
        info = type("MallInfo2", (ctypes.Structure,), {"_fields_": [(f, ctypes.c_size_t) for f in fields]})
        libc.mallinfo2.restype = info
        return libc.mallinfo2().fordblks / GIB
    except (OSError, AttributeError):
        return None


class StageRecorder:
    """Exact peak RSS per stage: the peak mark is reset when a stage starts and read when the next one starts."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.name, self.t0, self.depth = None, time.perf_counter(), 0
        self.exact = True
        self._sampled = 0.0  # fallback without clear_refs: the largest RSS a sampler thread saw

    def _reset_peak(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            self.exact = False
            self._sampled = _status_gib("VmRSS")

    def _sample(self) -> None:
        while True:
            self._sampled = max(self._sampled, _status_gib("VmRSS"))
            time.sleep(0.05)

    def start(self, name: str | None) -> None:
        """End the current stage (if any) and start ``name`` (None: only end it)."""
        now = time.perf_counter()
        if self.name is not None:
            peak = _status_gib("VmHWM") if self.exact else self._sampled
            self.rows.append({"stage": self.name, "s": now - self.t0, "peak": peak, "end": _status_gib("VmRSS"),
                              "malloc_free": _malloc_free_gib()})
        self.name, self.t0 = name, now
        self._reset_peak()
        if not self.exact and not any(t.name == "sampler" for t in threading.enumerate()):
            threading.Thread(target=self._sample, name="sampler", daemon=True).start()

    def wrap(self, module: str, attr: str, label: str) -> bool:
        """Make ``module.attr`` (a function, or ``Class.method``) start stage ``label`` when called outside another
        stage's function. False when the run no longer has that function (the stage is then folded into another)."""
        import importlib

        owner = importlib.import_module(module)
        *path, name = attr.split(".")
        for p in path:
            owner = getattr(owner, p, None)
        raw = owner.__dict__.get(name) if owner is not None else None
        if raw is None:
            return False
        is_cm = isinstance(raw, classmethod)
        fn = raw.__func__ if is_cm else raw
        rec = self

        def wrapped(*a, **k):
            if rec.depth == 0:
                rec.start(label)
            rec.depth += 1
            try:
                return fn(*a, **k)
            finally:
                rec.depth -= 1

        setattr(owner, name, classmethod(wrapped) if is_cm else wrapped)
        return True


def child(folder: str, mode: str, out: str) -> None:
    """One run in this process; prints a JSON line with its stages' peak memory and times."""
    import torch  # noqa: F401

    from graphzoo.config import RunConfig
    from graphzoo.train import run_training

    rec = StageRecorder()
    missing = [label for module, attr, label in STAGES if not rec.wrap(module, attr, label)]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB
    cfg = RunConfig(data=folder, out=out, name=f"{Path(folder).name}-{mode}", image_size=SIDE, in_chans=1,
                    backbone_kwargs={"width": 4}, epochs=1, min_epoch_steps=2, batch_size=128, label_fraction=0.01,
                    split="random", n_neighbors=10, progress=False, augment=False, data_in_memory=mode, threads=2)
    shutil.rmtree(Path(out) / cfg.name, ignore_errors=True)  # a fresh run each time
    t0 = time.perf_counter()
    rec.start("set-up")
    result = run_training(cfg)
    rec.start(None)
    total = time.perf_counter() - t0
    feats = np.load(result.rundir.features, mmap_mode="r")
    # The run's peak: the largest stage peak (resetting VmHWM resets ru_maxrss too; before the first stage: base).
    peak = max([base] + [row["peak"] for row in rec.rows])
    print(json.dumps({"n": len(feats), "mode": mode, "base": base, "peak": peak, "features": feats.nbytes / GIB,
                      "d": feats.shape[1], "total_s": total, "stages": rec.rows, "exact": rec.exact,
                      "not_found": missing, "lazy": type(result.data.images).__name__ == "LazyImages"}))


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


def print_run(r: dict) -> None:
    """One run's stages: time, peak, peak beyond base + features, RSS at the end, glibc's retained free memory."""
    beyond = r["peak"] - r["base"] - r["features"]
    print(f"\nn = {r['n']:,}, data_in_memory={r['mode']} ({'lazy' if r['lazy'] else 'in memory'}): peak "
          f"{r['peak']:.2f} GiB, base {r['base']:.2f} GiB, features {r['features'] * 1024:.1f} MiB (d = {r['d']}), "
          f"beyond {beyond:.2f} GiB, run {r['total_s']:.0f} s"
          + ("" if r["exact"] else " (peaks sampled every 50 ms: /proc/self/clear_refs not writable)"))
    print(f"| stage | s | peak RSS GiB | beyond base + features GiB | RSS at end GiB | malloc free GiB |\n"
          f"| --- | ---: | ---: | ---: | ---: | ---: |")
    for s in r["stages"]:
        free = "–" if s["malloc_free"] is None else f"{s['malloc_free']:.2f}"
        print(f"| {s['stage']} | {s['s']:.0f} | {s['peak']:.2f} | {s['peak'] - r['base'] - r['features']:.2f} | "
              f"{s['end']:.2f} | {free} |")
    if r["not_found"]:
        print(f"(stages not found in this graphzoo, folded into the one before: {', '.join(r['not_found'])})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[28000, 56000, 112000])
    ap.add_argument("--in-memory-up-to", type=int, default=0, help="also run data_in_memory=true up to this n")
    ap.add_argument("--root", default="/work/tmp-mem", help="the temporary folder is made under this one")
    ap.add_argument("--images", help="a folder of images this script wrote before (--keep); reused, never removed")
    ap.add_argument("--keep", action="store_true", help="keep the images and runs (the folder is printed)")
    ap.add_argument("--workers", type=int, default=2, help="processes that write the PNGs")
    ap.add_argument("--child", nargs=3, metavar=("FOLDER", "MODE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    Path(args.root).mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="memory-bench-", dir=args.root))
    pool = Path(args.images) if args.images else root / "images"
    os.environ.setdefault("GRAPHZOO_CACHE", str(root / "cache"))  # the in-memory path's decoded-set cache
    try:
        n_pool = max(args.sizes)
        t0 = time.perf_counter()
        generate(pool, n_pool, args.workers)
        print(f"images: {n_pool:,} PNGs in {pool} ({time.perf_counter() - t0:.0f} s)", flush=True)
        for n in args.sizes:
            folder = folder_of(root, pool, n)
            for mode in ("false", "true") if n <= args.in_memory_up_to else ("false",):
                cmd = [sys.executable, __file__, "--child", str(folder), mode, str(root / "runs")]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    print(out.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"the run n={n} data_in_memory={mode} failed")
                print_run(json.loads(out.stdout.strip().splitlines()[-1]))
                sys.stdout.flush()
    finally:
        if args.keep:
            print(f"\nkept: {root}" + (f" (images: {pool})" if args.images else ""))
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("\nGiB throughout; beyond = peak − base − features; a stage runs from its function's entry to the next "
          "stage's;\ntimes are wall times (on a shared machine, loaded ones).")


if __name__ == "__main__":
    main()
