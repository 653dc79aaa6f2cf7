"""NIH ChestX-ray14: ``Data_Entry_2017*.csv[.gz]`` plus the PNG folder(s).

Layout as NIH ships it: ``Data_Entry_2017.csv`` (or the relabelled ``Data_Entry_2017_v2020.csv``,
gzipped or not), ``images_001/images/*.png`` ... ``images_012/images/*.png`` (or one ``images/``
folder), and the official ``train_val_list.txt`` / ``test_list.txt``. Images are found by file
name anywhere below the folder, so re-organised copies (e.g. ``NIH1000/{train,valid,test}/
{0_normal,1_abnormal}/``) work too.

Labels
------
``Finding Labels`` holds ``No Finding`` or ``|``-separated pathologies. The 14 pathologies are
always returned multi-hot in ``multilabels`` (N, 14) over :data:`PATHOLOGIES`. ``labels`` is, by
``label_mode``:

* ``"binary"`` (default): 0 = ``no_finding``, 1 = ``abnormal`` (any pathology);
* ``"single"``: 15 classes, ``No Finding`` then the 14 pathologies; an image with exactly one
  finding gets that class, an image with several gets -1 (unlabelled), with a note.

Split
-----
``train_val_list.txt`` / ``test_list.txt`` next to the CSV or in the folder (official,
patient-disjoint) give ``"train"`` / ``"test"`` (NIH has no official validation set: carve one
from ``"train"`` with :func:`graphzoo.data.patient_split`). Without them, an image under a folder
named ``train``/``valid``/``val``/``test`` (at any depth) takes that name; otherwise no split.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from ._images import IMAGE_SUFFIXES, decode_many, finish_images, note
from ._tables import check_missing, read_csv_rows
from .readers import SPLIT_NAMES, register_reader, takes_decode_options, top_files
from .types import DecodeOptions, ImageSet

__all__ = ["PATHOLOGIES", "read_chestxray14"]

# The order of NIH's paper and of torchxrayvision / our nih1000 npz.
PATHOLOGIES = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
_NO_FINDING = "No Finding"
_REQUIRED = ("Image Index", "Finding Labels")


def _find_csv(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(p for p in path.iterdir() if p.is_file() and re.match(r"(?i)data_entry_2017.*\.csv(\.gz)?$", p.name))
    if not found:
        raise ValueError(f"no Data_Entry_2017*.csv[.gz] in {path}. Fix: put NIH's CSV there, or pass csv=PATH.")
    # Prefer NIH's 2020 relabelling when both versions are present.
    found.sort(key=lambda p: ("v2020" not in p.name.lower(), p.name))
    return found[0]


def _official_split(dirs: Sequence[Path]) -> dict[str, str] | None:
    for d in dirs:
        tv, te = d / "train_val_list.txt", d / "test_list.txt"
        if tv.is_file() and te.is_file():
            out = {name: "train" for name in tv.read_text().split()}
            out.update({name: "test" for name in te.read_text().split()})
            return out
    return None


def _int_or_minus1(value: str) -> int:
    m = re.match(r"\s*0*(\d+)", value or "")  # ages appear as "58" or "058Y" depending on the CSV version
    return int(m.group(1)) if m else -1


def _is_label_csv(name: str) -> bool:
    name = name.lower()
    return name.startswith("data_entry_2017") and (name.endswith(".csv") or name.endswith(".csv.gz"))


def detect(path: Path) -> bool:
    """NIH's ``Data_Entry_2017*.csv[.gz]``, or a folder with one at its top level."""
    return any(_is_label_csv(p.name) for p in top_files(path))


