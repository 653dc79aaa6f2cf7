"""Progress on long work: bars in a terminal, plain lines elsewhere.

tqdm's bars redraw with carriage returns, which a log file or CI keeps as one long line of
spam. So bars are drawn only when stderr is a terminal; elsewhere callers print one plain line
per unit of work (an epoch, a cell) with :func:`say`. Under torchrun only rank 0 speaks (the
``RANK`` torchrun sets), so N processes do not print every line N times.
"""

from __future__ import annotations

import os
import sys

__all__ = ["bar", "say", "is_terminal", "is_rank0"]


def is_rank0() -> bool:
    """True in a process without torchrun and in torchrun's rank 0 (read from ``RANK``, so without torch:
    the one process that speaks and writes for the job)."""
    return os.environ.get("RANK", "0") == "0"


def is_terminal() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar on a terminal (removed when done); a silent stand-in otherwise."""
    if not (enabled and is_terminal() and is_rank0()):
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)


def say(message: str, enabled: bool = True) -> None:
    """One plain line on stderr (flushed, so that a log file shows it at once)."""
    if enabled and is_rank0():
        print(message, file=sys.stderr, flush=True)
