"""graphzoo.data.readers: load, format detection, the registry, every real dataset sample and npz file.

The synthetic tests of each reader are in the reader's own test file (test_folder.py, test_npz.py, ...).

Real data comes from ``$GRAPHZOO_DATA`` (default: the shared data folder beside the repository);
tests that need it skip with the path they looked for.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_DIR, check_imageset, data_path, quiet_load

import graphzoo.data as gd

RAW_SAMPLES = sorted(DATA_DIR.glob("*/raw_sample")) if DATA_DIR.is_dir() else []
NPZ_FILES = sorted(DATA_DIR.rglob("*.npz")) if DATA_DIR.is_dir() else []

pytestmark = pytest.mark.usefixtures("private_cache")


def test_import_does_not_pull_torch():
    code = "import sys, graphzoo.data; assert 'torch' not in sys.modules, 'graphzoo.data imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_names_and_did_you_mean(tmp_path):
    assert gd.READERS.names() == ["cbis_ddsm", "chestxray14", "folder", "medmnist", "mias", "mias_patches",
                                  "mias_patches_malignancy", "npz"]
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="Did you mean 'folder'"):
        gd.load(tmp_path, format="foldr")


@pytest.mark.skipif(not RAW_SAMPLES, reason=f"no */raw_sample folders under {DATA_DIR} (set GRAPHZOO_DATA)")
@pytest.mark.parametrize("folder", RAW_SAMPLES, ids=[p.parent.name for p in RAW_SAMPLES])
def test_every_raw_sample_loads(folder):
    fmt = gd.detect_format(folder)
    if fmt == "cbis_ddsm":  # CSVs only: no CBIS images exist in the shared data
        with pytest.raises(gd.cbis_ddsm.NoImagesFoundError, match="image_root="):
            gd.load(folder)
        ds = gd.load(folder, metadata_only=True)
        assert ds.images is None
    elif fmt in ("chestxray14", "mias"):  # the samples hold a few of the images their label files list
        with pytest.raises(ValueError, match="allow_missing=True"):
            gd.load(folder)
        ds = quiet_load(folder, allow_missing=True)
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
    folder = data_path("malaria", "raw_sample")
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


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        gd.load(tmp_path / "nowhere")


def test_format_prefix_in_path(class_folder):
    ds = gd.load(f"folder:{class_folder}")
    assert ds.source.startswith("folder:") and len(ds) == 12


@pytest.mark.parametrize("name", gd.READERS.names())
def test_every_reader_brings_its_detection(name):
    reader = gd.READERS.get(name)
    assert callable(reader.detect) and isinstance(reader.priority, int)
    priorities = [gd.READERS.get(n).priority for n in gd.READERS.names()]
    assert priorities.count(reader.priority) == 1  # the order of detection never depends on names


def test_a_new_format_is_one_registration(tmp_path):
    from graphzoo.data.readers import READERS, register_reader

    @register_reader("toy", detect=lambda p: p.suffix == ".toy", priority=5)
    def read_toy(path, *, skip_corrupt=False):
        return gd.ImageSet(images=np.zeros((2, 3, 3), np.uint8), labels=np.array([0, 1]), class_names=["a", "b"],
                           source=f"toy:{path}")

    try:
        (tmp_path / "x.toy").write_text("")
        assert gd.detect_format(tmp_path / "x.toy") == "toy"
        assert gd.load(tmp_path / "x.toy").source.startswith("toy:")
    finally:
        READERS._entries.pop("toy")


def test_detection_order_on_folders(tmp_path, class_folder):
    assert gd.detect_format(class_folder) == "folder"
    (class_folder / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels\n")
    assert gd.detect_format(class_folder) == "chestxray14"  # the label file wins over the image folders
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="cannot tell the format.*Fix: pass format= one of cbis_ddsm"):
        gd.detect_format(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(ValueError, match="cannot tell the format of the file"):
        gd.detect_format(tmp_path / "notes.txt")


def test_folder_wrapping_one_npz_is_read_as_that_file(tmp_path):
    np.savez(tmp_path / "set.npz", images=np.zeros((3, 4, 4), np.uint8), labels=np.array([0, 1, 0]),
             class_names=np.array(["a", "b"]))
    assert gd.detect_format(tmp_path) == "npz"
    ds = gd.load(tmp_path)  # used to fail: np.load on the folder
    assert len(ds) == 3 and ds.source == f"npz:{tmp_path / 'set.npz'}"


def test_missing_path_names_no_private_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        gd.load(tmp_path / "nowhere")
    assert "shared" not in str(info.value) and "GRAPHZOO_DATA" not in str(info.value)


def test_one_public_list_of_image_suffixes():
    assert {".png", ".tif", ".pgm", ".webp", ".dcm", ".dicom"} <= gd.IMAGE_SUFFIXES
    from graphzoo.data._images import DICOM_SUFFIXES, PIL_SUFFIXES

    assert gd.IMAGE_SUFFIXES == PIL_SUFFIXES | DICOM_SUFFIXES
