"""graphzoo.data.cbis_ddsm: the real case-description CSVs and a DICOM tree from pydicom's files.

Real data comes from ``$GRAPHZOO_DATA`` (default: the shared data folder beside the repository);
tests that need it skip with the path they looked for.
"""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
from conftest import check_imageset, data_path, quiet_load

import graphzoo.data as gd
from graphzoo.data._dicom import read_dicom
from graphzoo.data._images import DataWarning

pytestmark = pytest.mark.usefixtures("private_cache")


CBIS_COUNTS = {  # README: pathology counts per official CSV (M / B / BWC)
    "mass_case_description_train_set.csv": (637, 577, 104),
    "mass_case_description_test_set.csv": (147, 194, 37),
    "calc_case_description_train_set.csv": (544, 528, 474),
    "calc_case_description_test_set.csv": (129, 130, 67),
}


def test_cbis_csv_counts():
    folder = data_path("cbis_ddsm", "raw_sample")
    ds = gd.load(folder, metadata_only=True, bwc="separate")
    check_imageset(ds)
    assert ds.class_names == ["benign", "benign_without_callback", "malignant"]
    for csv_name, (m, b, bwc) in CBIS_COUNTS.items():
        rows = ds.meta["csv_file"] == csv_name
        got = Counter(ds.labels[rows].tolist())
        assert (got[2], got[0], got[1]) == (m, b, bwc), csv_name
        assert set(ds.split[rows]) == {"train" if "train" in csv_name else "test"}
    default = gd.load(folder, metadata_only=True)
    assert default.class_names == ["benign", "malignant"]
    np.testing.assert_array_equal(default.labels, (ds.labels == 2).astype(int))
    dropped = quiet_load(folder, metadata_only=True, bwc="drop", abnormality="mass")
    assert len(dropped) == 637 + 577 + 147 + 194
    assert set(dropped.meta["abnormality_type"]) == {"mass"}


def test_cbis_matches_csv_paths_to_a_dicom_tree(pydicom_files, tmp_path):
    _, ct, mr, cr = pydicom_files
    folder = data_path("cbis_ddsm", "raw_sample")
    tree = tmp_path / "CBIS-DDSM"
    # NBIA-client layout: folders renamed, files called 1-1.dcm / 1-2.dcm. Case P_00001 LEFT CC:
    # the crop (small, 64x64) and the ROI mask (larger, 128x128) share the case folder.
    full = tree / "Mass-Training_P_00001_LEFT_CC" / "07-20-2016-DDSM-74994" / "1.000000-full mammogram images-24515"
    crop = tree / "Mass-Training_P_00001_LEFT_CC_1" / "07-21-2016-DDSM-85365" / "1.000000-ROI mask images-16544"
    for d in (full, crop):
        d.mkdir(parents=True)
    shutil.copy(cr, full / "1-1.dcm")
    shutil.copy(ct, crop / "1-1.dcm")  # 128x128: the mask
    shutil.copy(mr, crop / "1-2.dcm")  # 64x64: the crop
    # Old layout for P_00001 LEFT MLO: the CSV path exactly, below a re-rooted folder.
    exact = (
        tmp_path
        / "elsewhere"
        / (
            "Mass-Training_P_00001_LEFT_MLO_1/1.3.6.1.4.1.9590.100.1.2.188473874511440575807446266233629582526/"
            "1.3.6.1.4.1.9590.100.1.2.227955274711225756835838775062793186053/000000.dcm"
        )
    )
    exact.parent.mkdir(parents=True)
    shutil.copy(mr, exact)

    with pytest.raises(ValueError, match=r"rows have no cropped image.*allow_missing=True to load the 2 found"):
        gd.load(folder, image_root=tmp_path, abnormality="mass")  # most rows' images are missing
    with pytest.warns(DataWarning, match="rows have no cropped image"):
        ds = gd.load(folder, image_root=tmp_path, abnormality="mass", allow_missing=True)
    check_imageset(ds)
    assert len(ds) == 2 and set(ds.patient_ids) == {"P_00001"}
    assert isinstance(ds.images, np.ndarray) and ds.images.shape == (2, 64, 64)  # both crops are the 64x64 file
    assert set(ds.meta["image_view"]) == {"CC", "MLO"} and set(ds.class_names[i] for i in ds.labels) == {"malignant"}
    roi = quiet_load(folder, image_root=tmp_path, abnormality="mass", image="roi", allow_missing=True)
    assert roi.images[list(roi.meta["image_view"]).index("CC")].shape == (128, 128)
    full_ds = quiet_load(folder, image_root=tmp_path, abnormality="mass", image="full", allow_missing=True)
    assert len(full_ds) == 1 and full_ds.images.shape == (1, 16, 16)
    np.testing.assert_array_equal(full_ds.images[0], read_dicom(cr))  # went through the DICOM pipeline


