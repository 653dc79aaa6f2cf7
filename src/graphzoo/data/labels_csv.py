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
* An optional ``patient_id`` column groups images by patient (or slide, study): evaluation is then
  drawn from the labels patient-grouped, as for any source with patient ids, so that images of one
  patient never sit on both sides of a held-out estimate. Every labelled row needs one; images
  without an id are never grouped with others.

Every problem names the CSV's line numbers (the header is line 1) and nothing is written.

Labels added to a source with labels of its own
-----------------------------------------------
The same CSV (and ``graphzoo label``'s ``RUN/labels.csv``: ``path,label,index,labelled_at``) can *add* labels
to any other source: an npz with ``-1``, class folders with an ``unlabelled/`` folder, ChestX-ray14, ...
(:func:`overlay_labels`). The rule for ``--labels`` (:func:`csv_is_label_source`): the CSV is the label source
only for a folder of images whose sub-folders are not classes (no sub-folder for every class the CSV names:
``slide3/``, ``2024-05/``); for class folders holding every class it names, and for every other format, it
adds labels. A row then names an image by its file name (as in predictions.csv, relative to the data; or a
base name only one image has) or by ``#<index>`` (its row of predictions.csv). Extra columns are ignored, an
empty label adds nothing, and a row giving an image a label other than the one it has is refused: labels are
added, never changed.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ._images import IMAGE_SUFFIXES, decode_many, finish_images
from .readers import takes_decode_options
from .types import DecodeOptions, ImageSet

__all__ = ["read_labels_csv", "load_with_labels", "overlay_labels", "csv_is_label_source", "class_folders"]


def _shown(items: list, k: int = 5) -> str:
    return "; ".join(map(str, items[:k])) + (f"; ... ({len(items)} in all)" if len(items) > k else "")


def _read_rows(csv_path: str | os.PathLike) -> list[tuple[int, str, str]]:
    """``(line, path, label)`` of every row of a labels CSV (header ``path,label``, any other columns; a BOM
    from Excel is not part of a column name)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels file {csv_path} does not exist. Fix: check --labels / add_labels.")
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = [c.strip().lower() for c in reader.fieldnames or []]
        if "path" not in cols or "label" not in cols:
            raise ValueError(f"{csv_path}: the header must name the columns path,label (found {cols or 'nothing'}). "
                             "Fix: make line 1 'path,label' (other columns, e.g. index,labelled_at, may follow).")
        key = {c.strip().lower(): c for c in reader.fieldnames}
        return [(reader.line_num, (r[key["path"]] or "").strip(), (r[key["label"]] or "").strip()) for r in reader]


def read_labels_csv(csv_path: str | os.PathLike, root: str | os.PathLike) -> dict[Path, tuple[str, int]]:
    """Read ``path,label`` rows: resolved image path -> (label or "" for unlabelled, CSV line).

    Raises ``ValueError`` naming the lines for a missing column, a path outside ``root``, and one
    image given two different labels (repeating the same label is accepted).
    """
    csv_path, root = Path(csv_path), Path(root).resolve()
    rows = _read_rows(csv_path)
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


PATIENT_COLUMNS = ("patient_id", "patient")


def read_patient_ids(csv_path: str | os.PathLike, root: str | os.PathLike,
                     labels: dict[Path, tuple[str, int]]) -> dict[Path, str] | None:
    """Resolved image path -> patient id from the CSV's ``patient_id`` (or ``patient``) column.

    ``None`` when the CSV has no such column. ``labels`` is :func:`read_labels_csv`'s answer for the
    same file (its paths are already checked). Raises ``ValueError`` naming the lines for a labelled
    row without an id: one unnamed patient would otherwise join images that share nothing.
    """
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        key = {c.strip().lower(): c for c in reader.fieldnames or []}
        column = next((key[c] for c in PATIENT_COLUMNS if c in key), None)
        if column is None:
            return None
        rows = [(reader.line_num, (r[key["path"]] or "").strip(), (r[column] or "").strip()) for r in reader]
    root = Path(root).resolve()
    ids: dict[Path, str] = {}
    for _, path, pid in rows:
        full = (Path(path) if Path(path).is_absolute() else root / path).resolve()
        if pid:
            ids[full] = pid
    missing = [f"line {line}" for full, (label, line) in labels.items() if label and full not in ids]
    if missing:
        raise ValueError(f"{csv_path}: labelled rows without a {column} ({_shown(missing)}). Fix: give every "
                         f"labelled image its patient id, or delete the {column} column (the split of the labels "
                         "is then random).")
    return ids


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


@takes_decode_options()
def load_with_labels(
    root: str | os.PathLike,
    labels_csv: str | os.PathLike,
    *,
    decode: DecodeOptions,
    class_names: Sequence[str] | None = None,
) -> ImageSet:
    """Read every image below ``root``, labelled from ``labels_csv`` (-1 where it gives none).

    ``decode`` (:class:`~graphzoo.data.types.DecodeOptions`): the shared decoding keywords, as for
    :func:`~graphzoo.data.load`.

    Returns
    -------
    ImageSet
        ``labels`` int64 (N,) with -1 for the unlabelled images; ``filenames`` relative to
        ``root``; ``patient_ids`` from the CSV's ``patient_id`` column ("" for an image without
        one), else none (the split is then random over the labelled images); no split of its own.

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
    patients = read_patient_ids(labels_csv, root, labels)
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
    images, ok = decode_many(files, notes=notes, desc=f"decoding {root.name}", **decode.decode_kwargs())
    files = [f for f, k in zip(files, ok) if k]
    y = np.array([index[labels[f][0]] if labels.get(f, ("", 0))[0] else -1 for f in files], dtype=np.int64)
    rel = np.array([str(f.relative_to(root.resolve())) for f in files])
    pids = None if patients is None else np.array([patients.get(f, "") for f in files], dtype=str)
    return ImageSet(images=finish_images(images, stack=decode.stack, where=str(root), names=rel, notes=notes), labels=y,
                    class_names=names, filenames=rel, patient_ids=pids, source=f"folder+labels:{root} {labels_csv}",
                    notes=notes)


