"""graphzoo.data.store + LazyImages: sets read lazily from disk give the in-memory path's pixels, batches,
fingerprint and run results bit for bit, with a bounded decode cache and clear errors."""

from __future__ import annotations

import json
import os
import warnings
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from graphzoo.config import RunConfig  # noqa: E402
from graphzoo.data import prepare_data  # noqa: E402
from graphzoo.data.npz import read_npz  # noqa: E402
from graphzoo.data.store import ImageFiles, image_mode  # noqa: E402
from graphzoo.data.torchdata import LazyImages, Normalizer  # noqa: E402
from graphzoo.train import run_training  # noqa: E402
from graphzoo.train.trainer import data_fingerprint  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_cache")


def write_folder(root, n=40, colour=False, seed=0, sizes=((20, 24), (24, 20))):
    """``n`` images in class folders a/ and b/: gray (or RGB with distinct channels), of mixed sizes."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        shape = (h, w, 3) if colour else (h, w)
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x).save(d / f"{i:03d}.png")
    return root


def both(data, **opts):
    """(in memory, lazy) PreparedData of the same options, warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (prepare_data(str(data), data_in_memory="true", **opts),
                prepare_data(str(data), data_in_memory="false", **opts))


@pytest.mark.parametrize("colour, opts", [(False, dict(image_size=16)), (False, dict(image_size=32, in_chans=3)),
                                          (True, dict(image_size=20)), (True, dict(image_size=16, in_chans=1))])
def test_folder_lazily_equals_in_memory(tmp_path, colour, opts):
    eager, lazy = both(write_folder(tmp_path / "set", colour=colour), **opts)
    assert isinstance(eager.images, torch.Tensor) and isinstance(lazy.images, LazyImages)
    assert lazy.images.shape == eager.images.shape and len(lazy.images) == len(eager.images)
    order = torch.randperm(len(eager.images), generator=torch.Generator().manual_seed(0))
    for b in order.split(7):  # the trainer's batches: index tensors in any order
        assert torch.equal(lazy.images[b], eager.images[b])
    assert torch.equal(lazy.images[3], eager.images[3]) and torch.equal(lazy.images[2:9], eager.images[2:9])
    assert data_fingerprint(lazy) == data_fingerprint(eager)
    ne, nl = Normalizer.fit(eager.images, eager.idx("train")), Normalizer.fit(lazy.images, lazy.idx("train"))
    assert torch.equal(ne.mean, nl.mean) and torch.equal(ne.std, nl.std)
    assert (eager.split == lazy.split).all() and (eager.labelled == lazy.labelled).all()


def test_auto_keeps_small_sets_in_memory_and_reads_large_ones_lazily(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "set", n=10, sizes=((16, 16),))
    kw = dict(labels_per_class=1, split="random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert isinstance(prepare_data(str(root), **kw).images, torch.Tensor)  # 10 × 256 bytes: under 1 GiB
        monkeypatch.setenv("GRAPHZOO_IN_MEMORY_GB", str(10 * 256 / 2**30 * 0.99))  # just under the set's size
        assert isinstance(prepare_data(str(root), **kw).images, LazyImages)
        monkeypatch.setenv("GRAPHZOO_IN_MEMORY_GB", str(10 * 256 / 2**30))  # exactly its size: in memory
        assert isinstance(prepare_data(str(root), **kw).images, torch.Tensor)
    with pytest.raises(ValueError, match="data_in_memory must be one of"):
        prepare_data(str(root), data_in_memory="sometimes")
    with pytest.raises(ValueError, match="data_in_memory must be auto, true or false"):
        RunConfig(data="x", data_in_memory="maybe").validate()


def save_npz(path, images, compressed):
    labels = np.arange(len(images)) % 2
    (np.savez_compressed if compressed else np.savez)(path, images=images, labels=labels,
                                                      class_names=np.array(["x", "y"]))
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_images_are_memory_mapped(tmp_path, compressed):
    images = np.random.default_rng(1).integers(0, 256, (30, 12, 14), dtype=np.uint8)
    path = save_npz(tmp_path / "set.npz", images, compressed)
    with image_mode("false"):
        ds = read_npz(path)
    assert isinstance(ds.images, np.memmap) and np.array_equal(ds.images, images)
    cached = list((tmp_path.parent / "graphzoo-cache" / "npy").glob("*.npy")) if compressed else []
    if compressed:  # unpacked once into the cache, then reused as it is
        stored = zipfile.ZipFile(path).getinfo("images.npy").compress_type
        assert stored == zipfile.ZIP_DEFLATED and len(cached) >= 1
        (newest,) = [f for f in cached if os.path.samefile(f, ds.images.filename)]
        before = newest.stat().st_mtime_ns
        with image_mode("false"):
            assert np.array_equal(read_npz(path).images, images)
        assert newest.stat().st_mtime_ns == before
    else:
        assert os.path.samefile(ds.images.filename, path)  # mapped inside the archive itself
    eager, lazy = both(path, image_size=16, split="random")
    idx = torch.arange(30).flip(0)
    assert torch.equal(lazy.images[idx], eager.images[idx]) and data_fingerprint(lazy) == data_fingerprint(eager)


def test_decode_cache_is_bounded(tmp_path):
    root = write_folder(tmp_path / "set", n=30, sizes=((16, 16),))
    files = ImageFiles(sorted(str(p) for p in root.rglob("*.png")))
    lazy = LazyImages(files, cache_bytes=5 * 16 * 16)
    full = torch.stack([torch.from_numpy(np.array(files[i]))[None] for i in range(30)])
    for _ in range(2):
        assert torch.equal(lazy[torch.arange(30)], full)  # a batch larger than the cache still comes whole
        assert len(lazy._cache) <= 5
    assert torch.equal(lazy[[29, 0, 29]], full[[29, 0, 29]])


def test_decode_cache_reuses_its_slots_and_decodes_only_misses():
    """Random batches (repeats, batches larger than the cache) against a reference LRU: every batch is the
    source's pixels, only the images the reference misses are decoded, and the cache is one slab of
    ``capacity`` images however many are read (a new image takes the slot of the one it evicts)."""
    import pickle
    from collections import OrderedDict

    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, (50, 8, 8), dtype=np.uint8)
    lazy = LazyImages(src, cache_bytes=7 * 64)
    decoded: list[int] = []
    raw = lazy._raw
    lazy._raw = lambda idx: (decoded.extend(idx), raw(idx))[1]
    ref: OrderedDict[int, None] = OrderedDict()
    for step in range(300):
        order = rng.integers(0, 50, int(rng.integers(1, 12))).tolist()
        miss = list(dict.fromkeys(i for i in order if i not in ref))
        for i in order:
            if i in ref:
                ref.move_to_end(i)
        for i in miss[-7:]:
            ref[i] = None
            if len(ref) > 7:
                ref.popitem(last=False)
        decoded.clear()
        batch = lazy[order]
        assert torch.equal(batch, torch.from_numpy(src[order])[:, None]), step
        assert decoded == miss and list(lazy._cache) == list(ref), step
        batch.fill_(0)  # the caller's batch is its own: writing to it never reaches the cache
    assert lazy._slab.shape == (7, 1, 8, 8) and sorted(lazy._cache.values()) == list(range(7))
    assert torch.equal(lazy[list(ref)], torch.from_numpy(src[list(ref)])[:, None])
    del lazy._raw
    copy = pickle.loads(pickle.dumps(lazy))  # another process's copy starts with an empty cache
    assert copy._slab is None and not copy._cache and torch.equal(copy[[3, 1]], torch.from_numpy(src[[3, 1]])[:, None])


