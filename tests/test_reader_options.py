"""The image readers' shared decoding options (DecodeOptions)."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from conftest import write_png
from PIL import Image

import graphzoo.data as gd
from graphzoo.data import DecodeOptions
from graphzoo.data._images import DataWarning, decode_many

pytestmark = pytest.mark.usefixtures("private_cache")

S = 128  # synthetic film side: 1024 / 128 = 8, so a film pixel is 8 × 0.2 mm = 1.6 mm


@pytest.fixture
def films(tmp_path):
    """A mini-MIAS folder: one film with a benign lesion, two normal films (a bright half-disc breast each)."""
    rows = [("mdb001", "G CIRC B 176 696 30"), ("mdb002", "G NORM"), ("mdb003", "G NORM")]
    (tmp_path / "Info.txt").write_text("\n".join(["header", *(f"{r} {rest}" for r, rest in rows)]) + "\n")
    rr, cc = np.mgrid[0:S, 0:S]
    film = np.where(np.hypot(rr - S / 2, cc) < 50, 120, 3).astype(np.uint8)
    for ref, _ in rows:
        Image.fromarray(film).save(tmp_path / f"{ref}.pgm")
    return tmp_path


def test_decode_options_is_frozen_and_maps_onto_decode_many():
    opts = DecodeOptions(channels=3, size=4, workers=1, cache=False, cache_dir="/tmp/x", skip_corrupt=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.size = 8  # type: ignore[misc]
    kwargs = opts.decode_kwargs()
    assert set(kwargs) <= set(inspect.signature(decode_many).parameters)
    assert kwargs == {"channels": 3, "size": 4, "skip_corrupt": True, "workers": 1, "cache": False,
                      "cache_dir_": "/tmp/x"}
    # Every field but stack (finish_images takes it) reaches decode_many.
    assert {f.name for f in dataclasses.fields(DecodeOptions)} - {"stack"} == {k.rstrip("_") for k in kwargs}


def test_one_options_object_reads_like_the_keywords(class_folder):
    by_keywords = gd.load(class_folder, channels=3, size=4, stack=True)
    by_object = gd.load(class_folder, decode=DecodeOptions(channels=3, size=4, stack=True))
    assert by_keywords.images.shape == (12, 4, 4, 3)
    np.testing.assert_array_equal(by_object.images, by_keywords.images)
    np.testing.assert_array_equal(by_object.filenames, by_keywords.filenames)
    # A keyword beside the object replaces that field only.
    mixed = gd.load(class_folder, decode=DecodeOptions(channels=3, size=4), size=6)
    assert mixed.images.shape == (12, 6, 6, 3)
    with pytest.raises(ValueError, match=r"decode must be a graphzoo.data.DecodeOptions, got dict"):
        gd.load(class_folder, decode={"size": 4})


def test_skip_corrupt_in_the_object_skips(class_folder):
    (class_folder / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(gd.CorruptImageError):
        gd.load(class_folder)
    with pytest.warns(DataWarning, match="broken.png"):
        ds = gd.load(class_folder, decode=DecodeOptions(skip_corrupt=True))
    assert len(ds) == 12


def test_readers_list_the_shared_keywords_and_only_those_they_take(films):
    with pytest.raises(ValueError, match=r"does not take option\(s\) 'colour'; it takes: .*channels, size, stack"):
        gd.load(films, format="mias", colour=1)
    # The patch readers decode the films gray and whole: channels / size / stack stay refused, as before.
    with pytest.raises(ValueError, match=r"'mias_patches' does not take option\(s\) 'size'"):
        gd.load(films, format="mias_patches", size=64)


def test_decode_kwargs_call_decode_many(tmp_path):
    # decode_many called with the object's keywords gives the pixels that were written.
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8)
    path = write_png(tmp_path / "a.png", arr)
    images, ok = decode_many([path], **DecodeOptions(cache=False).decode_kwargs())
    assert ok.all()
    np.testing.assert_array_equal(images[0], arr)