@register_reader("chestxray14", detect=detect, priority=10)
@takes_decode_options()
def read_chestxray14(
    path: Path,
    *,
    decode: DecodeOptions,
    csv: str | os.PathLike | None = None,
    label_mode: str = "binary",
    allow_missing: bool = False,
) -> ImageSet:
    """NIH ChestX-ray14: PNG images with the findings of the Data_Entry_2017 CSV (normal / abnormal, or 14).

    See the module docstring for the layout, the label modes and the split.

    Long: its signature and this docstring take 38 of its 80 lines; the code is 42; the steps are the
    helpers below.

    Parameters
    ----------
    path : Path
        The dataset folder (CSV at its top level, images anywhere below), or the CSV itself
        (images below its folder).
    csv : path-like, optional
        The ``Data_Entry_2017*.csv[.gz]`` when it is not in ``path`` (then images are searched
        below ``path``).
    label_mode : {"binary", "single"}
    allow_missing : bool
        False (default): more than half of the CSV's images missing below ``path`` is an error
        (usually the wrong folder); fewer are left out with a warning. True: load what is found.
    decode : DecodeOptions
        ``skip_corrupt``, ``channels``, ``size``, ``stack``, ``workers``, ``cache``, ``cache_dir``, given as
        keywords or as one object (see :func:`~graphzoo.data.load`). Copies saved as gray-replicated RGB
        come back gray.

    Returns
    -------
    ImageSet
        Only CSV rows whose image is on disk (a note counts the others). ``patient_ids`` from
        ``Patient ID``; ``meta``: ``patient_age``, ``patient_sex``, ``view_position``,
        ``follow_up``; ``filenames``: paths relative to the image folder.
    """
    if label_mode not in ("binary", "single"):
        raise ValueError(f"label_mode must be 'binary' or 'single', got {label_mode!r}")
    notes: list[str] = []
    csv_path = Path(csv).expanduser() if csv is not None else _find_csv(path)
    if not csv_path.exists():
        raise FileNotFoundError(f"CSV {csv_path} does not exist. Fix: check csv=.")
    root = path.parent if path.is_file() else path
    _, rows = read_csv_rows(csv_path, _REQUIRED)
    kept = _match_rows(rows, _index_images(root, notes), csv_path, root, allow_missing, notes)
    multilabels = _multi_hot(kept, csv_path)
    labels, class_names = _labels(multilabels, label_mode, notes)

    files = [p for p, _ in kept]
    images, ok = decode_many(files, notes=notes, desc="decoding ChestX-ray14", **decode.decode_kwargs())
    kept = [k for k, good in zip(kept, ok) if good]
    labels, multilabels = labels[ok], multilabels[ok]
    split = _split(kept, root, csv_path, notes)

    rel = np.array([str(p.relative_to(root)) for p, _ in kept])
    has_patient = "Patient ID" in rows[0]
    if not has_patient:
        note(notes, f"{csv_path.name} has no 'Patient ID' column: no patient ids, so no patient-grouped split")
    meta = {
        "patient_age": np.array([_int_or_minus1(r.get("Patient Age", "")) for _, r in kept], np.int64),
        "patient_sex": np.array([r.get("Patient Gender", "") for _, r in kept]),
        "view_position": np.array([r.get("View Position", "") for _, r in kept]),
        "follow_up": np.array([_int_or_minus1(r.get("Follow-up #", "")) for _, r in kept], np.int64),
    }
    return ImageSet(
        images=finish_images(images, stack=decode.stack, where=str(root), names=rel, notes=notes),
        labels=labels,
        class_names=class_names,
        split=split,
        patient_ids=np.array([r["Patient ID"] for _, r in kept]) if has_patient else None,
        filenames=rel,
        multilabels=multilabels,
        multilabel_names=list(PATHOLOGIES),
        meta=meta,
        source=f"chestxray14:{root} (labels from {csv_path.name})",
        notes=notes,
    )


def _index_images(root: Path, notes: list[str]) -> dict[str, Path]:
    """Image files below ``root`` by base name (NIH names are unique: ``<patient>_<follow-up>.png``).

    A name found twice keeps its first path in sorted order, with one note counting the others.
    """
    on_disk: dict[str, Path] = {}
    dupes = 0
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for f in sorted(files):
            if Path(f).suffix.lower() in IMAGE_SUFFIXES and not f.startswith("."):
                if f in on_disk:
                    dupes += 1
                    continue
                on_disk[f] = Path(dirpath) / f
    if dupes:
        note(notes, f"{root}: {dupes} image file names occur more than once; the first (in sorted path order) was used")
    return on_disk


