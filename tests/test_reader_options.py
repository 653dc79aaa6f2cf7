"""The image readers' shared decoding options (DecodeOptions) and a run's ``reader_options`` config key."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
from conftest import write_png
from PIL import Image

import graphzoo.data as gd
from graphzoo.config import RunConfig, load_config
from graphzoo.data import DecodeOptions
from graphzoo.data._images import DataWarning, decode_many
from graphzoo.data.prepare import prepare_data, read_source

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


def test_reader_options_reach_the_reader(films, class_folder):
    side = {mm: read_source(str(films), data_format="mias_patches", reader_options={"patch_mm": mm}).images.shape[1]
            for mm in (16.0, 32.0)}
    assert side == {16.0: 10, 32.0: 20}  # patch_mm / 1.6 mm per film pixel
    cfg = load_config(overrides={"data": str(class_folder), "reader_options": "{size: 4, channels: 3}"})
    assert cfg.reader_options == {"size": 4, "channels": 3}
    d = prepare_data(**cfg.validate().data_options())
    assert tuple(d.images.shape) == (12, 3, 4, 4)  # decoded at 4 px in colour; image_size=0 keeps that


def test_unknown_reader_option_names_it_and_lists_the_valid_ones(films, class_folder):
    cfg = RunConfig(data=str(films), data_format="mias_patches", reader_options={"patch_size": 16})
    with pytest.raises(ValueError, match=r"reader_options: the 'mias_patches' reader does not take 'patch_size'\. "
                                         r"Did you mean 'patch_mm'\? Valid: allow_missing, patch_mm, .*cache_dir\."):
        cfg.validate()
    # Detected format (a class folder) when data_format is empty; the run's own keys are not reader options.
    with pytest.raises(ValueError, match=r"the 'folder' reader does not take 'patch_mm'\. Valid: channels, size"):
        RunConfig(data=str(class_folder), reader_options={"patch_mm": 16}).validate()
    with pytest.raises(ValueError, match=r"'skip_corrupt' is a setting of its own\. Fix: set skip_corrupt instead"):
        RunConfig(data=str(class_folder), reader_options={"skip_corrupt": True}).validate()
    with pytest.raises(ValueError, match=r"--set: reader_options must be dict"):
        load_config(overrides={"reader_options": "[1, 2]"})
    # prepare_data refuses them too (a notebook that never builds a RunConfig).
    with pytest.raises(ValueError, match=r"does not take 'patch_mm'"):
        prepare_data(str(class_folder), reader_options={"patch_mm": 16})


def test_decode_kwargs_call_decode_many(tmp_path):
    # decode_many called with the object's keywords gives the pixels that were written.
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8)
    path = write_png(tmp_path / "a.png", arr)
    images, ok = decode_many([path], **DecodeOptions(cache=False).decode_kwargs())
    assert ok.all()
    np.testing.assert_array_equal(images[0], arr)
