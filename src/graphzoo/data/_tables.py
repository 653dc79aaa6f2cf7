"""Label files: reading CSV tables (optionally gzipped) with clear errors, and rows whose image is missing."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Callable, Sequence

from ._images import note

__all__ = ["read_csv_rows", "check_missing", "ALLOW_MISSING_HINT"]

# The advice of the missing-images error; ``graphzoo data inspect`` swaps in its option syntax.
ALLOW_MISSING_HINT = "pass allow_missing=True"


def _open_text(path: Path):
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_csv_rows(
    path: Path, required: Sequence[str], normalise: Callable[[str], str] | None = None
) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV (optionally gzipped) into dicts; a missing required column is a clear error.

    ``normalise`` maps a header to the key used for matching (e.g. lower-case, spaces to ``_``),
    so that ``breast density`` and ``breast_density`` are one column.
    """
    norm = normalise or (lambda s: s.strip())
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path} is empty. Fix: use the CSV with its header row.")
            keys = [norm(h) for h in header]
            rows = [dict(zip(keys, (v.strip() for v in r))) for r in reader if any(v.strip() for v in r)]
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read CSV {path}: {exc}. Fix: re-download the file.") from None
    missing = [c for c in required if norm(c) not in keys]
    if missing:
        raise ValueError(
            f"CSV {path} is missing required column(s) {missing} (it has: {[h.strip() for h in header]}). "
            "Fix: use the original file, or rename its columns to these names."
        )
    return keys, rows


def check_missing(what: str, n_missing: int, n_listed: int, *, allow_missing: bool, fix: str, notes: list[str]) -> None:
    """Rows of a label file whose image is not on disk: refuse when most are, else a note.

    More than half missing usually means the wrong folder (or a partial download) rather than a few
    lost files, so it is an error unless ``allow_missing=True``; fewer give a :class:`DataWarning`.

    Parameters
    ----------
    what : str
        "<n_missing> of <n_listed> ... are not ..." (with an example), the start of both messages.
    fix : str
        What to do instead, e.g. "point at the folder that holds the PNGs".
    """
    if n_missing == 0:
        return
    found = n_listed - n_missing
    if 2 * n_missing > n_listed and not allow_missing:
        raise ValueError(f"{what}. Fix: {fix}, or {ALLOW_MISSING_HINT} to load the {found} found.")
    note(notes, f"{what}; loaded the {found} found")
