"""DICOM pixel data to display-ready uint8, as a radiologist's viewer would show it.

The steps follow the DICOM grayscale pipeline (PS3.3 C.11 and PS3.4 N.2):

1. **Modality LUT**: stored values to physical units, ``x = slope * stored + intercept``
   (RescaleSlope / RescaleIntercept; or a Modality LUT Sequence), via pydicom.
2. **VOI LUT**: the window the file asks to be viewed with. A window (WindowCenter ``c``,
   WindowWidth ``w``; the first one when several are given) is applied here directly so the
   output spans the window, not the image's own range. For ``LINEAR`` (the default)::

       y = 0                                          if x <= c - 0.5 - (w - 1) / 2
       y = 255                                        if x >  c - 0.5 + (w - 1) / 2
       y = 255 * ((x - (c - 0.5)) / (w - 1) + 0.5)    otherwise

   ``LINEAR_EXACT`` uses ``255 * ((x - c) / w + 0.5)`` clipped, ``SIGMOID`` uses
   ``255 / (1 + exp(-4 (x - c) / w))``. A VOI LUT *table* is applied by pydicom and its output
   range, ``0 .. 2**bits - 1`` with ``bits`` the table's entry size (LUTDescriptor[2]), is mapped
   onto 0..255. Without any VOI the range the stored values can take (``BitsStored`` bits,
   signed when PixelRepresentation is 1), passed through the modality LUT, is mapped onto 0..255:
   ``y = 255 (x - lo) / (hi - lo)``. Never the image's own min-max, so two files of one scanner
   keep their brightness relative to each other.
3. **MONOCHROME1** images (bright = low value, common in CR and mammography) are inverted,
   ``y = 255 - y``, so that bright is always dense tissue, as in MONOCHROME2.

Colour images (SamplesPerPixel 3) skip steps 1-3 and are mapped from their ``BitsStored`` range
(8-bit colour is kept as it is). Multi-frame files give their first frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._images import SKIP_HINT, CorruptImageError, _to_uint8, scale_range

__all__ = ["read_dicom"]


def _pydicom():
    try:
        import pydicom
    except ImportError:  # pragma: no cover - pydicom is installed in the dev environment
        raise ImportError(
            "reading DICOM files needs pydicom: pip install 'graphzoo[dicom]' (or pip install pydicom)"
        ) from None
    return pydicom


def _first(value) -> float:
    """WindowCenter/Width may be multi-valued: use the first (the default view)."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _window(x: np.ndarray, c: float, w: float, function: str) -> np.ndarray:
    if function == "SIGMOID":
        y = 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    elif function == "LINEAR_EXACT":
        y = np.clip(255.0 * ((x - c) / w + 0.5), 0, 255)
    else:  # LINEAR; w >= 1 by the standard
        w = max(w, 1.0)
        y = np.clip(255.0 * ((x - (c - 0.5)) / max(w - 1.0, 1e-12) + 0.5), 0, 255)
    return np.rint(y).astype(np.uint8)


def _stored_range(ds, arr: np.ndarray, apply_modality_lut) -> tuple[float, float]:
    """(lo, hi): the range the stored values can take (BitsStored, PixelRepresentation), through the
    modality LUT, so that the mapping to 0..255 is the same for every file of a scanner."""
    bits = int(ds.get("BitsStored", 0) or 0) or 8 * arr.dtype.itemsize
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    ends = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1], dtype=np.int64)
    lo, hi = sorted(float(v) for v in np.asarray(apply_modality_lut(ends, ds), dtype=np.float64))
    return lo, max(hi, lo + 1.0)


def read_dicom(path: str | Path, *, apply_voi: bool = True) -> np.ndarray:
    """Read a DICOM file's first frame as uint8 (H, W) (or (H, W, 3) for colour).

    Parameters
    ----------
    path : path-like
    apply_voi : bool
        Apply the file's window / VOI LUT (step 2 of the module docstring). False maps the
        modality values from the stored bit range instead.

    Raises
    ------
    CorruptImageError
        Not a DICOM file, no pixel data, or pixel data pydicom cannot decode; the message names the
        file and the fix.
    """
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    path = Path(path)
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError) as exc:
        raise CorruptImageError(
            path,
            f"cannot read DICOM {path}: {exc}. Fix: re-download or remove this file ({SKIP_HINT}).",
        ) from None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise CorruptImageError(
            path,
            f"DICOM {path} has no pixel data (a header-only object such as a DICOMDIR, structured "
            "report or presentation state). Fix: point the CSV / folder at the image files, or "
            f"remove this file ({SKIP_HINT}).",
        )
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable/truncated pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "?")
        raise CorruptImageError(
            path,
            f"cannot decode the pixel data of DICOM {path} (transfer syntax {syntax}): {exc}. Fix: "
            "re-download the file, or install the pydicom plug-in for compressed syntaxes "
            f"(pylibjpeg / python-gdcm), {SKIP_HINT}.",
        ) from None

    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if n_frames > 1:
        arr = arr[0]
    bits = int(ds.get("BitsStored", 0) or 0) or None
    if samples > 1:
        return _to_uint8(arr, bits=bits)

    x = apply_modality_lut(arr, ds).astype(np.float64, copy=False)
    if apply_voi and "WindowCenter" in ds and "WindowWidth" in ds:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        out = _window(x, _first(ds.WindowCenter), _first(ds.WindowWidth), function)
    elif apply_voi and "VOILUTSequence" in ds:
        lut_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        out = scale_range(apply_voi_lut(arr, ds), 0, 2.0**lut_bits - 1)
    elif np.issubdtype(arr.dtype, np.integer):
        out = scale_range(x, *_stored_range(ds, arr, apply_modality_lut))
    else:
        raise CorruptImageError(
            path,
            f"DICOM {path} holds floating-point pixels and no window (WindowCenter / WindowWidth), so it has no "
            "fixed range to map to 0..255. Fix: add a window to the file, or convert its pixels to integers.",
        )
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out
    return out
