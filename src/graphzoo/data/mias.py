"""mini-MIAS mammograms: ``mdbNNN.pgm`` films plus the ground-truth ``Info.txt``.

Each ``Info.txt`` data row reads ``mdbNNN tissue class [severity x y radius]``: background tissue
F/G/D, abnormality class (CALC, CIRC, SPIC, MISC, ARCH, ASYM or NORM), severity B/M, and the
centre (x, y) and radius of a circle around the abnormality in the 1024x1024 film, origin at the
*bottom-left* corner. A film with several abnormalities has several rows; some rows have no
centre (widely distributed calcifications, "*NOTE 3*").

Labels: 0 = ``normal`` (NORM), 1 = ``benign``, 2 = ``malignant``; a film with several
abnormalities is malignant if any is. Patients: films come in left/right pairs
(mdb001+mdb002, mdb003+mdb004, ...), so ``patient_ids`` is ``mias_{(NNN + 1) // 2:03d}`` and a
patient-grouped split keeps both breasts of a woman together.

``meta`` (same names as in our ``mini_mias_*.npz``): ``background_tissue``, ``abnormality_class``
``centre_x_1024``, ``centre_y_1024_from_bottom``, ``radius_1024`` (all of the film's first row;
-1 where absent), ``n_abnormalities`` and ``annotations_json`` (every row of the film as a JSON list
``[tissue, class, severity, x, y, radius]``). To place the centre in array coordinates of a film
resized to ``S`` pixels:
``col = x * S / 1024``, ``row = (1024 - y) * S / 1024``.

Our npz of the films (``mini_mias_*.npz``: ``images``, ``labels``, ``filenames`` ``mdbNNN``, the
``meta`` arrays above, no ``patient_ids``) is read by this reader too, through the generic npz
reader, with the patient ids derived from the film names as above; :func:`graphzoo.data.detect_format`
picks ``mias`` for an npz whose file names are all ``mdbNNN`` and that stores no patient ids, so a
run on it gets a patient-grouped split. ``format="npz"`` reads the same file without patient ids.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ._images import decode_many, finish_images, note
from ._tables import check_missing
from .npz import read_npz
from .readers import npz_keys, register_reader, takes_decode_options
from .types import DecodeOptions, ImageSet

__all__ = ["parse_info", "read_mias", "MIAS_CLASSES"]

MIAS_CLASSES = ("normal", "benign", "malignant")
_ROW = re.compile(r"^(mdb\d{3})\s+([FGD])\s+([A-Z]{4})\b(.*)$")


def parse_info(path: Path) -> dict[str, list[dict]]:
    """Parse ``Info.txt`` into ``{ref: [row, ...]}`` in file order.

    Each row is a dict with ``tissue``, ``class``, ``severity`` (``"B"``, ``"M"`` or ``""``),
    ``x``, ``y``, ``radius`` (ints, -1 when absent). The prose around the table is skipped.

    Raises
    ------
    ValueError
        No data rows at all, or a severity other than B/M (the message names the line).
    """
    films: dict[str, list[dict]] = {}
    text = Path(path).read_text(encoding="latin-1")
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _ROW.match(line.strip())
        if not m:
            continue
        ref, tissue, cls, rest = m.groups()
        tokens = rest.replace("*NOTE 3*", " ").split()
        severity = ""
        if tokens and not tokens[0].lstrip("-").isdigit():
            severity = tokens.pop(0)
            if severity not in ("B", "M"):
                raise ValueError(
                    f"{path}:{lineno}: severity {severity!r} is not B or M in {line.strip()!r}. Fix: correct the line."
                )
        nums = [int(t) for t in tokens[:3] if t.lstrip("-").isdigit()]
        nums += [-1] * (3 - len(nums))
        films.setdefault(ref, []).append(
            {"tissue": tissue, "class": cls, "severity": severity, "x": nums[0], "y": nums[1], "radius": nums[2]}
        )
    if not films:
        raise ValueError(
            f"{path} has no 'mdbNNN tissue class ...' rows. Fix: use the Info.txt that comes with mini-MIAS."
        )
    return films


def _find_info(path: Path) -> Path:
    if path.is_file():
        return path
    for d in [path] + sorted(p for p in path.iterdir() if p.is_dir()):
        if (d / "Info.txt").is_file():
            return d / "Info.txt"
    raise ValueError(
        f"no Info.txt in {path} or its subfolders. Fix: point at the mini-MIAS folder "
        "(with Info.txt and the .pgm files)."
    )


def _is_films_npz(path: Path) -> bool:
    """Our npz of mini-MIAS: every file name ``mdbNNN``, and no patient ids of its own."""
    if not (path.is_file() and path.suffix.lower() == ".npz"):
        return False
    keys = npz_keys(path)
    if "filenames" not in keys or "patient_ids" in keys:
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            names = z["filenames"]  # only this array is read from the archive
    except ValueError:  # an object array: not ours
        return False
    return len(names) > 0 and all(MIAS_REF.fullmatch(str(f)) for f in names)


def detect(path: Path) -> bool:
    """``Info.txt``; a folder with ``Info.txt`` and ``.pgm`` films (or one folder down); our npz of them."""
    if path.is_file():
        return path.name.lower() == "info.txt" or _is_films_npz(path)
    dirs = [p for p in path.iterdir() if not p.name.startswith(".") and p.is_dir()]
    return any((d / "Info.txt").is_file() and any(d.glob("*.pgm")) for d in [path, *dirs])


def _read_films_npz(path: Path) -> ImageSet:
    """Our npz of the films, with patient ids from the ``mdbNNN`` names when it stores none."""
    ds = read_npz(path)
    if ds.patient_ids is not None:
        return replace(ds, source=f"mias:{path}")
    if ds.filenames is None or not all(MIAS_REF.fullmatch(str(f)) for f in ds.filenames):
        raise ValueError(
            f"{path} has no 'filenames' of mini-MIAS films (mdbNNN), so no patient ids can be derived. "
            "Fix: read it with format='npz', or store a 'patient_ids' array in it."
        )
    note(ds.notes, f"{path}: mini-MIAS film names (mdbNNN); patient ids derived from the left/right pairs")
    return replace(ds, patient_ids=mias_patient_ids(ds.filenames), source=f"mias:{path}")


@register_reader("mias", detect=detect, priority=30)
@takes_decode_options()
def read_mias(path: Path, *, decode: DecodeOptions, allow_missing: bool = False) -> ImageSet:
    """mini-MIAS mammograms: the .pgm films with Info.txt, or our npz of them (normal / benign / malignant).

    Reads the films listed in ``Info.txt`` and present as ``.pgm`` (see the module docstring).

    Parameters
    ----------
    path : Path
        The folder with ``Info.txt`` and the PGMs (or its parent, or ``Info.txt`` itself), or our
        ``mini_mias_*.npz``.
    allow_missing : bool
        False (default): more than half of the films in ``Info.txt`` without a ``.pgm`` is an error
        (usually the wrong folder); fewer are left out with a warning. True: load what is found.
    decode : DecodeOptions
        ``skip_corrupt``, ``channels``, ``size``, ``stack``, ``workers``, ``cache``, ``cache_dir``, given as
        keywords or as one object (see :func:`~graphzoo.data.load`).
        ``size=256`` gives the films of our ``mini_mias_256.npz``. ``channels``, ``size`` and ``stack``
        apply to the ``.pgm`` films, not to the npz (its films are decoded already).
    """
    if path.suffix.lower() == ".npz":
        given = [k for k in ("channels", "size", "stack") if getattr(decode, k) is not None]
        if given:
            raise ValueError(
                f"{path} holds decoded films: {', '.join(given)} apply to the .pgm files only. "
                "Fix: leave them out (a run resizes with image_size)."
            )
        return _read_films_npz(path)
    notes: list[str] = []
    info = _find_info(path)
    folder = info.parent
    films = parse_info(info)
    pgms = {p.stem: p for p in folder.glob("*.pgm")}
    refs = [r for r in sorted(films) if r in pgms]
    if not refs:
        raise ValueError(
            f"none of the {len(films)} films in {info} has a .pgm in {folder}. "
            "Fix: put the mdbNNN.pgm files next to Info.txt."
        )
    absent = sorted(set(films) - set(refs))
    check_missing(
        f"{info}: {len(absent)} of {len(films)} listed films have no .pgm in {folder} (e.g. {min(absent, default='')})",
        len(absent),
        len(films),
        allow_missing=allow_missing,
        fix="put the mdbNNN.pgm files next to Info.txt",
        notes=notes,
    )
    extra = sorted(set(pgms) - set(films))
    if extra:
        note(notes, f"{folder}: {len(extra)} .pgm files are not in Info.txt and were ignored ({', '.join(extra[:3])})")

    images, ok = decode_many([pgms[r] for r in refs], notes=notes, desc="decoding MIAS", **decode.decode_kwargs())
    refs = [r for r, good in zip(refs, ok) if good]
    labels, meta = _labels_and_meta(refs, films)
    return ImageSet(
        images=finish_images(images, stack=decode.stack, where=str(folder), names=refs, notes=notes),
        labels=labels,
        class_names=list(MIAS_CLASSES),
        patient_ids=mias_patient_ids(refs),
        filenames=np.array(refs),
        meta=meta,
        source=f"mias:{folder}",
        notes=notes,
    )


def _labels_and_meta(refs: list[str], films: dict[str, list[dict]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels int64 (N,) and the ``meta`` arrays (N,) of the films ``refs`` (see the module docstring).

    A film is malignant if any of its rows is, else benign if any is; the centre and radius are
    its first row's.
    """
    labels, tissue, cls, cx, cy, rad, n_ab, ann = [], [], [], [], [], [], [], []
    for r in refs:
        rows = films[r]
        sev = {row["severity"] for row in rows}
        labels.append(2 if "M" in sev else 1 if "B" in sev else 0)
        tissue.append(rows[0]["tissue"])
        cls.append(rows[0]["class"])
        cx.append(rows[0]["x"])
        cy.append(rows[0]["y"])
        rad.append(rows[0]["radius"])
        n_ab.append(sum(row["class"] != "NORM" for row in rows))
        ann.append(json.dumps([[q["tissue"], q["class"], q["severity"], q["x"], q["y"], q["radius"]] for q in rows]))
    meta = {
        "background_tissue": np.array(tissue),
        "abnormality_class": np.array(cls),
        "centre_x_1024": np.array(cx, np.int64),
        "centre_y_1024_from_bottom": np.array(cy, np.int64),
        "radius_1024": np.array(rad, np.int64),
        "n_abnormalities": np.array(n_ab, np.int64),
        "annotations_json": np.array(ann),
    }
    return np.array(labels, np.int64), meta


MIAS_REF = re.compile(r"mdb\d{3}")


def mias_patient_ids(refs) -> np.ndarray:
    """Patient ids of mini-MIAS films: ``mdbNNN`` come in left / right pairs of one woman
    (mdb001 + mdb002, mdb003 + mdb004, ...), so the id is ``mias_{(NNN + 1) // 2:03d}``."""
    return np.array([f"mias_{(int(str(r)[3:6]) + 1) // 2:03d}" for r in refs])
