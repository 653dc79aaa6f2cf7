"""Tests for graphzoo.data: every reader on the real shared samples, bad input, cache, splits, CLI.

Real data comes from ``../shared/data`` (or ``$GRAPHZOO_DATA``); tests that need it skip with the
path they looked for. Synthetic fixtures (bad files, MedMNIST layout, a fake CBIS-DDSM DICOM
tree built from pydicom's bundled test files) are written to ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import graphzoo.data as gd
from graphzoo.data import _images
from graphzoo.data._dicom import read_dicom
from graphzoo.data._images import CorruptImageError, DataWarning

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("GRAPHZOO_DATA", REPO.parent / "shared" / "data"))
RAW_SAMPLES = sorted(DATA_DIR.glob("*/raw_sample")) if DATA_DIR.is_dir() else []
NPZ_FILES = sorted(DATA_DIR.rglob("*.npz")) if DATA_DIR.is_dir() else []


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set GRAPHZOO_DATA to the shared data folder)")
    return path


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test decodes into a cache folder of this session, never ~/.cache."""
    monkeypatch.setenv("GRAPHZOO_CACHE", str(tmp_path_factory.getbasetemp() / "graphzoo-cache"))


@pytest.fixture(scope="module")
def malaria() -> gd.ImageSet:
    """The 27,558-cell npz, loaded once for the module."""
    return gd.load(need(DATA_DIR / "malaria" / "malaria_50_gray.npz"))


def quiet_load(*args, **kwargs) -> gd.ImageSet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return gd.load(*args, **kwargs)


def check_imageset(ds: gd.ImageSet) -> None:
    """Invariants every reader must honour."""
    n = len(ds)
    assert n > 0
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (n,)
    assert ds.labels.min() >= -1 and ds.labels.max() < len(ds.class_names)
    if ds.images is not None:
        images = ds.images
        assert len(images) == n
        first = images[0]
        assert first.dtype == np.uint8 and first.ndim in (2, 3)
        if isinstance(images, np.ndarray):
            assert images.dtype == np.uint8 and images.ndim in (3, 4)
        else:  # a list only when sizes really differ
            assert len({a.shape for a in images}) > 1
    for name in ("split", "patient_ids", "filenames"):
        arr = getattr(ds, name)
        if arr is not None:
            assert arr.shape == (n,) and arr.dtype.kind == "U", name
    if ds.multilabels is not None:
        assert ds.multilabels.shape == (n, len(ds.multilabel_names))
        assert set(np.unique(ds.multilabels)) <= {0, 1}
    for key, arr in ds.meta.items():
        assert len(arr) == n, key
    assert ds.source


# ------------------------------------------------------------------------------------------
# Package hygiene
# ------------------------------------------------------------------------------------------


def test_import_does_not_pull_torch():
    code = "import sys, graphzoo.data; assert 'torch' not in sys.modules, 'graphzoo.data imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_names_and_did_you_mean(tmp_path):
    assert gd.READERS.names() == ["cbis_ddsm", "chestxray14", "folder", "medmnist", "mias", "npz"]
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="Did you mean 'folder'"):
        gd.load(tmp_path, format="foldr")


# ------------------------------------------------------------------------------------------
# Every real sample and npz in the shared data
# ------------------------------------------------------------------------------------------


@pytest.mark.skipif(not RAW_SAMPLES, reason=f"no */raw_sample folders under {DATA_DIR} (set GRAPHZOO_DATA)")
@pytest.mark.parametrize("folder", RAW_SAMPLES, ids=[p.parent.name for p in RAW_SAMPLES])
def test_every_raw_sample_loads(folder):
    fmt = gd.detect_format(folder)
    if fmt == "cbis_ddsm":  # CSVs only: no CBIS images exist in the shared data
        with pytest.raises(gd.cbis_ddsm.NoImagesFoundError, match="image_root="):
            gd.load(folder)
        ds = gd.load(folder, metadata_only=True)
        assert ds.images is None
    else:
        ds = quiet_load(folder)
    check_imageset(ds)
    assert set(np.unique(ds.labels)) == set(range(len(ds.class_names)))


