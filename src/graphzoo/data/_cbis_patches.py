"""CBIS-DDSM lesion-centred patches: cut from the full mammogram around each row's ROI mask.

Used by :func:`graphzoo.data.cbis_ddsm.read_cbis_ddsm` with ``image="patch"``. Each CSV row (one lesion
in one view) names its full mammogram and its ROI mask (a binary image of the mammogram's size). The patch is
``patch_px`` x ``patch_px`` pixels of the mammogram centred on the centre of the mask's bounding box
(:func:`graphzoo.data._patches.crop`, 0 outside the film), optionally resized to ``size``. CBIS-DDSM films
are digitised at about 50 µm per pixel (the DDSM scanners: 42-50 µm), so the default 640 px is about 32 mm,
the MIAS patches' physical size.

Bad rows are skipped with a count per reason, never cropped wrongly: an ROI mask whose size differs from its
mammogram (the mask was made for another scan), an empty ROI mask, an ROI mask file that is not found, and
(with ``skip_corrupt``) an unreadable file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._images import CorruptImageError, decode_image, note
from ._patches import crop

__all__ = ["lesion_patches", "SKIP_REASONS"]

SKIP_REASONS = {
    "no_roi": "row whose ROI mask file is not found",
    "size": "row whose ROI mask size differs from its mammogram",
    "empty": "row whose ROI mask is empty",
    "corrupt": "row with an unreadable mammogram or ROI mask",
}


def _resize(patch: np.ndarray, size) -> np.ndarray:
    from PIL import Image

    hw = (size, size) if isinstance(size, int) else tuple(size)
    return np.asarray(Image.fromarray(patch).resize((hw[1], hw[0]), Image.BILINEAR))


def lesion_patches(rows: list[dict], find_roi, *, patch_px: int = 640, size=None, skip_corrupt: bool = False,
                   notes: list[str]) -> tuple[list[dict], list[np.ndarray], dict[str, list]]:
    """(kept rows, patches uint8 (p, p) each, skips) for ``rows`` that carry their mammogram in ``_file``.

    ``find_roi(row) -> Path | None`` locates the row's ROI mask. Each kept row gains ``_centre_row``,
    ``_centre_col`` (in mammogram pixels) and ``_roi_height``, ``_roi_width`` (its bounding box); ``skips``
    maps each key of ``SKIP_REASONS`` to the rows' CSV paths (one note per reason met is added to ``notes``).
    A mammogram with several lesions is decoded once.
    """
    if patch_px < 4:
        raise ValueError(f"patch_px={patch_px} is too small. Fix: patch_px of at least 4 (640 = about 32 mm).")
    skips: dict[str, list] = {k: [] for k in SKIP_REASONS}
    kept, patches = [], []
    cached: tuple[Path | None, np.ndarray | None] = (None, None)
    for r in rows:
        roi_path = find_roi(r)
        if roi_path is None:
            skips["no_roi"].append(r["_path"])
            continue
        try:
            if cached[0] != r["_file"]:
                cached = (r["_file"], decode_image(r["_file"], channels=1))
            film, roi = cached[1], decode_image(roi_path, channels=1)
        except CorruptImageError:
            if not skip_corrupt:
                raise
            skips["corrupt"].append(r["_path"])
            continue
        if roi.shape != film.shape:
            mask_size, film_size = f"{roi.shape[1]}x{roi.shape[0]}", f"{film.shape[1]}x{film.shape[0]}"
            skips["size"].append(f"{r['_path']} ({mask_size} mask, {film_size} film)")
            continue
        rr, cc = np.nonzero(roi > 127)
        if len(rr) == 0:
            skips["empty"].append(r["_path"])
            continue
        row, col = (int(rr.min()) + int(rr.max())) // 2, (int(cc.min()) + int(cc.max())) // 2
        patch = crop(film, row, col, patch_px)
        patches.append(_resize(patch, size) if size else patch)
        kept.append(dict(r, _centre_row=row, _centre_col=col, _roi_height=int(rr.max() - rr.min() + 1),
                         _roi_width=int(cc.max() - cc.min() + 1)))
    for key, where in skips.items():
        if where:
            note(notes, f"skipped {len(where)} × {SKIP_REASONS[key]} (e.g. {where[0]})")
    return kept, patches, skips
