"""Lesion-centred mini-MIAS patches: the abnormal-vs-normal-tissue and benign-vs-malignant tasks.

Whole films at a few hundred pixels hide their lesions (a median MIAS lesion has a radius of 41 px of
1024, 8 mm), so these readers cut patches of a fixed physical size instead:

* ``mias_patches`` (``labels="abnormal"``): one patch centred on every annotated abnormality
  (class ``abnormal``) and ``normal_per_film`` patches of normal tissue from every normal film (class
  ``normal``), drawn inside the breast (see :func:`~graphzoo.data._patches.normal_centres`).
* ``mias_patches_malignancy``: the lesion patches only, ``benign`` or ``malignant`` by their own
  ``Info.txt`` severity.

Input: anything :func:`~graphzoo.data.mias.read_mias` reads (our ``mini_mias_*.npz``, best the 512 px
``extra/mini_mias_512.npz``, or the ``.pgm`` films with ``Info.txt``); every ``Info.txt`` row of a film
comes from its ``annotations_json``.

Geometry: the 1024 px MIAS film has 200 µm pixels, so a film of side ``S`` has ``0.2 * 1024 / S`` mm
pixels and a patch of ``patch_mm`` mm is ``round(patch_mm / (0.2 * 1024 / S))`` pixels. ``Info.txt`` gives
the centre ``(x, y)`` with the origin at the *bottom-left*: the pixel ``(x, y)`` of the 1024 px film is
array element ``[1023 - y, x]``, and in a film of side ``S`` the element
``[floor((1023.5 - y) * S / 1024), floor((x + 0.5) * S / 1024)]`` (the pixel whose area holds that
pixel's centre). The radius becomes ``radius * S / 1024`` pixels.

Bad input is skipped, never cropped wrongly; each reason's count is a note (``graphzoo data inspect``
and the run's warnings show it): a lesion without centre or radius (``Info.txt`` *NOTE 3*), one whose
centre is outside the film, one whose centre is outside the breast mask (background), every patch of a
film whose breast mask is not found, and a normal film with no room for a normal patch.

Patients: every patch carries its film's patient id (``mias_{(NNN + 1) // 2:03d}``, the left/right pair
of one woman), so a patient-grouped split keeps all patches of a woman on one side.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ._images import note
from ._patches import CONTRASTS, breast_mask, crop, normal_centres, stretch
from .mias import mias_patient_ids, read_mias
from .readers import register_reader, takes_decode_options
from .types import DecodeOptions, ImageSet

__all__ = ["read_mias_patches", "read_mias_patches_malignancy", "extract_patches", "lesion_position", "MM_1024"]

MM_1024 = 0.2  # mm per pixel of the 1024 px MIAS film
LABELS = {"abnormal": ["normal", "abnormal"], "malignancy": ["benign", "malignant"]}
SKIP_REASONS = {
    "no_centre": "lesion without a centre or radius in Info.txt",
    "outside": "lesion centre outside the film",
    "background": "lesion centre outside the breast mask (background)",
    "no_breast": "film with no breast tissue found (its lesions / normal patches)",
    "no_room": "normal film with no room for a normal-tissue patch",
}


def lesion_position(x: int, y: int, radius: int, side: int) -> tuple[int, int, float] | None:
    """``(row, col, radius_px)`` in a film of ``side`` pixels of the ``Info.txt`` centre ``(x, y)`` (origin
    bottom-left, 1024 px) and radius; None when the centre is outside the 1024 px film."""
    if not (0 <= x < 1024 and 0 <= y < 1024):
        return None
    scale = side / 1024
    return int((1023.5 - y) * scale), int((x + 0.5) * scale), radius * scale


def _film_lesions(ref, rows, film, mask, side, skips):
    """The valid lesions ``(row, col, radius_px, info_row)`` of one film; bad ones counted in ``skips``."""
    out = []
    for q in rows:
        tissue, cls, severity, x, y, radius = q
        if cls == "NORM":
            continue
        if min(x, y) < 0 or radius <= 0:
            skips["no_centre"].append(ref)
            continue
        pos = lesion_position(x, y, radius, side)
        if pos is None:
            skips["outside"].append(ref)
        elif mask is None:
            skips["no_breast"].append(ref)
        elif not mask[pos[0], pos[1]]:
            skips["background"].append(ref)
        else:
            out.append((*pos, q))
    return out


def extract_patches(films: ImageSet, *, labels: str = "abnormal", patch_mm: float = 32.0, normal_per_film: int = 1,
                    min_tissue: float = 0.9, threshold: int = 20, seed: int = 0,
                    contrast: str = "none") -> tuple[ImageSet, dict]:
    """Patches of the MIAS ``films`` (an ImageSet of :func:`~graphzoo.data.mias.read_mias`; square films).

    ``contrast`` (one of ``CONTRASTS``): ``"none"`` keeps the film's grey levels; ``"film"`` stretches each film
    so that the 1st / 99th percentiles of its breast pixels become 0 / 255 before cutting; ``"patch"`` stretches
    each patch by the percentiles of its own breast pixels (:func:`~graphzoo.data._patches.stretch`). The
    breast mask is always found on the film as read (``threshold`` is a grey level of the original scale).

    Returns
    -------
    (ImageSet, skips)
        ``images`` uint8 (N, p, p) with ``p = round(patch_mm / (0.2 * 1024 / S))``; ``labels`` of
        ``LABELS[labels]``; ``patient_ids`` and ``filenames`` (``mdbNNN_lesionK`` / ``mdbNNN_normalK``);
        ``meta``: ``film``, ``row``, ``col``, ``radius_px`` (-1 for normal tissue), ``abnormality_class``,
        ``severity``, ``tissue_fraction`` (of the patch inside the breast mask). ``skips`` maps each key of
        ``SKIP_REASONS`` to the film names it was met in (one entry per skipped lesion / film).
    """
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {list(LABELS)}, got {labels!r}")
    _check_options(labels, normal_per_film, min_tissue, contrast)
    images = films.images
    side = images[0].shape[0]
    if any(im.shape[:2] != (side, side) for im in images):
        raise ValueError(f"{films.source}: MIAS films must be square and of one size. Fix: read them with size=.")
    p = int(round(patch_mm / (MM_1024 * 1024 / side)))
    if p < 4:
        raise ValueError(f"patch_mm={patch_mm} is {p} px at {side} px films. Fix: a larger patch_mm.")
    rng = np.random.default_rng(seed)
    skips: dict[str, list] = {k: [] for k in SKIP_REASONS}
    rec: dict[str, list] = {k: [] for k in ("img", "label", "ref", "name", "row", "col", "rad", "cls", "sev", "tf")}

    def add(film, mask, ref, name, row, col, rad, label, cls, sev):
        img, inside = crop(film, row, col, p), crop(mask, row, col, p)
        rec["img"].append(stretch(img, img[inside]) if contrast == "patch" else img)
        rec["tf"].append(float(inside.mean()))
        for k, v in zip(("label", "ref", "name", "row", "col", "rad", "cls", "sev"),
                        (label, ref, name, row, col, rad, cls, sev)):
            rec[k].append(v)

    for film, ref, ann in zip(images, films.filenames, films.meta["annotations_json"]):
        ref, rows = str(ref), json.loads(str(ann))
        mask = breast_mask(film, threshold=threshold)
        lesions = _film_lesions(ref, rows, film, mask, side, skips)
        if contrast == "film" and mask is not None:
            film = stretch(film, film[mask])
        for k, (row, col, rad, q) in enumerate(lesions, 1):
            label = 1 if labels == "abnormal" else int(q[2] == "M")
            add(film, mask, ref, f"{ref}_lesion{k}", row, col, rad, label, q[1], q[2])
        if labels != "abnormal" or any(q[1] != "NORM" for q in rows):
            continue
        if mask is None:
            skips["no_breast"].append(ref)
            continue
        centres = normal_centres(mask, normal_per_film, p, rng, min_tissue=min_tissue)
        if not centres:
            skips["no_room"].append(ref)
        for k, (row, col) in enumerate(centres, 1):
            add(film, mask, ref, f"{ref}_normal{k}", row, col, -1.0, 0, "NORM", "")
    return _as_imageset(films, rec, labels, p, side, patch_mm, skips), skips


def _check_options(labels, normal_per_film, min_tissue, contrast) -> None:
    """One clear error per bad option value of :func:`extract_patches`."""
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {list(CONTRASTS)}, got {contrast!r}")
    if labels == "abnormal" and (isinstance(normal_per_film, bool) or not isinstance(normal_per_film, (int, np.integer))
                                 or normal_per_film < 1):
        raise ValueError(f"normal_per_film must be an integer >= 1 (normal-tissue patches per normal film), got "
                         f"{normal_per_film!r}. Fix: e.g. normal_per_film: 4.")
    if not 0 < min_tissue <= 1:
        raise ValueError(f"min_tissue must be in (0, 1] (the least fraction of a normal patch inside the breast), "
                         f"got {min_tissue!r}")


def _as_imageset(films, rec, labels, p, side, patch_mm, skips) -> ImageSet:
    """The ImageSet of the records ``rec`` with one note per skip reason met."""
    notes = list(films.notes)
    for key, refs in skips.items():
        if refs:
            eg = ", ".join(sorted(set(refs))[:3])
            note(notes, f"skipped {len(refs)} × {SKIP_REASONS[key]} (e.g. {eg})")
    refs = np.array(rec["ref"], dtype=str)
    meta = {
        "film": refs,
        "row": np.array(rec["row"], np.int64),
        "col": np.array(rec["col"], np.int64),
        "radius_px": np.array(rec["rad"], float),
        "abnormality_class": np.array(rec["cls"], dtype=str),
        "severity": np.array(rec["sev"], dtype=str),
        "tissue_fraction": np.array(rec["tf"], float),
    }
    images = np.stack(rec["img"]) if rec["img"] else np.zeros((0, p, p), np.uint8)
    return ImageSet(
        images=images,
        labels=np.array(rec["label"], np.int64),
        class_names=list(LABELS[labels]),
        split=np.full(len(refs), "all"),
        patient_ids=mias_patient_ids(refs) if len(refs) else np.array([], dtype=str),
        filenames=np.array(rec["name"], dtype=str),
        meta=meta,
        source=f"{films.source} as {patch_mm:g} mm patches ({p} px of {side} px films), labels {labels}",
        notes=notes,
    )


def _never(path: Path) -> bool:
    """Patch readers are chosen by name (``data_format``), never detected: the same files are whole films."""
    return False


# The decoding options a patch reader takes; the films are always read gray, whole and as one array.
_PATCH_DECODE = ("skip_corrupt", "workers", "cache", "cache_dir")


def _read(path, labels, decode: DecodeOptions, allow_missing, patch_mm, normal_per_film, min_tissue, threshold,
          seed, contrast) -> ImageSet:
    if Path(path).suffix.lower() == ".npz":  # decoded films: only skip_corrupt means anything
        films = read_mias(Path(path), decode=DecodeOptions(skip_corrupt=decode.skip_corrupt),
                          allow_missing=allow_missing)
    else:
        films = read_mias(Path(path), decode=dataclasses.replace(decode, channels=1, size=None, stack=True),
                          allow_missing=allow_missing)
    return extract_patches(films, labels=labels, patch_mm=patch_mm, normal_per_film=normal_per_film,
                           min_tissue=min_tissue, threshold=threshold, seed=seed, contrast=contrast)[0]


@register_reader("mias_patches", detect=_never, priority=95)  # never detected: the order is moot
@takes_decode_options(*_PATCH_DECODE)
def read_mias_patches(path: Path, *, decode: DecodeOptions, allow_missing: bool = False, patch_mm: float = 32.0,
                      normal_per_film: int = 1, min_tissue: float = 0.9, threshold: int = 20,
                      seed: int = 0, contrast: str = "none") -> ImageSet:
    """Abnormal vs normal tissue: a patch on every MIAS abnormality and ``normal_per_film`` per normal film.

    Parameters
    ----------
    path : what :func:`~graphzoo.data.mias.read_mias` reads (best ``extra/mini_mias_512.npz``).
    patch_mm : patch side in mm (32 mm: 80 px of the 512 px films, 160 px of the 1024 px PGMs).
    normal_per_film : normal-tissue patches per normal film (non-overlapping; fewer where there is no room).
    min_tissue : the least fraction of a normal patch inside the breast mask.
    threshold : the breast mask's grey-level threshold (:func:`~graphzoo.data._patches.breast_mask`).
    seed : the normal patches' draw (fixed by default, so every run sees the same patches).
    contrast : ``"none"``, ``"film"`` or ``"patch"``: a grey-level stretch per film or per patch
        (:func:`extract_patches`).
    allow_missing : as for :func:`~graphzoo.data.mias.read_mias`.
    decode : :class:`~graphzoo.data.types.DecodeOptions`; of its keywords only ``skip_corrupt``, ``workers``,
        ``cache`` and ``cache_dir`` are taken (the films are read gray, at full size).

    See the module docstring for the geometry and the skipped input; :func:`extract_patches` for the arrays.
    """
    return _read(path, "abnormal", decode, allow_missing, patch_mm, normal_per_film, min_tissue, threshold, seed,
                 contrast)


@register_reader("mias_patches_malignancy", detect=_never, priority=96)
@takes_decode_options(*_PATCH_DECODE)
def read_mias_patches_malignancy(path: Path, *, decode: DecodeOptions, allow_missing: bool = False,
                                 patch_mm: float = 32.0, threshold: int = 20, contrast: str = "none") -> ImageSet:
    """Benign vs malignant: one patch on every MIAS lesion, labelled by its ``Info.txt`` severity.

    Options as for :func:`read_mias_patches` (no normal patches here).
    """
    return _read(path, "malignancy", decode, allow_missing, patch_mm, 0, 0.9, threshold, 0, contrast)
