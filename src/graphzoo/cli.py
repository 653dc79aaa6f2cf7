"""Command line: ``graphzoo <command> ...`` (also ``python -m graphzoo``).

Each command lives in the module that implements it and contributes two functions,
``add_arguments(parser)`` and ``main(args) -> int``; this file only wires them, importing each
module lazily so that ``graphzoo list`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> (module, one-line help). The module must define add_arguments and main.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("graphzoo.data.inspect", "inspect a dataset: counts per class / split, sizes, label budgets"),
    "run": ("graphzoo.run", "train and evaluate the hybrid model (One Pass / Dynamic Pass); writes runs/<name>/"),
    "predict": ("graphzoo.predict", "classify new images with a trained run"),
    "list": ("graphzoo.listing", "list the available backbones, energies and data formats"),
    "experiment": ("graphzoo.experiment_cli", "run a grid of label fractions x seeds x methods + baselines on identical splits"),
    "report": ("graphzoo.report.cli", "write report.html / report.md (tables, figures) for a run or experiment folder"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphzoo", description="Graph-based semi-supervised medical image classification.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A command whose module is not installed (or not written yet) is simply not offered.
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input is reported as one clear line, not a traceback; bugs still raise.
        print(f"graphzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
