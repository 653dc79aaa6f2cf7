"""``graphzoo list``: the plug-ins available: backbones, energies, data formats (no torch import)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=["backbones", "energies", "formats", "all"], default="all")


def _first_line(obj) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return doc[0] if doc else ""


def main(args: argparse.Namespace) -> int:
    from . import ENERGIES
    from .models import BACKBONES

    sections = []
    if args.what in ("backbones", "all"):
        rows = [(n, _first_line(BACKBONES.get(n))) for n in BACKBONES.names()]
        rows.append(("<torchvision name>", "any torchvision classification model, e.g. densenet121, efficientnet_b0"))
        sections.append(("backbones", rows))
    if args.what in ("energies", "all"):
        sections.append(("energies", [(n, _first_line(ENERGIES.get(n))) for n in ENERGIES.names()]))
    if args.what in ("formats", "all"):
        try:
            from .data import READERS
        except ImportError:  # the readers are optional for listing
            READERS = None
        rows = [(n, _first_line(READERS.get(n))) for n in READERS.names()] if READERS is not None else []
        sections.append(("data formats", rows))
    for title, rows in sections:
        print(f"{title}:")
        width = max((len(n) for n, _ in rows), default=0)
        for name, doc in rows:
            print(f"  {name.ljust(width)}  {doc}")
    return 0