@pytest.mark.skipif(not NPZ_FILES, reason=f"no .npz files under {DATA_DIR} (set GRAPHZOO_DATA)")
@pytest.mark.parametrize("file", NPZ_FILES, ids=[p.name for p in NPZ_FILES])
def test_every_npz_loads(file, request):
    ds = request.getfixturevalue("malaria") if file.name == "malaria_50_gray.npz" else gd.load(file)
    check_imageset(ds)
    assert isinstance(ds.images, np.ndarray)
    with np.load(file) as z:
        assert ds.images.shape == z["images"].shape
        np.testing.assert_array_equal(ds.labels, z["labels"])
        assert ds.class_names == [str(c) for c in z["class_names"]]
        extra = set(z.files) - {
            "images",
            "labels",
            "class_names",
            "split",
            "patient_ids",
            "filenames",
            "multilabels",
            "multilabel_names",
        }
    assert extra == set(ds.meta)


def test_malaria_npz_facts(malaria):
    assert malaria.images.shape == (27558, 50, 50)
    assert Counter(malaria.labels.tolist()) == {0: 13779, 1: 13779}
    assert len(np.unique(malaria.patient_ids)) == 201
    # The source's split is not patient-disjoint (README): every patient is on both sides.
    assert set(malaria.patient_ids[malaria.split == "train"]) == set(malaria.patient_ids[malaria.split == "valid"])


def test_malaria_raw_folder_matches_npz(malaria):
    folder = need(DATA_DIR / "malaria" / "raw_sample")
    ds = gd.load(folder)
    assert gd.detect_format(folder) == "folder"
    assert Counter(zip(ds.split.tolist(), ds.labels.tolist())) == {
        ("train", 0): 25,
        ("train", 1): 25,
        ("valid", 0): 25,
        ("valid", 1): 25,
    }
    where = {name: i for i, name in enumerate(malaria.filenames)}
    for img, rel, lab in zip(ds.images, ds.filenames, ds.labels):
        name = Path(rel).name
        if name.startswith("ParasitizedC"):  # the source prefixed its valid/Parasitized files
            name = name[len("Parasitized") :]
        i = where[name]
        np.testing.assert_array_equal(img, malaria.images[i])
        assert ds.class_names[lab] == malaria.class_names[malaria.labels[i]]


def test_chestxray_raw_sample_matches_npz():
    raw = need(DATA_DIR / "chestxray14" / "raw_sample")
    ref = gd.load(need(DATA_DIR / "chestxray14" / "nih1000_64.npz"))
    with pytest.warns(DataWarning) as rec:
        ds = gd.load(raw)
    messages = " | ".join(str(w.message) for w in rec)
    assert "different sizes" in messages and "876 of 1000 listed images" in messages
    assert gd.detect_format(raw) == "chestxray14"
    assert len(ds) == 124 and isinstance(ds.images, list)
    assert ds.multilabel_names == ref.multilabel_names
    where = {name: i for i, name in enumerate(ref.filenames)}
    checked = 0
    for img, rel, ml, lab, pid, sp in zip(ds.images, ds.filenames, ds.multilabels, ds.labels, ds.patient_ids, ds.split):
        if not rel.startswith("NIH1000"):
            assert img.shape == (128, 128) and sp == ""
            continue
        i = where[Path(rel).name]
        np.testing.assert_array_equal(img, ref.images[i])  # gray-replicated RGB came back as gray
        assert pid == ref.patient_ids[i] and sp == ref.split[i]
        assert lab == int(ml.any())
        checked += 1
    assert checked == 120
    # resizing on read makes the set stackable
    same = quiet_load(raw, size=64)
    assert same.images.shape == (124, 64, 64)
    single = quiet_load(raw, label_mode="single", size=64)
    assert single.class_names[0] == "No Finding" and len(single.class_names) == 15
    n_find = ds.multilabels.sum(1)
    np.testing.assert_array_equal(single.labels == -1, n_find > 1)


