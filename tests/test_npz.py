"""graphzoo.data.npz: our npz layout and the MedMNIST layout on synthetic files (real ones: test_readers.py)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from conftest import check_imageset

import graphzoo.data as gd
from graphzoo.data._images import DataWarning


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


def test_empty_npz_says_it_holds_no_images(tmp_path):
    f = tmp_path / "empty.npz"
    np.savez(f, images=np.zeros((0, 4, 4), np.uint8), labels=np.zeros(0, np.int64), class_names=np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"empty\.npz holds no images"):  # was: "only 0 patients for 3 ... parts"
        gd.load(f)