def test_cbis_missing_columns_and_bad_pathology(tmp_path):
    (tmp_path / "mass_case_description_train_set.csv").write_text("patient_id,pathology\nP_1,BENIGN\n")
    with pytest.raises(
        ValueError,
        match=r"mass_case_description_train_set\.csv is missing required column\(s\) \['cropped image file path'\]",
    ):
        gd.load(tmp_path)
    (tmp_path / "mass_case_description_train_set.csv").write_text(
        "patient_id,pathology,cropped image file path\nP_1,MAYBE,a/b/c/000000.dcm\n"
    )
    with pytest.raises(ValueError, match="row 2 has pathology 'MAYBE'"):
        gd.load(tmp_path, metadata_only=True)


def _patch_tree(tmp_path):
    """A CBIS-DDSM-like PNG tree: four mass rows (their full mammogram, and crop + ROI mask in the ``_1`` folder)."""
    from PIL import Image

    header = open(data_path("cbis_ddsm", "raw_sample", "mass_case_description_train_set.csv")).readline()
    rng = np.random.default_rng(0)
    full = rng.integers(0, 256, (200, 160), dtype=np.uint8)
    masks = {1: (200, 160, (50, 70, 100, 120)), 2: (100, 80, (10, 20, 10, 20)), 3: (200, 160, None), 4: None}
    lines = [header.rstrip("\n")]
    for k, spec in masks.items():
        case = f"Mass-Training_P_0000{k}_LEFT_CC"
        lines.append(f"P_0000{k},3,LEFT,CC,1,mass,OVAL,CIRCUMSCRIBED,4,{'MALIGNANT' if k % 2 else 'BENIGN'},4,"
                     f"{case}/9.{k}.1/9.{k}.2/000000.dcm,{case}_1/9.{k}.3/9.{k}.4/000000.dcm,"
                     f"{case}_1/9.{k}.3/9.{k}.5/000001.dcm")
        (tmp_path / case).mkdir()
        Image.fromarray(full).save(tmp_path / case / "full.png")
        if spec is None:
            continue
        h, w, box = spec
        mask = np.zeros((h, w), np.uint8)
        if box:
            mask[box[0] : box[1], box[2] : box[3]] = 255
        (tmp_path / f"{case}_1").mkdir()
        Image.fromarray(mask).save(tmp_path / f"{case}_1" / "mask.png")
        Image.fromarray(full[:30, :30]).save(tmp_path / f"{case}_1" / "crop.png")
    (tmp_path / "mass_case_description_train_set.csv").write_text("\n".join(lines) + "\n")
    return full


def test_cbis_patches_centre_on_the_roi_mask_and_skip_bad_rows(tmp_path):
    from graphzoo.data._patches import crop
    from graphzoo.data.inspect import report

    full = _patch_tree(tmp_path)
    with pytest.warns(DataWarning) as caught:
        ds = gd.load(tmp_path, image="patch", patch_px=40)
    assert ds.patient_ids.tolist() == ["P_00001"] and ds.labels.tolist() == [1]
    assert (ds.meta["centre_row"][0], ds.meta["centre_col"][0]) == (59, 109)  # the mask's box 50..69 x 100..119
    assert (ds.meta["roi_height"][0], ds.meta["roi_width"][0]) == (20, 20)
    np.testing.assert_array_equal(ds.images[0], crop(full, 59, 109, 40))
    text = report(ds)
    for phrase in ("1 × row whose ROI mask size differs", "1 × row whose ROI mask is empty",
                   "1 × row whose ROI mask file is not found"):
        assert phrase in text and any(phrase in str(w.message) for w in caught)
    small = quiet_load(tmp_path, image="patch", patch_px=40, size=20)
    assert small.images.shape == (1, 20, 20)


def test_cbis_notes_patients_in_both_official_splits():
    ds = quiet_load(data_path("cbis_ddsm", "raw_sample"), metadata_only=True)
    both = set(ds.patient_ids[ds.split == "train"]) & set(ds.patient_ids[ds.split == "test"])
    assert len(both) > 0
    assert any(f"{len(both)} patients have rows in both" in n for n in ds.notes)
