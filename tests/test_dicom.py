"""graphzoo.data._dicom: the DICOM grayscale pipeline (modality LUT, window, MONOCHROME1).

Real data comes from ``$GRAPHZOO_DATA`` (default: the shared data folder beside the repository);
tests that need it skip with the path they looked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from graphzoo.data._dicom import read_dicom
from graphzoo.data._images import CorruptImageError

pytestmark = pytest.mark.usefixtures("private_cache")


def test_dicom_pipeline(pydicom_files, tmp_path):
    pydicom, ct, mr, cr = pydicom_files
    # CT: rescale slope/intercept, no window -> the signed 16-bit stored range, through the rescale,
    # onto 0..255 (issue 11 #9: not the image's own min-max), written out independently.
    out = read_dicom(ct)
    ds = pydicom.dcmread(ct)
    assert (ds.BitsStored, ds.PixelRepresentation, "WindowCenter" in ds) == (16, 1, False)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    lo = -(2.0**15) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    expected = np.rint((hu - lo) * 255 / (65535 * float(ds.RescaleSlope)))
    assert out.dtype == np.uint8 and out.shape == (128, 128)
    np.testing.assert_array_equal(out, expected)
    # MR: window centre/width from the header, DICOM LINEAR formula, written out independently.
    for path in (mr, cr):
        ds = pydicom.dcmread(path)
        x = ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
        c, w = float(ds.WindowCenter), float(ds.WindowWidth)
        expected = np.clip(((x - (c - 0.5)) / (w - 1) + 0.5) * 255, 0, 255)
        if ds.PhotometricInterpretation == "MONOCHROME1":
            expected = 255 - expected
        got = read_dicom(path).astype(float)
        assert np.abs(got - expected).max() <= 1.0, path.name
    # MONOCHROME1 is inverted: high stored values come out dark.
    assert pydicom.dcmread(cr).PhotometricInterpretation == "MONOCHROME1"
    assert np.corrcoef(pydicom.dcmread(cr).pixel_array.ravel().astype(float), read_dicom(cr).ravel())[0, 1] < -0.99
    # DICOM without pixel data
    ds = pydicom.dcmread(ct)
    del ds.PixelData
    bare = tmp_path / "header_only.dcm"
    ds.save_as(bare)
    with pytest.raises(CorruptImageError, match=r"header_only\.dcm has no pixel data"):
        read_dicom(bare)
    # truncated pixel data, and a file that is not DICOM at all
    truncated = Path(pydicom.data.get_testdata_file("MR_truncated.dcm"))
    with pytest.raises(CorruptImageError, match="MR_truncated.dcm"):
        read_dicom(truncated)
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not a dicom file at all")
    with pytest.raises(CorruptImageError, match="junk.dcm"):
        read_dicom(junk)


def test_dicom_without_window_keeps_brightness_between_files(pydicom_files, tmp_path):
    pydicom, ct, _, _ = pydicom_files
    ds = pydicom.dcmread(ct)
    dark, bright = tmp_path / "dark.dcm", tmp_path / "bright.dcm"
    ds.save_as(dark)
    ds.PixelData = (ds.pixel_array.astype(np.int16) * 4).tobytes()  # the same anatomy, four times brighter
    ds.save_as(bright)
    a, b = read_dicom(dark).astype(int), read_dicom(bright).astype(int)
    assert b.mean() > a.mean() + 10  # per-image min-max used to make both span 0..255
    assert a.max() < 255 and b.max() < 255


def test_float_dicom_without_window_is_refused(pydicom_files, tmp_path):
    pydicom, ct, _, _ = pydicom_files
    ds = pydicom.dcmread(ct)
    pixels = ds.pixel_array.astype(np.float32)
    del ds.PixelData
    for key in ("BitsStored", "HighBit", "PixelRepresentation", "RescaleSlope", "RescaleIntercept"):
        delattr(ds, key)
    ds.BitsAllocated = 32
    ds.FloatPixelData = pixels.tobytes()
    ds.save_as(tmp_path / "float.dcm")
    with pytest.raises(CorruptImageError, match="floating-point pixels and no window"):
        read_dicom(tmp_path / "float.dcm")