# ---------------------------------------------------------------------------------------------------------------
# Labels added to a source that has labels of its own (an npz with -1, class folders with unlabelled/, ...)
# ---------------------------------------------------------------------------------------------------------------
def _norm(name: str) -> str:
    name = str(name).replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


class _Finder:
    """Which image a CSV ``path`` names: ``#<index>`` (a row of predictions.csv), the exact relative file name,
    or a base name that only one image has. ``find(path) -> (index, None)`` or ``(None, why not)``."""

    def __init__(self, filenames, n: int, root=None) -> None:
        self.n, self.root = n, None if root is None else Path(root).resolve()
        self.exact: dict[str, int] = {}
        self.base: dict[str, list[int]] = {}
        self.twice: set[str] = set()
        for i, f in enumerate([] if filenames is None else filenames):
            if _norm(f) in self.exact:
                self.twice.add(_norm(f))  # two images share this name: it cannot name either
            self.exact.setdefault(_norm(f), i)
            self.base.setdefault(_norm(f).rsplit("/", 1)[-1], []).append(i)
        self.has_names = filenames is not None

    def find(self, path: str) -> tuple[int | None, str | None]:
        if path.startswith("#"):
            if path[1:].isdigit() and int(path[1:]) < self.n:
                return int(path[1:]), None
            return None, f"{path} is not an image index (the data has images #0 to #{self.n - 1})"
        if not self.has_names:
            return None, f"{path}: the data has no file names; name its images #<index> (the row of predictions.csv)"
        p = _norm(path)
        if Path(path).is_absolute() and self.root is not None:
            try:
                p = _norm(Path(path).resolve().relative_to(self.root).as_posix())
            except ValueError:
                return None, f"{path} is outside the data folder {self.root}"
        if p in self.twice:
            return None, f"{path} names several images of the data (the same file name twice); use #<index>"
        if p in self.exact:
            return self.exact[p], None
        if "/" in p:  # a path with folders must match exactly: slide9/x.png is not unlabelled/x.png
            return None, f"{path} names no image of the data"
        same = self.base.get(p, [])
        if len(same) == 1:
            return same[0], None
        if same:
            return None, f"{path} matches {len(same)} images by name; give its path relative to the data"
        return None, f"{path} names no image of the data"


