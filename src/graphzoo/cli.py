"""Command line: ``graphzoo <command> ...`` (also ``python -m graphzoo``).

Each command lives in the module that implements it and contributes two functions,
``add_arguments(parser)`` and ``main(args) -> int``; this file only wires them, importing each
module lazily so that ``graphzoo list`` does not pay for importing torch.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# command name -> (module, one-line help). The module must define add_arguments and main.
COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("graphzoo.data.inspect", "inspect a dataset: counts per class / split, sizes, label budgets"),
    "run": ("graphzoo.run", "train and evaluate the hybrid model (One Pass / Dynamic Pass); writes runs/<name>/"),
    "pretrain": ("graphzoo.pretrain_cli", "pretrain ψ on every training image (labels ignored) into the encoder cache "
                 "that runs with --pretrain reuse"),
    "predict": ("graphzoo.predict", "classify new images with a trained run"),
    "suggest": ("graphzoo.suggest", "which unlabelled training images to label next (suggestions.csv + contact sheet)"),
    "label": ("graphzoo.labelling", "a local web page to label the suggested images (writes labels.csv)"),
    "list": ("graphzoo.listing", "list the available backbones, energies and data formats"),
    "experiment": ("graphzoo.experiment_cli",
                   "run a grid of label fractions x seeds x methods + baselines on identical splits"),
    "report": ("graphzoo.report.cli", "write report.html / report.md (tables, figures) for a run or experiment folder"),
    "compare": ("graphzoo.report.paper_comparison",
                "the seed paper's numbers beside ours (docs/paper_comparison.md) from committed results files"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphzoo",
                                     description="Graph-based semi-supervised medical image classification.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (or GRAPHZOO_DEBUG=1)")
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
    """Run one command; known failures become one line on stderr and an exit code.

    Exit codes: 0 done, 1 the machine failed us (disk full, other OS errors), 2 bad input
    (settings, files, paths), 3 training stopped (non-finite loss), 130 interrupted (Ctrl-C).
    ``GRAPHZOO_DEBUG=1`` or ``--debug`` re-raises, to see the traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = _main(args)
    finally:
        dist = sys.modules.get("graphzoo.distributed")
        if dist is not None:
            dist.shutdown()  # under torchrun: leave the process group cleanly
    if dist is not None and dist.launched():
        dist.exit_now(code)  # a torchrun rank exits here: its interpreter teardown could abort (see exit_now)
    return code


def _main(args: argparse.Namespace) -> int:
    if args.debug or os.environ.get("GRAPHZOO_DEBUG", "") not in ("", "0"):
        return int(args._main(args) or 0)
    try:
        return int(args._main(args) or 0)
    except BrokenPipeError:
        # `graphzoo predict ... | head`: the reader has gone; that is not an error. Point stdout at
        # /dev/null so that Python's flush at exit does not raise a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - sorted by describe(); the unknown ones re-raise below
        line, code = describe(exc, args.command, getattr(args, "config", None))
        if code is None:
            raise  # a bug: the traceback is what a bug report needs
    except KeyboardInterrupt:
        line, code = describe(KeyboardInterrupt(), args.command)
    # Under torchrun every rank says it (the first to fail may take the others down before they speak).
    rank = f" (rank {os.environ['RANK']})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
    print(f"graphzoo {args.command}: error{rank}: {line}", file=sys.stderr)
    return code


# What survives an interruption: checkpoints are written to a temporary file and renamed, so the
# last complete one is never half-written (graphzoo.train.checkpoints.save_checkpoint).
_KEPT = {"run": "; the last checkpoint is intact: continue with graphzoo run --resume (same options)",
         "pretrain": "; the last epoch's checkpoint is kept: rerun the same command to continue",
         "experiment": "; finished cells are kept: rerun the same command to continue"}


def describe(exc: BaseException, command: str, config: str | None = None) -> tuple[str, int | None]:
    """``(one-line message with the fix, exit code)`` for a known failure; ``(.., None)`` for a bug.

    ``config`` names the command's ``--config`` file, for a YAML error raised from parsed text
    (whose position PyYAML reports without a file name).
    """
    import yaml

    kept = _KEPT.get(command, "")
    if isinstance(exc, KeyboardInterrupt):
        return f"interrupted{kept}", 130
    if isinstance(exc, yaml.YAMLError):
        from .config import yaml_error_line

        name = getattr(getattr(exc, "problem_mark", None), "name", "") or ""
        where = name if name and not name.startswith("<") else (config or "the YAML")
        return yaml_error_line(exc, where) + "; fix the file", 2
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return f"disk full{f' writing {exc.filename}' if exc.filename else ''}: free some space{kept}", 1
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}: choose a folder you may write to (e.g. --out)", 2
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        return f"{exc.filename or exc} is a file where a folder is needed: choose another path (e.g. --out)", 2
    if isinstance(exc, (ValueError, FileNotFoundError, KeyError)):
        # Bad input: our messages already name the problem and the fix (CheckpointError is a ValueError).
        return (str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)), 2
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}", 1
    dist = sys.modules.get("graphzoo.distributed")  # imported (with torch) only by commands that train
    if dist is not None and isinstance(exc, dist.PeerFailure):
        return str(exc), 1
    return str(exc), None


if __name__ == "__main__":
    sys.exit(main())
