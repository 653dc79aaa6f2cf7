"""CBIS-DDSM: the mass / calcification case-description CSVs plus the DICOM tree.

The four official CSVs (``mass_case_description_{train,test}_set.csv``,
``calc_case_description_{train,test}_set.csv``) have one row per abnormality with
``patient_id``, ``pathology`` (``MALIGNANT``, ``BENIGN``, ``BENIGN_WITHOUT_CALLBACK``) and three
paths into the TCIA tree: ``image file path`` (full mammogram), ``cropped image file path``
(lesion crop) and ``ROI mask file path``. Headers differ slightly between files
(``breast density`` vs ``breast_density``); they are matched lower-cased with spaces as ``_``.

Matching CSV paths to files
---------------------------
The CSV paths (``Mass-Training_P_00001_LEFT_CC/<study UID>/<series UID>/000000.dcm``) rarely
match a download as is: the NBIA client names folders ``<date>-<study>/<n>-<series
description>/1-1.dcm``, and copies re-root or convert the tree. Each path is tried, in order:

1. as written, below ``image_root``;
2. as the last components of any file below ``image_root`` (a re-rooted tree);
3. by folder name: the files below a folder named like the case (first component, e.g.
   ``Mass-Training_P_00001_LEFT_CC_1``), or like the series or study UID (JPEG/PNG copies keyed
   by UID). When that folder holds several images (a case folder holds both the crop and the
   ROI mask, and the CSVs swap their names in places), the crop is the one with the fewest pixels
   and the mask (and the full mammogram) the one with the most, read from the headers.

Rows whose image is not found are left out with a note giving the count and an example; when more
than half are missing the load stops instead (``allow_missing=True`` loads what is found).

Labels
------
0 = ``benign``, 1 = ``malignant``. ``BENIGN_WITHOUT_CALLBACK`` (benign, not recalled for a
follow-up) is by default benign (``bwc="benign"``); ``bwc="separate"`` makes it a third class
``benign_without_callback`` (classes then ``benign``, ``benign_without_callback``,
``malignant``), ``bwc="drop"`` leaves those rows out. With ``image="full"`` several rows (lesions)
share one mammogram: it is read once, malignant if any lesion is, else benign if any is, else
benign_without_callback.

``image="patch"`` cuts a lesion-centred patch (``patch_px``, 640 px = about 32 mm) from the full
mammogram around the centre of the row's ROI mask (:mod:`graphzoo.data._cbis_patches`); a row whose mask
is missing, empty, or not of its mammogram's size is skipped with a count per reason. The label is the
row's pathology, so the task is benign vs malignant lesions; CBIS-DDSM has no normal films, so the
abnormal-vs-normal-tissue task of the MIAS patches has no counterpart here. Patients: one woman has
rows in both official CSV splits at times (31 in the four CSVs: a mass in one, calcifications in the
other); the reader notes it, and a run's patient-grouped split keeps her on one side.

Images: none are obtainable for this project (the shared data folder has the four CSVs only), so the
patch mode is tested on a small synthetic PNG tree laid out like the CBIS-DDSM one.

DICOM pixels go through :func:`graphzoo.data._dicom.read_dicom` (rescale, VOI LUT, MONOCHROME1
inversion, uint8). Full mammograms are large (about 3000 x 5000): pass ``size=`` to shrink them
on read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ._images import DICOM_SUFFIXES, IMAGE_SUFFIXES, decode_many, finish_images, note
from ._tables import check_missing, read_csv_rows
from ._cbis_patches import lesion_patches
from .readers import register_reader, takes_decode_options, top_files
from .types import DecodeOptions, ImageSet

__all__ = ["read_cbis_ddsm", "NoImagesFoundError"]

_PATH_COLUMN = {"full": "image_file_path", "cropped": "cropped_image_file_path", "roi": "roi_mask_file_path",
                "patch": "image_file_path"}
_META_COLUMNS = (
    "breast_density",
    "left_or_right_breast",
    "image_view",
    "abnormality_id",
    "abnormality_type",
    "mass_shape",
    "mass_margins",
    "calc_type",
    "calc_distribution",
    "assessment",
    "subtlety",
)


class NoImagesFoundError(ValueError):
    """None of the CSV rows' images is on disk (the CSVs alone can still be read: metadata_only)."""


def _norm(header: str) -> str:
    return re.sub(r"[\s_]+", "_", header.strip().lower())