def _match_rows(
    rows: list[dict[str, str]],
    on_disk: dict[str, Path],
    csv_path: Path,
    root: Path,
    allow_missing: bool,
    notes: list[str],
) -> list[tuple[Path, dict[str, str]]]:
    """(image file, CSV row) for each listed image found on disk, in CSV order, first row per image.

    Listed images not on disk go through :func:`~graphzoo.data._tables.check_missing` (an error
    past half unless ``allow_missing``); image files the CSV does not list get a note.
    """
    seen: set[str] = set()
    kept: list[tuple[Path, dict[str, str]]] = []
    for r in rows:
        name = r["Image Index"]
        if name in seen:
            continue
        seen.add(name)
        if name in on_disk:
            kept.append((on_disk[name], r))
    if not kept:
        raise ValueError(
            f"none of the {len(rows)} images listed in {csv_path} were found below {root}. Fix: point "
            "at the folder that holds the PNGs (any depth), or pass csv= and the image folder."
        )
    absent = [name for name in seen if name not in on_disk]
    check_missing(
        f"{csv_path.name}: {len(absent)} of {len(seen)} listed images are not below {root} "
        f"(e.g. {min(absent, default='')})",
        len(absent),
        len(seen),
        allow_missing=allow_missing,
        fix="point at the folder that holds the PNGs (any depth)",
        notes=notes,
    )
    unlisted = len(on_disk) - len(kept)
    if unlisted > 0:
        note(notes, f"{root}: {unlisted} image files are not listed in {csv_path.name} and were ignored")
    return kept


def _multi_hot(kept: list[tuple[Path, dict[str, str]]], csv_path: Path) -> np.ndarray:
    """The rows' ``Finding Labels`` as int64 (N, 14) multi-hot over :data:`PATHOLOGIES`."""
    index = {name: i for i, name in enumerate(PATHOLOGIES)}
    multilabels = np.zeros((len(kept), len(PATHOLOGIES)), np.int64)
    for i, (_, r) in enumerate(kept):
        for finding in r["Finding Labels"].split("|"):
            finding = finding.strip()
            if finding == _NO_FINDING or not finding:
                continue
            if finding not in index:
                raise ValueError(
                    f"{csv_path}: unknown finding {finding!r} for {r['Image Index']} (known: "
                    f"{_NO_FINDING!r}, {', '.join(PATHOLOGIES)}). Fix: correct the 'Finding Labels' column."
                )
            multilabels[i, index[finding]] = 1
    return multilabels


def _labels(multilabels: np.ndarray, label_mode: str, notes: list[str]) -> tuple[np.ndarray, list[str]]:
    """(labels int64 (N,), class names) of ``label_mode`` from the (N, 14) multi-hot findings."""
    n_pos = multilabels.sum(axis=1)
    if label_mode == "binary":
        return (n_pos > 0).astype(np.int64), ["no_finding", "abnormal"]
    labels = np.where(n_pos == 0, 0, np.where(n_pos == 1, multilabels.argmax(axis=1) + 1, -1)).astype(np.int64)
    if (labels == -1).any():
        note(
            notes,
            f"label_mode='single': {int((labels == -1).sum())} images with several findings are unlabelled (-1)",
        )
    return labels, [_NO_FINDING, *PATHOLOGIES]


def _split(kept: list[tuple[Path, dict[str, str]]], root: Path, csv_path: Path, notes: list[str]) -> np.ndarray | None:
    """The split (N,) from NIH's official lists, else from train/valid/test folders, else None."""
    official = _official_split([root, csv_path.parent])
    if official is not None:
        split = np.array([official.get(r["Image Index"], "") for _, r in kept])
        if (split == "").any():
            note(
                notes,
                f"{int((split == '').sum())} images are in neither train_val_list.txt nor test_list.txt; "
                "their split is ''",
            )
        return split
    folder_split = []
    for p, _ in kept:
        parts = [q.lower() for q in p.relative_to(root).parts[:-1]]
        folder_split.append(next((q for q in reversed(parts) if q in SPLIT_NAMES), ""))
    split = np.array(folder_split) if any(folder_split) else None
    if split is not None and (split == "").any():
        note(notes, f"{int((split == '').sum())} images are not under a train/valid/test folder; their split is ''")
    return split