def test_file_gone_mid_run_is_named(tmp_path):
    root = write_folder(tmp_path / "set", n=12, sizes=((16, 16),))
    _, lazy = both(root, split="random", labels_per_class=1)
    gone = root / "a" / "005.png"
    gone.unlink()
    with pytest.raises(FileNotFoundError, match=r"005\.png is gone.*Fix: put the file back"):
        lazy.images[torch.arange(12)]


def test_lazy_set_mixing_gray_and_colour_asks_for_in_chans(tmp_path):
    root = write_folder(tmp_path / "set", n=6, sizes=((16, 16),))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "a" / "z.png")
    _, lazy = both(root, split="random", labels_per_class=1, in_chans=3)  # given: both paths agree
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy = prepare_data(str(root), data_in_memory="false", split="random", labels_per_class=1)
    with pytest.raises(ValueError, match=r"z\.png is a colour image but the first image is gray; set in_chans"):
        lazy.images[torch.arange(len(lazy.images))]


def test_skip_corrupt_lazily_skips_the_same_files(tmp_path):
    root = write_folder(tmp_path / "set", n=12, sizes=((16, 16),))
    (root / "b" / "bad.png").write_bytes(b"not a png")
    eager, lazy = both(root, split="random", labels_per_class=1, skip_corrupt=True)
    assert len(lazy.images) == len(eager.images) == 12
    assert torch.equal(lazy.images[torch.arange(12)], eager.images)


def strip_times(m):
    """Drop wall-clock entries (keys ending in _s), recursively: everything else must match."""
    if isinstance(m, dict):
        return {k: strip_times(v) for k, v in m.items() if not k.endswith("_s")}
    return m


def test_tiny_run_same_lazily_and_in_memory(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "blobs"
    for i in range(60):  # a bright bar on the left (a) or the right (b)
        x = rng.normal(40, 12, (20, 20))
        x[4:-4, 2:9] += 150 * (i % 2)
        x[4:-4, 11:-2] += 150 * (1 - i % 2)
        (root / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(root / "ab"[i % 2] / f"{i:02d}.png")
    runs = {}
    for mode in ("true", "false"):
        cfg = RunConfig(data=str(root), out=str(tmp_path), name=f"run-{mode}", threads=1, progress=False, epochs=1,
                        min_epoch_steps=3, batch_size=16, n_neighbors=5, label_fraction=0.3, val_labels="all",
                        hflip=False, data_in_memory=mode)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = run_training(cfg)
        assert isinstance(result.data.images, LazyImages if mode == "false" else torch.Tensor)
        m = json.loads(result.rundir.metrics.read_text())
        runs[mode] = (strip_times(m), np.load(result.rundir.features))
    assert np.array_equal(runs["true"][1], runs["false"][1])
    assert runs["true"][0] == runs["false"][0]


def test_labels_csv_set_lazily_equals_in_memory(tmp_path):
    root = write_folder(tmp_path / "flat", n=16, sizes=((16, 16),))  # folders a/, b/ are not classes the CSV names
    rows = [f"{'a' if i % 2 else 'b'}/{i:03d}.png,{'dog' if i % 3 else 'cat'}" for i in range(10)]
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    eager, lazy = both(root, labels=str(csv), split="random", image_size=16)
    assert isinstance(lazy.images, LazyImages) and (eager.targets == lazy.targets).all()
    assert torch.equal(lazy.images[torch.arange(16)], eager.images)