def test_mias_raw_sample_matches_npz():
    raw = need(DATA_DIR / "mias" / "raw_sample")
    with pytest.warns(gd.DataWarning, match="patient ids derived"):
        ref = gd.load(need(DATA_DIR / "mias" / "mini_mias_256.npz"))
    ds = quiet_load(raw, size=256)
    assert gd.detect_format(raw) == "mias"
    assert ds.images.shape == (9, 256, 256)
    assert Counter(ds.labels.tolist()) == {0: 3, 1: 3, 2: 3}
    idx = [int(np.flatnonzero(ref.filenames == f)[0]) for f in ds.filenames]
    np.testing.assert_array_equal(ds.labels, ref.labels[idx])
    for key in (
        "background_tissue",
        "abnormality_class",
        "centre_x_1024",
        "centre_y_1024_from_bottom",
        "radius_1024",
        "n_abnormalities",
    ):
        np.testing.assert_array_equal(ds.meta[key], ref.meta[key][idx], err_msg=key)
    for a, b in zip(ds.meta["annotations_json"], ref.meta["annotations_json"][idx]):
        assert json.loads(a) == json.loads(b)
    # Our area filter vs the npz's Lanczos: the same films, up to resampling.
    r = np.corrcoef(ds.images.reshape(9, -1).astype(float), ref.images[idx].reshape(9, -1).astype(float))
    assert np.diag(r[:9, 9:]).min() > 0.99
    assert ds.patient_ids.tolist() == [f"mias_{(int(f[3:]) + 1) // 2:03d}" for f in ds.filenames]
    # the npz has no patient ids: derived from the film names the same way (both breasts together)
    np.testing.assert_array_equal(ref.patient_ids[idx], ds.patient_ids)
    assert len(set(ref.patient_ids)) == 161


def test_mias_info_parser_handles_quirks(tmp_path):
    info = tmp_path / "Info.txt"
    info.write_text(
        "header prose\nmdb005 F CIRC B 477 133 30\nmdb005 F CIRC B 500 168 26\nmdb059 F CIRC B\n"
        "mdb216 D CALC M *NOTE 3* \nmdb003 D NORM \n"
    )
    films = gd.mias.parse_info(info)
    assert len(films["mdb005"]) == 2 and films["mdb005"][1]["radius"] == 26
    assert films["mdb059"][0]["x"] == -1 and films["mdb216"][0]["severity"] == "M"
    assert films["mdb003"][0]["severity"] == ""
    info.write_text("mdb001 G CIRC X 1 2 3\n")
    with pytest.raises(ValueError, match="Info.txt:1: severity 'X'"):
        gd.mias.parse_info(info)


# ------------------------------------------------------------------------------------------
# CBIS-DDSM: real CSVs + a DICOM tree made from pydicom's test files
# ------------------------------------------------------------------------------------------

CBIS_COUNTS = {  # README: pathology counts per official CSV (M / B / BWC)
    "mass_case_description_train_set.csv": (637, 577, 104),
    "mass_case_description_test_set.csv": (147, 194, 37),
    "calc_case_description_train_set.csv": (544, 528, 474),
    "calc_case_description_test_set.csv": (129, 130, 67),
}


def test_cbis_csv_counts():
    folder = need(DATA_DIR / "cbis_ddsm" / "raw_sample")
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


@pytest.fixture
def pydicom_files():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file, get_testdata_files

    mono1 = get_testdata_files("**/CR1/6154")
    if not mono1:
        pytest.skip("pydicom's MONOCHROME1 CR test file is not installed")
    return pydicom, Path(get_testdata_file("CT_small.dcm")), Path(get_testdata_file("MR_small.dcm")), Path(mono1[0])


def test_dicom_pipeline(pydicom_files, tmp_path):
    pydicom, ct, mr, cr = pydicom_files
    # CT: rescale slope/intercept, no window -> min-max of the Hounsfield values, monotone in raw.
    out = read_dicom(ct)
    raw = pydicom.dcmread(ct).pixel_array.astype(float)
    assert out.dtype == np.uint8 and out.shape == (128, 128) and (out.min(), out.max()) == (0, 255)
    assert np.corrcoef(raw.ravel(), out.ravel())[0, 1] > 0.999
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


def test_cbis_matches_csv_paths_to_a_dicom_tree(pydicom_files, tmp_path):
    _, ct, mr, cr = pydicom_files
    folder = need(DATA_DIR / "cbis_ddsm" / "raw_sample")
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

    with pytest.warns(DataWarning, match="rows have no cropped image"):
        ds = gd.load(folder, image_root=tmp_path, abnormality="mass")
    check_imageset(ds)
    assert len(ds) == 2 and set(ds.patient_ids) == {"P_00001"}
    assert isinstance(ds.images, np.ndarray) and ds.images.shape == (2, 64, 64)  # both crops are the 64x64 file
    assert set(ds.meta["image_view"]) == {"CC", "MLO"} and set(ds.class_names[i] for i in ds.labels) == {"malignant"}
    roi = quiet_load(folder, image_root=tmp_path, abnormality="mass", image="roi")
    assert roi.images[list(roi.meta["image_view"]).index("CC")].shape == (128, 128)
    full_ds = quiet_load(folder, image_root=tmp_path, abnormality="mass", image="full")
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