def _pixel_count(path: Path) -> int:
    """Rows x columns from the header only (no pixel decoding); -1 when unreadable."""
    try:
        if path.suffix.lower() in DICOM_SUFFIXES or path.suffix == "":
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return int(ds.Rows) * int(ds.Columns)
        from PIL import Image

        with Image.open(path) as im:
            return im.size[0] * im.size[1]
    except Exception:  # an unreadable candidate is reported when it is decoded, not here
        return -1


class _DiskIndex:
    """Every image file below ``root``, indexed by relative path, path tail and folder names."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_tail: dict[str, Path] = {}
        self.by_dir: dict[str, list[Path]] = {}
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel_dir = Path(dirpath).relative_to(root).parts
            for f in sorted(files):
                suffix = Path(f).suffix.lower()
                if f.startswith(".") or suffix not in IMAGE_SUFFIXES:
                    continue
                p = Path(dirpath) / f
                parts = (*rel_dir, f)
                for k in range(2, min(len(parts), 4) + 1):
                    self.by_tail.setdefault("/".join(parts[-k:]), p)
                for d in rel_dir:
                    self.by_dir.setdefault(d, []).append(p)
        self._sizes: dict[Path, int] = {}

    def _size(self, p: Path) -> int:
        if p not in self._sizes:
            self._sizes[p] = _pixel_count(p)
        return self._sizes[p]

    def find(self, csv_path: str, kind: str) -> Path | None:
        parts = [q for q in csv_path.replace("\\", "/").strip().strip("/").split("/") if q]
        if not parts:
            return None
        exact = self.root.joinpath(*parts)
        if exact.is_file():
            return exact
        # A tail of two or more components (series UID + file name at least) is unique; the bare
        # file name ("000000.dcm") is not.
        for k in range(min(len(parts), 4), 1, -1):
            hit = self.by_tail.get("/".join(parts[-k:]))
            if hit is not None:
                return hit
        for name in (parts[0], *(parts[1:3] if len(parts) >= 3 else ())):
            cands = self.by_dir.get(name)
            if cands:
                if len(cands) == 1:
                    return cands[0]
                sizes = [self._size(c) for c in cands]
                pick = int(np.argmin(sizes)) if kind == "cropped" else int(np.argmax(sizes))
                return cands[pick]
        return None


def _split_of(csv_name: str) -> str:
    name = csv_name.lower()
    return "test" if "test" in name else "train" if "train" in name else ""


def _is_case_csv(name: str) -> bool:
    name = name.lower()
    return "case_description" in name and name.endswith(".csv")


def detect(path: Path) -> bool:
    """A ``*case_description*.csv``, or a folder with one at its top level."""
    return any(_is_case_csv(p.name) for p in top_files(path))


@register_reader("cbis_ddsm", detect=detect, priority=20)
@takes_decode_options()
def read_cbis_ddsm(
    path: Path,
    *,
    decode: DecodeOptions,
    image: str = "cropped",
    abnormality: str = "both",
    bwc: str = "benign",
    image_root: str | os.PathLike | None = None,
    metadata_only: bool = False,
    allow_missing: bool = False,
    patch_px: int = 640,
) -> ImageSet:
    """CBIS-DDSM lesions: the case-description CSVs with the DICOM crops, mammograms or ROI masks.

    See the module docstring for how CSV paths are matched to files and how labels are made.

    Long: its signature and this docstring take 49 of its 92 lines; the code is 43; the steps are the
    helpers below.

    Parameters
    ----------
    path : Path
        Folder holding the ``*case_description*.csv`` files (at its top level), or one CSV.
    image : {"cropped", "full", "roi", "patch"}
        Which image of each row: the lesion crop (default), the full mammogram, the ROI mask, or a
        lesion-centred patch of the full mammogram around the ROI mask (:mod:`._cbis_patches`; rows whose
        mask is missing, empty or of another size than the mammogram are skipped with a count).
    patch_px : the patch side in mammogram pixels for ``image="patch"`` (640, about 32 mm at 50 µm);
        ``size`` then resizes the patches.
    abnormality : {"both", "mass", "calc"}
        Which CSVs (by file name prefix ``mass_`` / ``calc_``).
    bwc : {"benign", "separate", "drop"}
        What ``BENIGN_WITHOUT_CALLBACK`` becomes.
    image_root : path-like, optional
        Top of the DICOM tree; default ``path`` (its folder when ``path`` is a CSV).
    metadata_only : bool
        Read the CSVs only: ``images`` is None and every row is kept (for counting and splitting
        before the images are downloaded).
    allow_missing : bool
        False (default): more than half of the rows' images missing is an error (usually the wrong
        ``image_root``); fewer are left out with a warning. True: load what is found.
    decode : DecodeOptions
        ``skip_corrupt``, ``channels``, ``size``, ``stack``, ``workers``, ``cache``, ``cache_dir``, given as
        keywords or as one object (see :func:`~graphzoo.data.load`).

    Returns
    -------
    ImageSet
        ``split`` "train"/"test" from the CSV name; ``patient_ids`` from ``patient_id``;
        ``filenames`` relative to ``image_root`` (the CSV path when ``metadata_only``); ``meta``
        holds ``pathology`` (as written), ``csv_file``, ``csv_path`` and the descriptive columns
        (``breast_density``, ``image_view``, ``mass_shape``, ``calc_type``, ``assessment``,
        ``subtlety``, ...; '' where a CSV lacks the column).
    """
    for name, value, allowed in (
        ("image", image, _PATH_COLUMN),
        ("abnormality", abnormality, ("both", "mass", "calc")),
        ("bwc", bwc, ("benign", "separate", "drop")),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    notes: list[str] = []
    csvs = _case_csvs(path, abnormality)
    root = Path(image_root).expanduser() if image_root is not None else (path.parent if path.is_file() else path)
    rows, class_names = _read_rows(csvs, _PATH_COLUMN[image], bwc, notes)

    if metadata_only:
        files = [r["_path"] for r in rows]
        images = None
    elif image == "patch":
        rows = _match_images(rows, csvs, root, "full", allow_missing, notes)
        index = _DiskIndex(root)
        rows, patches, _ = lesion_patches(rows, lambda r: index.find(r.get("roi_mask_file_path", ""), "roi"),
                                          patch_px=patch_px, size=decode.size, skip_corrupt=decode.skip_corrupt,
                                          notes=notes)
        files = [f"{r['_file'].relative_to(root)}#{r['_centre_row']},{r['_centre_col']}" for r in rows]
        images = finish_images(patches, stack=decode.stack, where=str(root), names=files, notes=notes)
    else:
        rows = _match_images(rows, csvs, root, image, allow_missing, notes)
        if image == "full":
            rows = _one_per_mammogram(rows, notes)
        decoded, ok = decode_many([r["_file"] for r in rows], notes=notes, desc="decoding CBIS-DDSM",
                                  **decode.decode_kwargs())
        rows = [r for r, good in zip(rows, ok) if good]
        files = [str(r["_file"].relative_to(root)) for r in rows]
        images = finish_images(decoded, stack=decode.stack, where=str(root), names=files, notes=notes)

    meta = {c: np.array([r.get(c, "") for r in rows]) for c in _META_COLUMNS}
    meta["pathology"] = np.array([r["pathology"] for r in rows])
    meta["csv_file"] = np.array([r["_csv"] for r in rows])
    meta["csv_path"] = np.array([r["_path"] for r in rows])
    if image == "patch" and not metadata_only:
        for key in ("centre_row", "centre_col", "roi_height", "roi_width"):
            meta[key] = np.array([r[f"_{key}"] for r in rows], np.int64)
    _note_patients_in_both_splits(rows, notes)
    return ImageSet(
        images=images,
        labels=np.array([r["_label"] for r in rows], np.int64),
        class_names=class_names,
        split=np.array([r["_split"] for r in rows]),
        patient_ids=np.array([r["patient_id"] for r in rows]),
        filenames=np.array(files),
        meta=meta,
        source=f"cbis_ddsm:{root} ({image} images, CSVs: {', '.join(p.name for p in csvs)})",
        notes=notes,
    )


def _note_patients_in_both_splits(rows: list[dict], notes: list[str]) -> None:
    """The official split is by CSV, not by woman: a note when a patient has rows in both (mass in one, calc in
    the other), so a run should split by patient (``split: patient``, the default where ids exist)."""
    by_split: dict[str, set] = {}
    for r in rows:
        by_split.setdefault(r["_split"], set()).add(r["patient_id"])
    both = by_split.get("train", set()) & by_split.get("test", set())
    if both:
        note(notes, f"{len(both)} patients have rows in both the official train and test CSVs (e.g. {min(both)}); "
                    "a run's patient-grouped split (split: patient) keeps each on one side")


def _case_csvs(path: Path, abnormality: str) -> list[Path]:
    """The case-description CSVs to read: ``path`` itself, or those at its top level (of ``abnormality``)."""
    if path.is_file():
        return [path]
    csvs = sorted(
        p
        for p in path.iterdir()
        if p.is_file() and _is_case_csv(p.name)
    )
    if abnormality != "both":
        csvs = [p for p in csvs if p.name.lower().startswith(abnormality)]
    if not csvs:
        raise ValueError(
            f"no {'' if abnormality == 'both' else abnormality + '_'}*case_description*.csv in {path}. "
            "Fix: point at the folder with the CBIS-DDSM case-description CSVs."
        )
    return csvs


def _read_rows(csvs: list[Path], column: str, bwc: str, notes: list[str]) -> tuple[list[dict], list[str]]:
    """(rows, class names): every CSV row with its label, split, CSV name and image path; ``bwc`` applied.

    Each row is the CSV's columns (normalised names) plus ``_label`` (int), ``_split``
    (``train``/``test`` from the CSV name), ``_csv`` (the CSV's name) and ``_path`` (the row's
    ``column``, the image's path as the CSV writes it).
    """
    if bwc == "separate":
        class_names = ["benign", "benign_without_callback", "malignant"]
        code = {"BENIGN": 0, "BENIGN_WITHOUT_CALLBACK": 1, "MALIGNANT": 2}
    else:
        class_names = ["benign", "malignant"]
        code = {"BENIGN": 0, "BENIGN_WITHOUT_CALLBACK": 0, "MALIGNANT": 1}
    rows: list[dict[str, str]] = []
    for csv_path in csvs:
        _, table = read_csv_rows(
            csv_path, ("patient_id", "pathology", column.replace("_", " ").replace("roi", "ROI")), normalise=_norm
        )
        for lineno, r in enumerate(table, 2):
            pathology = r["pathology"].upper()
            if pathology not in code:
                raise ValueError(
                    f"{csv_path}: row {lineno} has pathology {r['pathology']!r}; expected MALIGNANT, BENIGN or "
                    "BENIGN_WITHOUT_CALLBACK. Fix: correct the row."
                )
            if bwc == "drop" and pathology == "BENIGN_WITHOUT_CALLBACK":
                continue
            rows.append(
                {
                    **r,
                    "pathology": pathology,
                    "_label": code[pathology],
                    "_split": _split_of(csv_path.name),
                    "_csv": csv_path.name,
                    "_path": r[column].strip(),
                }
            )
    if bwc == "drop":
        note(notes, "bwc='drop': BENIGN_WITHOUT_CALLBACK rows were left out")
    return rows, class_names


def _match_images(
    rows: list[dict], csvs: list[Path], root: Path, image: str, allow_missing: bool, notes: list[str]
) -> list[dict]:
    """The rows whose ``image`` file is found below ``root``, each with its ``_file`` path added.

    Raises :class:`NoImagesFoundError` when none is found; more than half missing is an error
    unless ``allow_missing`` (see :func:`~graphzoo.data._tables.check_missing`).
    """
    index = _DiskIndex(root)
    found = [index.find(r["_path"], image) for r in rows]
    missing = [r for r, f in zip(rows, found) if f is None]
    if len(missing) == len(rows):
        raise NoImagesFoundError(
            f"none of the {len(rows)} {image} images named in {', '.join(p.name for p in csvs)} was found "
            f"below {root} (e.g. {rows[0]['_path']!r}). Fix: pass image_root= the folder holding the "
            "CBIS-DDSM DICOM tree (the one with the Mass-Training_... / Calc-Test_... folders), or "
            "metadata_only=True to read the CSVs alone."
        )
    check_missing(
        f"{len(missing)} of {len(rows)} rows have no {image} image below {root} "
        f"(e.g. {missing[0]['_path'] if missing else ''!r})",
        len(missing),
        len(rows),
        allow_missing=allow_missing,
        fix="pass image_root= the folder holding the CBIS-DDSM DICOM tree",
        notes=notes,
    )
    return [dict(r, _file=f) for r, f in zip(rows, found) if f is not None]


def _one_per_mammogram(rows: list[dict], notes: list[str]) -> list[dict]:
    """One row per image file: several lesions share one mammogram, and the worst pathology wins."""
    rank = {"MALIGNANT": 2, "BENIGN": 1, "BENIGN_WITHOUT_CALLBACK": 0}
    by_file: dict[Path, dict] = {}
    for r in rows:
        best = by_file.get(r["_file"])
        if best is None or rank[r["pathology"]] > rank[best["pathology"]]:
            by_file[r["_file"]] = r
    if len(by_file) < len(rows):
        note(
            notes,
            f"image='full': {len(rows)} lesion rows share {len(by_file)} mammograms; "
            "one image each, labelled by its worst pathology",
        )
    return list(by_file.values())
