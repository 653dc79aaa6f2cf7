"""Shared fixtures: small synthetic problems and the location of the real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real medical data lives beside the repository (``../shared/data``); override with GRAPHZOO_DATA.
DATA_DIR = Path(os.environ.get("GRAPHZOO_DATA", REPO.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """Path under the shared data folder, skipping the calling test when it is absent."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set GRAPHZOO_DATA to the shared data folder)")
    return path


def mask_labels(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Keep ``per_class`` random labels of each class, set the rest to -1."""
    rng = np.random.default_rng(seed)
    masked = np.full_like(y, -1)
    for c in np.unique(y):
        keep = rng.choice(np.flatnonzero(y == c), per_class, replace=False)
        masked[keep] = c
    return masked


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ------------------------------------------------------------------------------------------
# graphzoo.data: shared by the reader, image, split and inspect tests
# ------------------------------------------------------------------------------------------


@pytest.fixture
def private_cache(tmp_path_factory, monkeypatch):
    """Decode into a cache folder of this test session, never ~/.cache."""
    monkeypatch.setenv("GRAPHZOO_CACHE", str(tmp_path_factory.getbasetemp() / "graphzoo-cache"))


@pytest.fixture(scope="module")
def malaria():
    """The 27,558-cell malaria npz, loaded once per test module."""
    import graphzoo.data as gd

    return gd.load(data_path("malaria", "malaria_50_gray.npz"))


def quiet_load(*args, **kwargs):
    """``graphzoo.data.load`` with its DataWarnings silenced."""
    import warnings

    import graphzoo.data as gd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gd.DataWarning)
        return gd.load(*args, **kwargs)


def check_imageset(ds) -> None:
    """Invariants every reader's ImageSet must honour."""
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


def write_png(path: Path, arr: np.ndarray) -> Path:
    """Save ``arr`` (uint8 or uint16, (H, W) or (H, W, C)) as a PNG, creating folders."""
    from PIL import Image

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


@pytest.fixture
def pydicom_files():
    """(pydicom, CT_small.dcm, MR_small.dcm, a MONOCHROME1 CR file) from pydicom's test data."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file, get_testdata_files

    mono1 = get_testdata_files("**/CR1/6154")
    if not mono1:
        pytest.skip("pydicom's MONOCHROME1 CR test file is not installed")
    return pydicom, Path(get_testdata_file("CT_small.dcm")), Path(get_testdata_file("MR_small.dcm")), Path(mono1[0])


# ------------------------------------------------------------------------------------------
# Runs: shared by the grid, report and baseline tests
# ------------------------------------------------------------------------------------------


def bar_images(rng: np.random.Generator, n: int = 120, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Gray uint8 images (n, size, size) whose class is the side (0 left / 1 right) of a bright bar, plus noise;
    returns ``(images, labels)``. Draws from ``rng``, so a caller's later draws stay as they were."""
    x = rng.normal(40, 12, (n, size, size))
    y = np.arange(n) % 2
    h = size // 2
    x[y == 0, 3:-3, 1 : h - 1] += 150
    x[y == 1, 3:-3, h + 1 : -1] += 150
    return np.clip(x, 0, 255).astype(np.uint8), y


def write_npz(path, n=120, size=16, seed=0, multilabel=False):
    """Tiny npz in our layout: the class is where a bright bar sits (left / right), patients in 20 groups."""
    rng = np.random.default_rng(seed)
    x, y = bar_images(rng, n, size)
    extra = {}
    if multilabel:
        M = np.stack([y, 1 - y, (rng.random(n) < 0.5).astype(int)], 1)
        extra = dict(multilabels=M, multilabel_names=np.array(["left", "right", "noise"]))
    np.savez(path, images=x, labels=y, class_names=np.array(["left", "right"]),
             patient_ids=np.array([f"p{i % 20}" for i in range(n)]),
             filenames=np.array([f"c{i}.png" for i in range(n)]), **extra)
    return path


#: Run options of a one-epoch, tiny-network run on :func:`write_npz` data (grid, report and baseline tests).
TINY_RUN = dict(split="patient", epochs=1, warmup_epochs=1, min_epoch_steps=2, batch_size=16, labelled_per_batch=4,
                patience=2, n_neighbors=8, threads=1, backbone_kwargs={"width": 4}, augment=False, val_labels="all")


@pytest.fixture(scope="session")
def tiny_one_pass(tmp_path_factory):
    """A finished tiny One Pass run (:data:`TINY_RUN` on :func:`write_npz`'s 120 images, 30 % of the training
    images labelled): the ``TrainingResult`` (``.rundir``, ``.data``, ``.metrics``). Trained once per test process
    and shared, so tests only read it; a test that writes into a run folder takes :func:`copy_run` of it."""
    pytest.importorskip("torch")
    from graphzoo.config import RunConfig, apply_overrides
    from graphzoo.train import run_training

    tmp = tmp_path_factory.mktemp("tiny-one-pass")
    cfg = apply_overrides(RunConfig(), {"data": str(write_npz(tmp / "tiny.npz")), **TINY_RUN, "label_fraction": 0.3,
                                        "out": str(tmp), "name": "op", "progress": False})
    return run_training(cfg)


def copy_run(rundir, dest: Path):
    """A private copy of a finished run folder at ``dest`` (it still reads the original's data file)."""
    import shutil

    from graphzoo.rundir import RunDir

    shutil.copytree(rundir.path, dest)
    return RunDir(dest)