# ------------------------------------------------------------------------------------------
# Synthetic bad input
# ------------------------------------------------------------------------------------------


def write_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def class_folder(tmp_path) -> Path:
    """root/{train,test}/{cat,dog}/*.png, 8x8 gray, 3 per folder."""
    rng = np.random.default_rng(0)
    root = tmp_path / "cells"
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            for i in range(3):
                write_png(root / split / cls / f"{cls}{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    return root


def test_folder_reader_synthetic(class_folder):
    ds = gd.load(class_folder)
    check_imageset(ds)
    assert ds.images.shape == (12, 8, 8) and ds.class_names == ["cat", "dog"]
    assert Counter(ds.split.tolist()) == {"train": 6, "test": 6}
    np.testing.assert_array_equal(ds.images[0], np.asarray(Image.open(class_folder / ds.filenames[0])))
    rev = gd.load(class_folder, class_names=["dog", "cat"])
    np.testing.assert_array_equal(rev.labels, 1 - ds.labels)
    with pytest.raises(ValueError, match=r"class_names lists \['bird'\]"):
        gd.load(class_folder, class_names=["cat", "bird"])
    with pytest.raises(ValueError, match="does not take option"):
        gd.load(class_folder, colour=True)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        gd.load(tmp_path / "nowhere")


def test_empty_class_folder(class_folder):
    (class_folder / "train" / "bird").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*train/bird is empty"):
        gd.load(class_folder)


def test_non_image_files_are_ignored_with_a_note(class_folder):
    (class_folder / "train" / "cat" / "notes.txt").write_text("hello")
    (class_folder / "train" / "cat" / ".DS_Store").write_bytes(b"\0")
    with pytest.warns(DataWarning, match=r"ignored 1 non-image file\(s\) \(notes.txt\)"):
        ds = gd.load(class_folder)
    assert len(ds) == 12 and any("notes.txt" in n for n in ds.notes)


def test_corrupt_image_named_or_skipped(class_folder):
    good = (class_folder / "train" / "dog" / "dog0.png").read_bytes()
    (class_folder / "train" / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    (class_folder / "test" / "cat" / "fake.png").write_bytes(b"this is text, not a png")
    with pytest.raises(CorruptImageError, match=r"2 of 14 files could not be decoded .*truncated\.png"):
        gd.load(class_folder)
    with pytest.warns(DataWarning, match="skipped 2 of 14 files") as rec:
        ds = gd.load(class_folder, skip_corrupt=True)
    assert len(ds) == 12 and "fake.png" in str(rec[0].message)
    assert not any("truncated" in f for f in ds.filenames)


def test_mixed_sizes_list_or_error(class_folder):
    write_png(class_folder / "train" / "cat" / "big.png", np.zeros((16, 12), np.uint8))
    with pytest.warns(DataWarning, match=r"2 different sizes .*12x12|2 different sizes"):
        ds = gd.load(class_folder)
    assert isinstance(ds.images, list) and len(ds.images) == 13
    with pytest.raises(ValueError, match=r"different sizes.*big\.png.*size=\(H, W\)"):
        gd.load(class_folder, stack=True)
    assert gd.load(class_folder, size=(8, 8)).images.shape == (13, 8, 8)


def test_images_without_class_folders(tmp_path):
    write_png(tmp_path / "flat" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="no class folders"):
        gd.load(tmp_path / "flat", format="folder")


def test_channels(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (6, 6), dtype=np.uint8)
    colour = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    p_rep = write_png(tmp_path / "rep.png", np.repeat(gray[:, :, None], 3, axis=2))
    p_rgba = write_png(tmp_path / "rgba.png", np.dstack([colour, np.full((6, 6), 255, np.uint8)]))
    p16 = tmp_path / "deep.png"
    Image.fromarray((np.arange(36).reshape(6, 6) * 1000).astype(np.uint16)).save(p16)
    np.testing.assert_array_equal(gd.decode_image(p_rep), gray)  # gray saved as RGB -> gray
    np.testing.assert_array_equal(gd.decode_image(p_rgba), colour)  # opaque alpha dropped
    lum = gd.decode_image(p_rgba, channels=1)
    ref = np.asarray(Image.fromarray(colour).convert("L")).astype(int)
    assert np.abs(lum.astype(int) - ref).max() <= 1
    assert gd.decode_image(p_rep, channels=3).shape == (6, 6, 3)
    deep = gd.decode_image(p16)
    assert deep.dtype == np.uint8 and deep.min() == 0 and deep.max() == 255
    assert gd.decode_image(p_rep, size=3).shape == (3, 3)


def test_npz_bad_input(tmp_path):
    f = tmp_path / "bad.npz"
    np.savez(f, images=np.zeros((3, 4, 4), np.uint8), labels=np.array([0, 1, 3]), class_names=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"bad\.npz: labels out of range.*labels\[2\] = 3"):
        gd.load(f)
    np.savez(f, images=np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"bad\.npz has no 'labels' array"):
        gd.load(f)
    np.savez(f, images=np.full((2, 4, 4), 300.0), labels=np.array([0, 1]))
    with pytest.raises(ValueError, match="expected uint8"):
        gd.load(f)
    np.savez(f, images=np.full((2, 4, 4), 0.5), labels=np.array([0, 1]), age=np.array([3, 4]), scalar=np.array(7))
    with pytest.warns(DataWarning, match="no class_names"):
        with pytest.warns(DataWarning, match="'scalar' with shape"):
            ds = gd.load(f)
    assert ds.images[0, 0, 0] == 128 and ds.class_names == ["class_0", "class_1"]
    assert set(ds.meta) == {"age"} and any("scalar" in n for n in ds.notes)


def test_medmnist_layout(tmp_path):
    rng = np.random.default_rng(0)
    f = tmp_path / "pathmnist.npz"
    np.savez(
        f,
        **{
            f"{s}_images": rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
            for s, n in (("train", 10), ("val", 4), ("test", 6))
        },
        **{f"{s}_labels": rng.integers(0, 3, (n, 1)) for s, n in (("train", 10), ("val", 4), ("test", 6))},
    )
    assert gd.detect_format(f) == "medmnist"
    ds = gd.load(f)
    check_imageset(ds)
    assert ds.images.shape == (20, 28, 28, 3)
    assert Counter(ds.split.tolist()) == {"train": 10, "val": 4, "test": 6}
    multi = tmp_path / "chestmnist.npz"
    ml = rng.integers(0, 2, (5, 14))
    np.savez(multi, train_images=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), train_labels=ml)
    ds = gd.load(multi)
    np.testing.assert_array_equal(ds.multilabels, ml)
    np.testing.assert_array_equal(ds.labels, ml.any(1).astype(int))
    np.savez(
        multi,
        train_images=np.zeros((5, 28, 28), np.uint8),
        train_labels=np.arange(5)[:, None],
        val_images=np.zeros((2, 28, 28), np.uint8),
    )
    with pytest.raises(ValueError, match="val_images but no val_labels"):
        gd.load(multi)


def test_chestxray_csv_bad_input(tmp_path):
    write_png(tmp_path / "images" / "00000001_000.png", np.zeros((4, 4), np.uint8))
    csv = tmp_path / "Data_Entry_2017.csv"
    csv.write_text("Image Index,Patient ID\n00000001_000.png,1\n")
    with pytest.raises(ValueError, match=r"Data_Entry_2017\.csv is missing required column\(s\) \['Finding Labels'\]"):
        gd.load(tmp_path)
    csv.write_text("Image Index,Finding Labels,Patient ID\n00000001_000.png,Cardiomegaly|Dragons,1\n")
    with pytest.raises(ValueError, match="unknown finding 'Dragons'"):
        gd.load(tmp_path)
    csv.write_text("Image Index,Finding Labels,Patient ID\n00000001_000.png,Cardiomegaly|Edema,1\n")
    (tmp_path / "train_val_list.txt").write_text("00000001_000.png\n")
    (tmp_path / "test_list.txt").write_text("")
    ds = gd.load(tmp_path)
    assert ds.split.tolist() == ["train"] and ds.labels.tolist() == [1]
    assert ds.multilabels[0].nonzero()[0].tolist() == [1, 9]


# ------------------------------------------------------------------------------------------
# Parallel decoding and the cache
# ------------------------------------------------------------------------------------------


def test_cache_hit_invalidation_and_read_only_data(class_folder, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    before = sorted(p.name for p in class_folder.rglob("*"))
    os.chmod(class_folder / "train" / "cat", 0o555)  # the data folder may be read-only
    try:
        first = gd.load(class_folder, cache_dir=cache)
        assert len(list((cache / "images").glob("*.npz"))) == 1
        assert sorted(p.name for p in class_folder.rglob("*")) == before  # nothing written next to data

        def boom(*a, **k):
            raise AssertionError("decoded although cached")

        monkeypatch.setattr(_images, "decode_image", boom)
        second = gd.load(class_folder, cache_dir=cache)
        np.testing.assert_array_equal(first.images, second.images)
        monkeypatch.undo()
    finally:
        os.chmod(class_folder / "train" / "cat", 0o755)
    monkeypatch.setenv("GRAPHZOO_CACHE", str(cache))
    target = class_folder / "train" / "cat" / "cat0.png"
    write_png(target, np.full((8, 8), 7, np.uint8))
    os.utime(target, ns=(1, 1))  # a different mtime, whatever the clock resolution
    changed = gd.load(class_folder)
    i = list(changed.filenames).index("train/cat/cat0.png")
    assert (changed.images[i] == 7).all()
    assert len(list((cache / "images").glob("*.npz"))) == 2


def test_parallel_equals_serial(class_folder):
    a = gd.load(class_folder, workers=1, cache=False)
    b = gd.load(class_folder, workers=4, cache=False)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.filenames, b.filenames)


def test_mixed_size_cache_round_trip(class_folder, tmp_path):
    write_png(class_folder / "train" / "cat" / "big.png", np.arange(16 * 12, dtype=np.uint8).reshape(16, 12))
    a = quiet_load(class_folder, cache_dir=tmp_path / "c")
    b = quiet_load(class_folder, cache_dir=tmp_path / "c")
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))


