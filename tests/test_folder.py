"""graphzoo.data.folder: the class-per-folder reader on synthetic folders (the real ones are in test_readers.py)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import check_imageset, write_png
from PIL import Image

import graphzoo.data as gd
from graphzoo.data._images import DataWarning

pytestmark = pytest.mark.usefixtures("private_cache")


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


def test_images_without_class_folders(tmp_path):
    write_png(tmp_path / "flat" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="no class folders"):
        gd.load(tmp_path / "flat", format="folder")


def test_unlabelled_folder(class_folder):
    rng = np.random.default_rng(1)
    for i in range(4):
        write_png(class_folder / "unlabelled" / f"u{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    ds = gd.load(class_folder)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 16
    free = np.char.startswith(ds.filenames.astype(str), "unlabelled/")
    assert free.sum() == 4 and (ds.labels[free] == -1).all() and (ds.labels[~free] >= 0).all()
    assert gd.load(class_folder, class_names=["dog", "cat"]).labels.tolist().count(-1) == 4
    # Another name through the option; an empty tuple reads the folder as a class.
    (class_folder / "unlabelled").rename(class_folder / "pool")
    assert (gd.load(class_folder, unlabelled_dirs=["Pool"]).labels == -1).sum() == 4
    assert gd.load(class_folder, unlabelled_dirs=()).class_names == ["cat", "dog", "pool"]


def test_only_unlabelled_images_is_refused(tmp_path):
    write_png(tmp_path / "f" / "unlabelled" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="holds only unlabelled images"):
        gd.load(tmp_path / "f", format="folder")
