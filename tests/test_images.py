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
    assert deep.dtype == np.uint8 and deep.min() == 0 and deep.max() == round(35000 / 257)  # 16 bits onto 8
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


def test_16_bit_scaling_does_not_depend_on_the_image_maximum(tmp_path):
    """Issue 11 #9: a maximum of 250 was kept raw and one of 300 stretched to 255."""
    ramp = np.arange(16, dtype=np.uint16).reshape(4, 4)
    low = gd.decode_image(write_png(tmp_path / "max250.png", (ramp * 250 // 15).astype(np.uint16)))
    high = gd.decode_image(write_png(tmp_path / "max300.png", (ramp * 300 // 15).astype(np.uint16)))
    np.testing.assert_array_equal(low, np.rint((ramp * 250 // 15) / 257))
    np.testing.assert_array_equal(high, np.rint((ramp * 300 // 15) / 257))
    assert low.max() == high.max() == 1  # 250 and 300 of 65535 are both near black
    full = gd.decode_image(write_png(tmp_path / "full.png", np.array([[0, 257, 32896, 65535]], np.uint16)))
    assert full.tolist() == [[0, 1, 128, 255]]


def test_16_bit_images_keep_their_brightness_order(tmp_path):
    rng = np.random.default_rng(0)
    dark = rng.integers(1000, 20000, (8, 8)).astype(np.uint16)
    bright = rng.integers(30000, 60000, (8, 8)).astype(np.uint16)
    write_png(tmp_path / "set" / "a" / "dark.png", dark)
    write_png(tmp_path / "set" / "a" / "bright.png", bright)
    ds = gd.load(tmp_path / "set", cache=False)
    got = dict(zip(ds.filenames, ds.images))
    assert got["a/dark.png"].max() < got["a/bright.png"].min()  # min-max made both span 0..255


def test_images_without_a_fixed_range_are_refused(tmp_path):
    f = tmp_path / "float.tif"
    Image.fromarray(np.full((4, 4), 300.0, np.float32)).save(f)
    with pytest.raises(CorruptImageError, match="no fixed range"):
        gd.decode_image(f)
    unit = tmp_path / "unit.tif"
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(unit)
    assert (gd.decode_image(unit) == 128).all()


def test_skipping_every_file_is_an_error(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "set" / "cls").mkdir(parents=True, exist_ok=True)
        (tmp_path / "set" / "cls" / f"{name}.png").write_bytes(b"not a png")
    with pytest.raises(CorruptImageError, match="none of the 2 files could be decoded"):  # was: an empty set
        gd.load(tmp_path / "set", skip_corrupt=True)