# ------------------------------------------------------------------------------------------
# Splits
# ------------------------------------------------------------------------------------------


def test_label_budget_fraction_and_per_class():
    y = np.array([0] * 500 + [1] * 50 + [2] * 3 + [-1] * 20)
    mask = gd.label_budget(y, fraction=0.1, seed=3)
    assert [int(mask[y == c].sum()) for c in (0, 1, 2)] == [50, 5, 1]  # round(0.3) -> at least 1
    assert not mask[y == -1].any()
    np.testing.assert_array_equal(mask, gd.label_budget(y, fraction=0.1, seed=3))
    assert not np.array_equal(mask, gd.label_budget(y, fraction=0.1, seed=4))
    pc = gd.label_budget(y, per_class=3, seed=0)
    assert [int(pc[y == c].sum()) for c in (0, 1, 2)] == [3, 3, 3]
    with pytest.raises(ValueError, match="class 2 has only 3 samples"):
        gd.label_budget(y, per_class=4)
    with pytest.raises(ValueError, match="class 3 has no samples"):
        gd.label_budget(y, fraction=0.1, n_classes=4)
    with pytest.raises(ValueError, match="exactly one of"):
        gd.label_budget(y, fraction=0.1, per_class=2)
    with pytest.raises(ValueError, match="exactly one of"):
        gd.label_budget(y)


