"""Lesion-centred patches of mammograms: the breast mask, zero-padded crops, normal-tissue sampling.

Pure numpy + scipy.ndimage (torch-free), shared by the patch readers of :mod:`.mias_patches`.

Conventions: a film is a uint8 array (H, W); positions are array indices ``(row, col)``; a patch of
side ``s`` centred at ``(row, col)`` covers rows ``row - s // 2 .. row - s // 2 + s - 1`` (and the same for
columns), so its pixel ``[s // 2, s // 2]`` is the film's pixel ``[row, col]``. Outside the film it is 0
(film background is black), never shifted: a shifted window would move the lesion off the centre.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["breast_mask", "crop", "tissue_fraction", "normal_centres", "stretch", "CONTRASTS"]

# Contrast normalisations of :func:`stretch` (reader option ``contrast``).
CONTRASTS = ("none", "film", "patch")


def breast_mask(film: np.ndarray, *, threshold: int = 20, min_fraction: float = 0.02) -> np.ndarray | None:
    """The breast: pixels above ``threshold``, opened, largest connected component, holes filled.

    The opening (5 x 5) cuts thin bridges to film labels and scanner edges before the largest
    component is taken, so a label touching the breast by a few pixels is not part of it.

    Parameters
    ----------
    film : uint8 (H, W)
    threshold : grey level above which a pixel may be tissue (MIAS background is 0-10, fatty tissue > 40).
    min_fraction : the smallest breast, as a fraction of the film, that counts as found.

    Returns
    -------
    bool (H, W), or None when no component covers ``min_fraction`` of the film (no breast tissue found).
    """
    # A 5 x 5 opening as min then max filters: the same as ndi.binary_opening, several times faster.
    fg = ndi.maximum_filter(ndi.minimum_filter((np.asarray(film) > threshold).view(np.uint8), 5), 5)
    lab, n = ndi.label(fg)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())[1:]
    if sizes.max() < min_fraction * fg.size:
        return None
    breast = lab == 1 + int(np.argmax(sizes))
    # Holes: the components of the rest that do not touch the film's border (faster than binary_fill_holes).
    rest, m = ndi.label(~breast)
    touches = np.zeros(m + 1, bool)
    touches[np.concatenate([rest[0], rest[-1], rest[:, 0], rest[:, -1]])] = True
    return breast | ~touches[rest]


def crop(film: np.ndarray, row: int, col: int, side: int) -> np.ndarray:
    """The ``side`` x ``side`` patch of ``film`` centred at ``(row, col)`` (see the module docstring), 0-padded."""
    h, w = film.shape[:2]
    out = np.zeros((side, side) + film.shape[2:], film.dtype)
    r0, c0 = row - side // 2, col - side // 2
    rs, re_ = max(r0, 0), min(r0 + side, h)
    cs, ce = max(c0, 0), min(c0 + side, w)
    if rs < re_ and cs < ce:
        out[rs - r0 : re_ - r0, cs - c0 : ce - c0] = film[rs:re_, cs:ce]
    return out


def tissue_fraction(mask: np.ndarray, side: int) -> np.ndarray:
    """float (H, W): for every centre ``(row, col)``, the fraction of its ``side``-patch inside ``mask``.

    An integral image of the 0-padded mask: ``S[r, c] = sum(mask[:r, :c])``, and the patch sum is
    ``S[r1, c1] - S[r0, c1] - S[r1, c0] + S[r0, c0]`` with ``r0 = row - side // 2``, ``r1 = r0 + side``.
    """
    h, w = mask.shape
    lo = side // 2
    pad = np.zeros((h + side + 1, w + side + 1), np.int32)
    pad[lo + 1 : lo + 1 + h, lo + 1 : lo + 1 + w] = mask
    s = pad.cumsum(0).cumsum(1)
    # Centre (row, col) -> padded rows row .. row + side - 1 -> integral indices row and row + side.
    total = s[side:, side:][:h, :w] - s[:h, side:][:, :w] - s[side:, :w][:h] + s[:h, :w]
    return total / float(side * side)


def _square_disc_gap(rows, cols, side: int, disc) -> np.ndarray:
    """Distance from the disc centre ``(r, c)`` to the nearest pixel of each candidate patch, minus its radius."""
    r, c, radius = disc
    r0, c0 = rows - side // 2, cols - side // 2
    dr = np.maximum(np.maximum(r0 - r, r - (r0 + side - 1)), 0)
    dc = np.maximum(np.maximum(c0 - c, c - (c0 + side - 1)), 0)
    return np.hypot(dr, dc) - radius


def normal_centres(mask: np.ndarray, n: int, side: int, rng: np.random.Generator, *, avoid=(),
                   min_tissue: float = 0.9) -> list[tuple[int, int]]:
    """Up to ``n`` centres of normal-tissue patches: inside the breast, clear of lesions and of each other.

    A centre qualifies when it lies in ``mask``, at least ``min_tissue`` of its patch does, and the patch
    does not touch any disc of ``avoid`` (``(row, col, radius)`` in pixels). Qualifying centres are drawn in
    ``rng``'s order, each kept only if its patch does not overlap a patch kept before.

    Returns
    -------
    list of (row, col); shorter than ``n`` (possibly empty) when the breast has no more room.
    """
    ok = mask & (tissue_fraction(mask, side) >= min_tissue)
    rows, cols = np.nonzero(ok)
    keep = np.ones(len(rows), bool)
    for disc in avoid:
        keep &= _square_disc_gap(rows, cols, side, disc) > 0
    rows, cols = rows[keep], cols[keep]
    chosen: list[tuple[int, int]] = []
    for i in rng.permutation(len(rows)):
        if len(chosen) == n:
            break
        r, c = int(rows[i]), int(cols[i])
        if all(abs(r - a) >= side or abs(c - b) >= side for a, b in chosen):
            chosen.append((r, c))
    return chosen


def stretch(pixels: np.ndarray, ref: np.ndarray, *, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """``pixels`` stretched linearly so that the ``low`` / ``high`` percentiles of ``ref`` become 0 / 255 (clipped).

    ``v' = clip(255 * (v - P_low(ref)) / (P_high(ref) - P_low(ref)), 0, 255)``, rounded to uint8. Used with
    ``ref`` the breast pixels of a film (``contrast="film"``: films scanned at different exposures and densities
    get one grey scale, while a lesion keeps its contrast to the tissue around it) or of one patch
    (``contrast="patch"``: the patch's own range; its mean density is lost). An empty or flat ``ref`` (the two
    percentiles equal) leaves ``pixels`` unchanged: there is no range to stretch.

    Parameters
    ----------
    pixels : uint8 array, any shape
    ref : 1-D array of reference grey levels (e.g. ``film[mask]``)
    """
    ref = np.asarray(ref, float).ravel()
    if ref.size == 0:
        return np.asarray(pixels, np.uint8)
    lo, hi = np.percentile(ref, [low, high])
    if hi <= lo:
        return np.asarray(pixels, np.uint8)
    out = (np.asarray(pixels, float) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
