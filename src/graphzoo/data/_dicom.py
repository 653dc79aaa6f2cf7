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
   ``255 / (1 + exp(-4 (x - c) / w))``. A VOI LUT *table* is applied by pydicom and the result
   scaled by its own min-max. Without any VOI the image is scaled by its own min-max.
3. **MONOCHROME1** images (bright = low value, common in CR and mammography) are inverted,
   ``y = 255 - y``, so that bright is always dense tissue, as in MONOCHROME2.

Colour images (SamplesPerPixel 3) skip steps 1-3 and are min-max scaled. Multi-frame files give
their first frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._images import CorruptImageError, _to_uint8

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


def read_dicom(path: str | Path, *, apply_voi: bool = True) -> np.ndarray:
    """Read a DICOM file's first frame as uint8 (H, W) (or (H, W, 3) for colour).

    Parameters
    ----------
    path : path-like
    apply_voi : bool
        Apply the file's window / VOI LUT (step 2 of the module docstring). False scales the
        modality values by their min-max instead.

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
            f"cannot read DICOM {path}: {exc}. Fix: re-download or remove this file (or load with skip_corrupt=True).",
        ) from None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise CorruptImageError(
            path,
            f"DICOM {path} has no pixel data (a header-only object such as a DICOMDIR, structured "
            "report or presentation state). Fix: point the CSV / folder at the image files, or "
            "remove this file (or load with skip_corrupt=True).",
        )
    try:
        arr = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for undecodable/truncated pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "?")
        raise CorruptImageError(
            path,
            f"cannot decode the pixel data of DICOM {path} (transfer syntax {syntax}): {exc}. Fix: "
            "re-download the file, or install the pydicom plug-in for compressed syntaxes "
            "(pylibjpeg / python-gdcm), or load with skip_corrupt=True.",
        ) from None

    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if n_frames > 1:
        arr = arr[0]
    if samples > 1:
        return _to_uint8(arr)

    x = apply_modality_lut(arr, ds).astype(np.float64, copy=False)
    if apply_voi and "WindowCenter" in ds and "WindowWidth" in ds:
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        out = _window(x, _first(ds.WindowCenter), _first(ds.WindowWidth), function)
    elif apply_voi and "VOILUTSequence" in ds:
        out = _to_uint8(np.asarray(apply_voi_lut(arr, ds), dtype=np.float64))
    else:
        out = _to_uint8(x)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out
    return out