def test_label_budget_spreads_over_patients():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 25)  # 40 patients x 25 images
    y = rng.integers(0, 2, 1000)
    mask = gd.label_budget(y, per_class=15, groups=groups, seed=1)
    for c in (0, 1):
        chosen = groups[mask & (y == c)]
        assert len(chosen) == 15 and len(set(chosen)) == 15  # 15 different patients per class
    ungrouped = gd.label_budget(y, per_class=15, seed=1)
    assert ungrouped.sum() == 30


def test_label_budget_multi_hot():
    rng = np.random.default_rng(0)
    ml = (rng.random((400, 5)) < np.array([0.5, 0.2, 0.05, 0.01, 0.3])).astype(int)
    ml[0] = [0, 0, 0, 1, 0]  # the rarest column has at least one positive
    mask = gd.label_budget(ml, fraction=0.1, seed=0)
    pos = ml.sum(0)
    for j in range(5):
        assert ml[mask, j].sum() >= max(1, round(0.1 * pos[j])), j
    none = ~ml.any(1)
    assert (mask & none).sum() >= max(1, round(0.1 * none.sum()))
    assert mask.sum() < 0.2 * len(ml)  # not wildly over budget
    np.testing.assert_array_equal(mask, gd.label_budget(ml, fraction=0.1, seed=0))


