"""A folder of images plus a labels CSV: the partially labelled collection a hospital team has.

``graphzoo run --data FOLDER --labels labels.csv`` reads every image below ``FOLDER`` (any
layout, class folders are *not* used as labels) and takes the labels from the CSV:

.. code-block:: text

    path,label
    slide3/cell_0001.png,Parasitized
    slide3/cell_0002.png,            <- empty label: unlabelled
    slide7/cell_0100.png,Uninfected

* ``path`` is relative to the image folder (``FOLDER``), as the ``filename`` column of a run's
  ``predictions.csv``; an absolute path must lie inside ``FOLDER``. Paths are compared after
  resolving, so ``./a.png`` and ``a.png`` are one image.
* ``label`` is a class name. Rows with an empty label, and images with no row, are unlabelled
  (label -1): they join the graph and Dynamic Pass and are predicted, never evaluated.
* The classes are the sorted distinct labels, or ``class_names`` when given (then a label not
  in it, or a class without any labelled row, is an error).

Every problem names the CSV's line numbers (the header is line 1) and nothing is written.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ._images import IMAGE_SUFFIXES, decode_many, finish_images
from .readers import _decode_opts
from .types import ImageSet

__all__ = ["read_labels_csv", "load_with_labels"]


def _shown(items: list, k: int = 5) -> str:
    return "; ".join(map(str, items[:k])) + (f"; ... ({len(items)} in all)" if len(items) > k else "")


def read_labels_csv(csv_path: str | os.PathLike, root: str | os.PathLike) -> dict[Path, tuple[str, int]]:
    """Read ``path,label`` rows: resolved image path -> (label or "" for unlabelled, CSV line).

    Raises ``ValueError`` naming the lines for a missing column, a path outside ``root``, and one
    image given two different labels (repeating the same label is accepted).
    """
    csv_path, root = Path(csv_path), Path(root).resolve()
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels file {csv_path} does not exist. Fix: check --labels.")
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:  # -sig: a BOM from Excel is not a column name
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in reader.fieldnames or []]
        if "path" not in cols or "label" not in cols:
            raise ValueError(f"{csv_path}: the header must name the columns path,label (found {cols or 'nothing'}). "
                             "Fix: make line 1 'path,label'.")
        key = {c.strip().lower(): c for c in reader.fieldnames}
        rows = [(line, (r[key["path"]] or "").strip(), (r[key["label"]] or "").strip())
                for line, r in enumerate(reader, start=2)]
    out: dict[Path, tuple[str, int]] = {}
    outside, conflicts, blank = [], [], []
    for line, path, label in rows:
        if not path:
            blank.append(f"line {line}")
            continue
        p = Path(path)
        full = (p if p.is_absolute() else root / p).resolve()
        if root not in full.parents:
            outside.append(f"line {line}: {path}")
            continue
        if full in out and out[full][0] != label and out[full][0] and label:
            conflicts.append(f"lines {out[full][1]} and {line}: {path} is {out[full][0]!r} and {label!r}")
            continue
        if full not in out or not out[full][0]:
            out[full] = (label, line)
    if blank:
        raise ValueError(f"{csv_path}: rows without a path ({_shown(blank)}). Fix: fill in or delete those rows.")
    if outside:
        raise ValueError(f"{csv_path}: paths outside the image folder {root} ({_shown(outside)}). Fix: paths are "
                         "relative to the image folder (--data).")
    if conflicts:
        raise ValueError(f"{csv_path}: images labelled twice with different labels ({_shown(conflicts)}). "
                         "Fix: keep one row per image.")
    return out


def _image_files(root: Path) -> list[Path]:
    """Every image file below ``root`` (hidden files and folders skipped), sorted, resolved."""
    files = []
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(dirpath, f).resolve() for f in sorted(names)
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return files


def _classes(labels: dict[Path, tuple[str, int]], class_names, csv_path) -> list[str]:
    found = sorted({lab for lab, _ in labels.values() if lab})
    if not class_names:
        if not found:
            raise ValueError(f"{csv_path}: no row has a label. Fix: label some images (column label).")
        return found
    class_names = [str(c) for c in class_names]
    unknown = [f"line {line}: {lab!r}" for lab, line in sorted(labels.values(), key=lambda t: t[1])
               if lab and lab not in class_names]
    if unknown:
        raise ValueError(f"{csv_path}: labels that are not among the classes {class_names} ({_shown(unknown)}). "
                         "Fix: correct the labels, or the class names.")
    empty = [c for c in class_names if c not in found]
    if empty:
        raise ValueError(f"{csv_path}: the class(es) {empty} have no labelled image. Fix: label at least one image "
                         "of each class, or drop the class from class_names.")
    return class_names


def load_with_labels(
    root: str | os.PathLike,
    labels_csv: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    skip_corrupt: bool = False,
    channels: int | None = None,
    size=None,
    stack: bool | None = None,
    workers: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> ImageSet:
    """Read every image below ``root``, labelled from ``labels_csv`` (-1 where it gives none).

    Returns
    -------
    ImageSet
        ``labels`` int64 (N,) with -1 for the unlabelled images; ``filenames`` relative to
        ``root``; no split or patient ids (the split is then random over the labelled images).

    Raises
    ------
    ValueError
        Besides :func:`read_labels_csv`'s checks: rows naming files that are not images below
        ``root``, labels outside ``class_names``, a class without a label, no image at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--labels needs a folder of images as data, got {root}. Fix: --data FOLDER.")
    labels = read_labels_csv(labels_csv, root)
    files = _image_files(root)
    if not files:
        raise ValueError(f"no images found below {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}).")
    known = set(files)
    missing = [f"line {line}: {p.relative_to(root.resolve())}" for p, (_, line) in labels.items() if p not in known]
    if missing:
        raise ValueError(f"{labels_csv}: rows naming files that are not images in {root} "
                         f"({_shown(sorted(missing, key=lambda s: int(s.split(':')[0][5:])))}). "
                         "Fix: correct the paths (relative to the image folder) or delete the rows.")
    names = _classes(labels, class_names, labels_csv)
    index = {c: i for i, c in enumerate(names)}
    notes: list[str] = []
    images, ok = decode_many(files, skip_corrupt=skip_corrupt, notes=notes, desc=f"decoding {root.name}",
                             **_decode_opts(channels, size, workers, cache, cache_dir))
    files = [f for f, k in zip(files, ok) if k]
    y = np.array([index[labels[f][0]] if labels.get(f, ("", 0))[0] else -1 for f in files], dtype=np.int64)
    rel = np.array([str(f.relative_to(root.resolve())) for f in files])
    return ImageSet(images=finish_images(images, stack=stack, where=str(root), names=rel, notes=notes), labels=y,
                    class_names=names, filenames=rel, source=f"folder+labels:{root} {labels_csv}", notes=notes)
