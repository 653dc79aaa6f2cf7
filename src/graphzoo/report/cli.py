"""``graphzoo report RUN_OR_EXPERIMENT_DIR``: write report.html (self-contained) and report.md there.

``graphzoo report --compare RUN_A RUN_B [--compare RUN_C RUN_D ...] --out FILE.png``: the ψ maps of two
runs on the same data and split side by side (e.g. from scratch vs pretrained), with each ψ's kNN label
agreement printed (:mod:`.pretrain_compare`); the runs are only read.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?",
                        help="an experiment folder (results.jsonl) or the folder of a finished run")
    parser.add_argument("--max-points", type=int, default=1500,
                        help="images in the embedding / graph maps (default 1500; t-SNE time grows with it)")
    parser.add_argument("--examples", type=int, default=16, help="images in the example grid (default 16)")
    parser.add_argument("--featured", metavar="METHOD",
                        help="experiment only: the method (key or label) whose run the detailed sections show "
                             "(default: the best at the largest label fraction)")
    parser.add_argument("--compare", nargs=2, action="append", metavar=("RUN_A", "RUN_B"),
                        help="instead of a report: the ψ maps of two finished runs on the same data and split, side "
                             "by side (repeat for more rows), with each ψ's kNN label agreement; needs --out")
    parser.add_argument("--out", metavar="FILE.png", help="--compare: the figure to write")
    parser.add_argument("--neighbors", type=int, default=10,
                        help="--compare: k of the kNN label agreement (default 10)")


def main(args: argparse.Namespace) -> int:
    if args.compare:
        from .pretrain_compare import compare_main

        if args.folder or not args.out:
            raise ValueError("graphzoo report --compare RUN_A RUN_B --out FILE.png takes no folder and needs --out "
                             f"(got folder={args.folder!r}, --out={args.out!r})")
        compare_main([tuple(p) for p in args.compare], args.out, max_points=args.max_points, k=args.neighbors)
        return 0
    if not args.folder:
        raise ValueError("graphzoo report needs a run or experiment folder (or --compare RUN_A RUN_B --out FILE.png)")
    from . import build_report

    html, md = build_report(args.folder, max_points=args.max_points, n_examples=args.examples,
                            featured=args.featured)
    print(f"report: {html}\n        {md}", file=sys.stderr)
    return 0