def overlay_labels(labels: np.ndarray, filenames, class_names: Sequence[str], csv_path, *, root=None,
                   origin: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Add the labels of ``csv_path`` to ``labels`` (int64 (N,), -1 = none).

    A row names an image by ``#<index>`` (its row in predictions.csv, the order :func:`prepare_data` keeps), by its
    ``filenames`` entry (exact, relative to the data) or by a base name only one image has. An empty label adds
    nothing; extra columns (``index``, ``labelled_at`` of ``graphzoo label``) are ignored.

    Returns ``(labels, named, origin)``: the new labels (N,), ``named`` bool (N,) the images a row gives a label,
    and ``origin`` {index: "FILE line L"} (the given ``origin`` extended; it names earlier files in messages).

    Raises ``ValueError``, naming the lines, nothing changed, for: class names not in ``class_names``, rows naming
    no image (or several), two rows giving one image different labels, and a row giving an image a label other
    than the one it has (from the source, or an earlier labels file in ``origin``): a re-label is refused.
    """
    rows = [(line, path, label) for line, path, label in _read_rows(csv_path) if path or label]
    labels = np.array(labels, dtype=np.int64, copy=True)
    finder, index = _Finder(filenames, len(labels), root), {c: i for i, c in enumerate(class_names)}
    origin = dict(origin or {})
    named = np.zeros(len(labels), bool)
    unknown, nowhere, twice, clash = [], [], [], []
    first: dict[int, tuple[int, str]] = {}
    for line, path, label in rows:
        i, why = finder.find(path) if path else (None, "no path")
        if i is None:
            nowhere.append(f"line {line}: {why}")
            continue
        if not label:
            continue
        if label not in index:
            unknown.append(f"line {line}: {label!r}")
            continue
        if i in first:
            if first[i][1] != label:
                twice.append(f"lines {first[i][0]} and {line}: {path} is {first[i][1]!r} and {label!r}")
            continue
        first[i] = (line, label)
        if labels[i] >= 0 and labels[i] != index[label]:
            was = origin.get(i, "the data")
            clash.append(f"line {line}: {path} is {class_names[labels[i]]!r} in {was}, the row says {label!r}")
    problems = [(unknown, f"class names that are not among {list(class_names)}", "correct them"),
                (nowhere, "rows naming no image", "correct the paths (or #<index>) or delete the rows"),
                (twice, "images given two different labels", "keep one row per image"),
                (clash, "re-labels of images that already have another label", "delete the rows, or correct the "
                 "label at its source")]
    said = [f"{what} ({_shown(items)}); fix: {fix}" for items, what, fix in problems if items]
    if said:
        raise ValueError(f"{csv_path}: " + "; ".join(said) + ". Nothing was written.")
    for i, (line, label) in first.items():
        if labels[i] < 0:
            origin[i] = f"{csv_path} line {line}"
        labels[i] = index[label]
        named[i] = True
    return labels, named, origin


def class_folders(root: str | os.PathLike, unlabelled_dirs=("unlabelled",)) -> set[str]:
    """Names of the folders below ``root`` that directly hold images, except ``unlabelled_dirs`` (the classes the
    ``folder`` reader would read); the top folder itself is not one."""
    root, free = Path(root), {str(u).lower() for u in unlabelled_dirs}
    found = set()
    for dirpath, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        d = Path(dirpath)
        if d != root and d.name.lower() not in free and any(
                Path(f).suffix.lower() in IMAGE_SUFFIXES for f in names if not f.startswith(".")):
            found.add(d.name)
    return found


def csv_is_label_source(data, labels_csv, *, data_format: str = "", unlabelled_dirs=("unlabelled",)) -> bool:
    """The rule for ``--labels``: is the CSV the *only* source of labels (True), or does it add to the data's own
    labels (False)?

    True for a folder read as plain images whose sub-folders are not its classes: no sub-folder is named after
    a class the CSV names (``slide3/``, ``2024-05/`` are not classes). False for any other source (an npz,
    ChestX-ray14, CBIS-DDSM, mini-MIAS) and for class folders of which the CSV names at least one
    (``Parasitized/``, ``Uninfected/``, ``unlabelled/``): the CSV then adds labels, and a class name it
    misspells is refused rather than silently turning the folders' own labels off.
    """
    from .readers import detect_format

    path = Path(data)
    if not path.is_dir() or (data_format or detect_format(path)) != "folder":
        return False
    named = {label for _, _, label in _read_rows(labels_csv) if label}
    return not (named and named & class_folders(path, unlabelled_dirs))
