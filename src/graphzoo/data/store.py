"""Image sets that need not fit in memory: files decoded on demand, npz images memory-mapped (torch-free).

By default a reader decodes every image into one array. A set whose decoded images exceed a memory
budget is read *lazily* instead, so that peak memory does not grow with the number of images:

* **Image files** (folders, labels CSVs, ChestX-ray14's CSV, MIAS, CBIS-DDSM): the reader lists the
  files as usual, and :func:`~graphzoo.data._images.decode_many` returns an :class:`ImageFiles` — the
  paths and decoding options — instead of the pixels. ``ImageFiles[i]`` decodes file ``i`` exactly as
  the in-memory path does (:func:`~graphzoo.data._images.decode_image`).
* **npz** (:func:`~graphzoo.data.npz.read_npz`): the ``images`` member is memory-mapped
  (:func:`npz_images_map`). ``np.load(mmap_mode="r")`` cannot map a member of a zip archive, and most
  npz files (all of graphzoo's shared data) are *compressed* members, which cannot be mapped at all: a
  compressed member is unpacked once, streaming, into ``$GRAPHZOO_CACHE/npy/<key>.npy`` (the key: the
  file's absolute path, size and modification time, and the member), which is then mapped.

The rule (``data_in_memory``, set for the duration of a read with :func:`image_mode`): ``"true"``
decodes everything into memory (what every reader did before), ``"false"`` always reads lazily, and
``"auto"`` keeps a set in memory when its decoded size — ``N ×`` the bytes of its first image decoded,
or the npz member's size — is at most :func:`in_memory_budget` (1 GiB; ``$GRAPHZOO_IN_MEMORY_GB``).
All of graphzoo's shared sets (≤ 85 MiB) stay in memory under ``auto``; ChestX-ray14 at 224 px
(112,120 × 224² = 5.6 GB) is read lazily. Lazy and in-memory reading give the same pixels, bit for
bit (``tests/test_store.py``); the torch side, :class:`~graphzoo.data.torchdata.LazyImages`, turns
either lazy source into batches with a bounded cache of decoded images.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import shutil
import struct
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np

from ._images import CorruptImageError, cache_dir, decode_image, note

__all__ = ["MODES", "ImageFiles", "image_mode", "in_memory_budget", "keep_in_memory", "lazy_files",
           "npz_images_map", "is_lazy"]

#: The values of ``data_in_memory``.
MODES = ("auto", "true", "false")
_MODE: contextvars.ContextVar[str] = contextvars.ContextVar("graphzoo_data_in_memory", default="true")
_DEFAULT_BUDGET_GB = 1.0
_CHUNK = 64  # files per thread-pool task


@contextmanager
def image_mode(mode: str):
    """Within the block, readers follow ``data_in_memory=mode`` (``"auto"``, ``"true"``, ``"false"``)."""
    mode = str(mode).lower()
    if mode not in MODES:
        raise ValueError(f"data_in_memory must be one of {', '.join(MODES)}, got {mode!r}")
    token = _MODE.set(mode)
    try:
        yield
    finally:
        _MODE.reset(token)


def in_memory_budget() -> int:
    """Bytes of decoded images ``data_in_memory=auto`` keeps in memory: ``$GRAPHZOO_IN_MEMORY_GB`` GiB (default 1).

    1 GiB because the in-memory path briefly holds about three copies (the decoded list, the stacked
    array, the tensor), which keeps its peak near 3 GiB, under the 4 GB a lazy run stays within.
    """
    raw = os.environ.get("GRAPHZOO_IN_MEMORY_GB", "")
    try:
        gb = float(raw) if raw else _DEFAULT_BUDGET_GB
    except ValueError:
        raise ValueError(f"GRAPHZOO_IN_MEMORY_GB={raw!r} is not a number; set it to a size in GiB, e.g. 2") from None
    return int(gb * 2**30)


def keep_in_memory(nbytes: int) -> bool:
    """Whether a set of ``nbytes`` decoded bytes is read into memory under the current :func:`image_mode`."""
    mode = _MODE.get()
    return mode == "true" or (mode == "auto" and nbytes <= in_memory_budget())


def is_lazy(images) -> bool:
    """True for the lazy sources an :class:`~graphzoo.data.ImageSet` may hold (files, a memory map)."""
    return isinstance(images, (ImageFiles, np.memmap))


class ImageFiles:
    """N image files decoded on demand: item ``i`` is ``decode_image(paths[i], channels=, size=)``.

    Parameters
    ----------
    paths : sequence of path-like, length N
    channels, size
        As in :func:`~graphzoo.data._images.decode_image`.
    workers : int, optional
        Threads :meth:`decode` uses (default ``min(8, os.cpu_count())``).

    A file that is gone when it is decoded (moved or deleted after the set was listed) raises a
    ``FileNotFoundError`` naming it; an unreadable one a :class:`CorruptImageError`.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], channels: int | None = None, size=None,
                 workers: int | None = None) -> None:
        self.paths = [str(p) for p in paths]  # plain strings: ~150 bytes a file, 17 MB for 112k files
        self.channels, self.size = channels, size
        self.workers = workers or min(8, os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0  # the process that made the pool: a forked DataLoader worker makes its own

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.decode([i])[0]

    def __getstate__(self) -> dict:  # a DataLoader worker gets the paths, not the thread pool
        return {**self.__dict__, "_pool": None}

    def subset(self, keep: np.ndarray) -> "ImageFiles":
        """The files where the bool mask ``keep`` (N,) is True."""
        return ImageFiles([p for p, k in zip(self.paths, keep) if k], self.channels, self.size, self.workers)

    def _one(self, i: int) -> np.ndarray:
        path = self.paths[i]
        try:
            return decode_image(path, channels=self.channels, size=self.size)
        except CorruptImageError:
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"image file {path} is gone: it was there when the data was listed and has been moved or deleted "
                    "since (a set over the memory budget is read from disk as the run needs its images). Fix: put "
                    "the file back, or start the run again so that the set is listed anew.") from None
            raise

    def decode(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Decode files ``indices`` (in that order) with the thread pool; uint8 (H, W) or (H, W, C) each."""
        indices = [int(i) for i in indices]
        if len(indices) <= _CHUNK or self.workers <= 1:
            return [self._one(i) for i in indices]
        if self._pool is None or self._pool_pid != os.getpid():
            self._pool, self._pool_pid = ThreadPoolExecutor(max_workers=self.workers), os.getpid()
        chunks = [indices[k: k + _CHUNK] for k in range(0, len(indices), _CHUNK)]
        out: list[np.ndarray] = []
        for part in self._pool.map(lambda c: [self._one(i) for i in c], chunks):
            out.extend(part)
        return out

    def readable(self) -> np.ndarray:
        """(N,) bool: which files decode. One streaming pass: each image is decoded and dropped."""
        ok = np.ones(len(self), bool)
        for i in range(len(self)):
            try:
                self._one(i)
            except (CorruptImageError, FileNotFoundError):
                ok[i] = False
        return ok


def lazy_files(paths: Sequence[Path], *, channels, size, workers, skip_corrupt: bool, notes: list[str] | None):
    """``(ImageFiles, ok)`` when the current :func:`image_mode` reads these files lazily, else None.

    Under ``auto`` the first file is decoded to estimate the set's decoded size (N × its bytes). With
    ``skip_corrupt`` every file is decoded once and dropped (:meth:`ImageFiles.readable`) to find the
    unreadable ones, as the in-memory path would; the skip note names them.
    """
    mode = _MODE.get()
    if mode == "true" or not paths:
        return None
    files = ImageFiles(paths, channels, size, workers)
    if mode == "auto":
        try:
            first = files[0]
        except (CorruptImageError, FileNotFoundError):
            return None  # the in-memory path reports (or skips) it as usual
        if keep_in_memory(len(files) * first.nbytes):
            return None
    ok = np.ones(len(files), bool)
    if skip_corrupt:
        ok = files.readable()
        bad = [files.paths[i] for i in np.flatnonzero(~ok)]
        if len(bad) == len(files):
            raise CorruptImageError(bad[0], f"none of the {len(files)} files could be decoded ({bad[0]}, ...), so "
                                            "skipping them leaves no images. Fix: check that the path holds image "
                                            "files of a supported format.")
        if bad:
            names = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
            note(notes if notes is not None else [], f"skipped {len(bad)} of {len(files)} files that could not be "
                                                     f"decoded (skip_corrupt=True): {names}")
            files = files.subset(ok)
    return files, ok


# --------------------------------------------------------------------------------------------
# npz: memory-mapped members
# --------------------------------------------------------------------------------------------


def _npy_header(fh) -> tuple[tuple, bool, np.dtype, int] | None:
    """(shape, fortran_order, dtype, header length) of the .npy stream ``fh``; None for an unknown version."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        return None
    return shape, fortran, dtype, fh.tell()


def _unpacked_member(path: Path, info: zipfile.ZipInfo, zf: zipfile.ZipFile) -> Path:
    """The .npy cache file of a compressed member: unpacked once (streaming), keyed by the file's identity."""
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{info.filename}".encode()).hexdigest()
    file = cache_dir() / "npy" / f"{key}.npy"
    if file.exists() and file.stat().st_size == info.file_size:
        return file
    file.parent.mkdir(parents=True, exist_ok=True)
    # A temporary name renamed at the end: a killed conversion never leaves a half file under the key.
    fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as dst, zf.open(info) as src:
            shutil.copyfileobj(src, dst, 16 << 20)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file


def npz_images_map(path: Path, key: str = "images") -> np.ndarray | None:
    """The npz member ``key`` as a read-only memory map, or None when the set is kept in memory.

    An uncompressed (stored) member is mapped in place, at its offset inside the archive; a compressed
    one through its unpacked copy in the cache (see the module docstring). None, too, for a member that
    is not uint8 (other types are rescaled as a whole) or has an unknown .npy version: the caller loads it.
    """
    if _MODE.get() == "true":
        return None
    path = Path(path)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{key}.npy")
        with zf.open(info) as fh:
            head = _npy_header(fh)
        if head is None or head[2] != np.uint8:
            return None  # floats / wider integers are rescaled over the whole array: read them in memory
        shape, fortran, dtype, header_len = head
        if keep_in_memory(int(np.prod(shape)) * dtype.itemsize):
            return None
        order = "F" if fortran else "C"
        if info.compress_type != zipfile.ZIP_STORED:
            return np.load(_unpacked_member(path, info, zf), mmap_mode="r")
    with open(path, "rb") as fh:  # the member's data start: after its local header (30 bytes + name + extra)
        fh.seek(info.header_offset)
        local = fh.read(30)
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    offset = info.header_offset + 30 + name_len + extra_len + header_len
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)

