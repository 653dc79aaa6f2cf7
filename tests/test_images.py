"""graphzoo.data._images: decoding one file and many, channels, corrupt files, the cache.

Real data comes from ``$GRAPHZOO_DATA`` (default: the shared data folder beside the repository);
tests that need it skip with the path they looked for.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import quiet_load, write_png
from PIL import Image

import graphzoo.data as gd
from graphzoo.data import _images
from graphzoo.data._images import CorruptImageError, DataWarning

pytestmark = pytest.mark.usefixtures("private_cache")


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
