"""``graphzoo report RUN_OR_EXPERIMENT_DIR``: write report.html (self-contained) and report.md there."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="an experiment folder (results.jsonl) or the folder of a finished run")
    parser.add_argument("--max-points", type=int, default=1500,
                        help="images in the embedding / graph maps (default 1500; t-SNE time grows with it)")
    parser.add_argument("--examples", type=int, default=16, help="images in the example grid (default 16)")
    parser.add_argument("--featured", metavar="METHOD",
                        help="experiment only: the method (key or label) whose run the detailed sections show "
                             "(default: the best at the largest label fraction)")


def main(args: argparse.Namespace) -> int:
    from . import build_report

    html, md = build_report(args.folder, max_points=args.max_points, n_examples=args.examples,
                            featured=args.featured)
    print(f"report: {html}\n        {md}", file=sys.stderr)
    return 0
