"""``graphzoo experiment --config configs/experiments/<name>.yaml``: run a grid, then write its report.

A command of the top-level CLI (not of :mod:`graphzoo.experiments`) because it calls both the grid
and :mod:`graphzoo.report`, which reads the grid's results: inside the experiments package it made
an import cycle.

Examples
--------
graphzoo experiment --config configs/experiments/demo.yaml
graphzoo experiment --config configs/experiments/malaria.yaml --set epochs=5 --no-report
graphzoo experiment --config configs/experiments/demo.yaml --dry-run     # list the cells only
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from . import progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment YAML (see configs/experiments/)")
    parser.add_argument("--set", nargs="+", metavar="KEY=VALUE", default=[], action="extend",
                        help="override a run-config key for every cell, e.g. --set epochs=5 threads=2")
    parser.add_argument("--pretrain", metavar="NAME|none|auto",
                        help="every cell starts ψ from this self-supervised encoder (simclr, vicreg, autoencoder), "
                        "pretrained once per split and reused (graphzoo pretrain), or none, or auto (simclr on "
                        "training splits of at least 5,000 images)")
    parser.add_argument("--out", help="parent folder of the experiment folder "
                                      "(default: the file's out, else runs/experiments)")
    parser.add_argument("--no-report", action="store_true", help="do not write report.html / report.md at the end")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and exit")
    parser.add_argument("--progress", action="store_true",
                        help="progress bars inside each run (default: one line per cell)")


def main(args: argparse.Namespace) -> int:
    from .config import parse_set
    from .experiments.grid import load_grid, plan_cells, read_results, run_grid, stale_cells

    overrides = parse_set(args.set)
    if args.pretrain is not None:
        overrides["pretrain"] = args.pretrain
    spec = load_grid(args.config, overrides, out=args.out)
    if args.progress:
        spec.base = dataclasses.replace(spec.base, progress=True)
    cells = plan_cells(spec)
    records = {r["cell"]: r for r in read_results(spec.results_path)}
    stale = stale_cells(cells, records)
    n_done = len(set(records) & {c.id for c in cells})
    rank0 = progress.is_rank0()  # under torchrun rank 0 speaks and writes for all
    if rank0:
        print(f"experiment {spec.name}: {len(cells)} cells ({n_done} done"
              f"{f', {len(stale)} of them with another config' if stale else ''}) -> {spec.folder}", file=sys.stderr)
    if args.dry_run:
        for c in cells:
            status = "stale" if c.id in stale else "done " if c.id in records else "todo "
            print(f"{status} {c.id}  [{c.kind}{', from ' + c.source if c.source else ''}]"
                  + (f"  changed: {'; '.join(stale[c.id][:3])}" if c.id in stale else ""))
        return 0
    t0 = time.perf_counter()
    run_grid(spec)
    if not rank0:
        return 0
    print(f"grid finished in {time.perf_counter() - t0:.0f} s; table: {spec.folder / 'summary.md'}",
          file=sys.stderr)
    print((spec.folder / "summary.md").read_text())
    if spec.report and not args.no_report:
        from .report import build_report

        html, md = build_report(spec.folder)
        print(f"report: {html}\n        {md}", file=sys.stderr)
    return 0