def test_patient_split_on_malaria(malaria):
    split = gd.patient_split(malaria.labels, malaria.patient_ids, seed=0)
    assert split.dtype.kind == "U" and set(split) == {"train", "val", "test"}
    parts = {s: set(malaria.patient_ids[split == s]) for s in ("train", "val", "test")}
    assert (
        not (parts["train"] & parts["test"])
        and not (parts["train"] & parts["val"])
        and not (parts["val"] & parts["test"])
    )
    frac = {s: float((split == s).mean()) for s in parts}
    assert abs(frac["train"] - 0.7) < 0.08 and abs(frac["val"] - 0.1) < 0.05 and abs(frac["test"] - 0.2) < 0.06
    np.testing.assert_array_equal(split, gd.patient_split(malaria.labels, malaria.patient_ids, seed=0))
    assert not np.array_equal(split, gd.patient_split(malaria.labels, malaria.patient_ids, seed=1))


def test_patient_split_stratifies_and_validates():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(200), 5)
    y = np.repeat(rng.random(200) < 0.3, 5).astype(int)  # 30 % positive patients
    split = gd.patient_split(y, groups, fractions=(0.6, 0.2, 0.2), seed=0)
    for s in ("train", "val", "test"):
        assert abs(y[split == s].mean() - y.mean()) < 0.06, s
    no_val = gd.patient_split(y, groups, fractions=(0.8, 0.0, 0.2))
    assert "val" not in set(no_val)
    with pytest.raises(ValueError, match="summing to 1"):
        gd.patient_split(y, groups, fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="one patient id per sample"):
        gd.patient_split(y, groups[:10])
    ml = np.zeros((1000, 3), int)
    ml[rng.random(1000) < 0.1, 1] = 1
    assert set(gd.patient_split(ml, groups)) == {"train", "val", "test"}


def test_save_and_load_split(tmp_path):
    y = np.repeat([0, 1], 50)
    names = np.array([f"img{i}.png" for i in range(100)])
    mask = gd.label_budget(y, fraction=0.1, seed=0)
    split = gd.patient_split(y, None, seed=0)
    written = gd.save_split(
        tmp_path / "run",
        n_samples=100,
        labelled=mask,
        split=split,
        filenames=names,
        fraction=0.1,
        seed=0,
        source="test",
    )
    assert written == tmp_path / "run" / "split.json" and written.stat().st_size < 4000
    back = gd.load_split(tmp_path / "run", filenames=names)
    np.testing.assert_array_equal(back["labelled"], mask)
    np.testing.assert_array_equal(back["split"], split)
    assert back["params"] == {"fraction": 0.1, "seed": 0, "source": "test"}
    with pytest.raises(ValueError, match="different dataset"):
        gd.load_split(written, filenames=names[::-1])
    with pytest.raises(FileNotFoundError, match="no split file"):
        gd.load_split(tmp_path / "elsewhere")


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------


def test_cli_data_inspect(class_folder, capsys):
    from graphzoo.cli import main

    assert main(["data", "inspect", str(class_folder)]) == 0
    out = capsys.readouterr().out
    assert "cat" in out and "train" in out and "label budget" in out and "20%" in out
    assert main(["data", "inspect", str(class_folder / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["data", "inspect", str(class_folder), "-o", "size=4"]) == 0
    assert "4x4 (all)" in capsys.readouterr().out


def test_cli_inspect_real_cbis_csvs(capsys):
    folder = need(DATA_DIR / "cbis_ddsm" / "raw_sample")
    from graphzoo.cli import main

    assert main(["data", "inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "only the CSVs were read" in out and "1457" in out  # malignant rows: 637+147+544+129


def test_format_prefix_in_path(class_folder):
    ds = gd.load(f"folder:{class_folder}")
    assert ds.source.startswith("folder:") and len(ds) == 12
