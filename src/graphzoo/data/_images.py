"""Decoding image files to uint8 arrays: one file, many files in parallel, and an on-disk cache.

Every reader that starts from image files (PNG/JPEG/TIFF/BMP/PGM through Pillow, DICOM through
pydicom) goes through :func:`decode_many`, so the rules below hold for all of them:

* **Pixel values.** 8-bit images are kept as they are. Deeper images are mapped to 0..255 by the
  range their *type* can hold, never by one image's own minimum and maximum, so that a file's
  values mean the same in every image of a set (a dark film stays darker than a bright one, and a
  film whose maximum is 250 is not treated differently from one whose maximum is 300):
  16-bit PNG / TIFF / PGM (Pillow modes ``I;16*``, and ``I``, which Pillow uses for 16-bit files)
  ``x' = round(x / 257)`` (0..65535 onto 0..255); a 32-bit ``I`` image with values outside
  0..65535 is refused. Floating-point images in [0, 1] become ``round(255 x)``; other floats have
  no range of their own and are refused. DICOM uses its window, VOI LUT or bit depth
  (``BitsStored``), see :mod:`graphzoo.data._dicom`.
* **Channels.** ``channels=None`` keeps what the file holds, except that colour files whose three
  channels are equal (gray saved as RGB, as ChestX-ray14 copies often are) become one channel, and
  alpha is dropped. When a set mixes gray and colour files, the gray ones are repeated to three
  channels so the set stays uniform. ``channels=1`` converts to gray with the ITU-R 601 luma
  weights ``0.299 R + 0.587 G + 0.114 B`` (Pillow's ``"L"``), ``channels=3`` repeats gray.
* **Size.** ``size=None`` keeps each file's size; ``size=(H, W)`` (or an int for square) resizes
  on read with Pillow's area filter (``BOX``) when shrinking and bilinear when enlarging.
* **Parallelism.** Files are decoded by a thread pool (Pillow and zlib release the GIL while
  decoding), in chunks so that the per-task overhead stays small for tens of thousands of files.
* **Cache.** The decoded arrays are saved to ``$GRAPHZOO_CACHE`` (default ``~/.cache/graphzoo``)
  under a key made from the files' absolute paths, sizes and modification times and from the
  decoding options, so a changed, added or removed file makes a new entry. Nothing is ever written
  next to the data (the data folder may be read-only).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "DICOM_SUFFIXES",
    "CorruptImageError",
    "DataWarning",
    "decode_image",
    "decode_many",
    "finish_images",
    "cache_dir",
    "note",
    "SKIP_HINT",
]

# Suffixes Pillow decodes that medical image folders actually use.
PIL_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".pgm", ".ppm", ".pnm", ".gif", ".webp"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
#: Every image file suffix graphzoo reads (Pillow's and DICOM's): the one list for readers and predict.
IMAGE_SUFFIXES = PIL_SUFFIXES | DICOM_SUFFIXES

# The advice every unreadable-file message ends with; ``graphzoo data inspect`` swaps in its flag.
SKIP_HINT = "or skip unreadable files: --skip-corrupt on the command line, skip_corrupt=True in Python"

# Bump when the decoded pixels for the same file and options would change, so old cache entries
# are not reused.
_CACHE_VERSION = 2  # 2: deep images mapped by their type's range, not their own min-max
_CHUNK = 64  # files per thread-pool task


class DataWarning(UserWarning):
    """Something in the data was worked around (ignored file, missing image, mixed sizes, ...)."""


class CorruptImageError(ValueError):
    """A file that should be an image could not be decoded. ``path`` names it."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(message)
        self.path = Path(path)


def note(notes: list[str], message: str) -> None:
    """Record ``message`` in ``notes`` and issue it as a :class:`DataWarning`.

    The warning points at the first caller outside ``graphzoo.data`` (the user's ``load`` call),
    not at the reader line that noticed the problem.
    """
    notes.append(message)
    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(0), 1
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == here:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, DataWarning, stacklevel=level)


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The decoded-image cache folder: ``override``, else ``$GRAPHZOO_CACHE``, else ``~/.cache/graphzoo``."""
    if override is not None:
        return Path(override).expanduser()
    return Path(os.environ.get("GRAPHZOO_CACHE", "~/.cache/graphzoo")).expanduser()


# --------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------


def scale_range(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map the fixed range [lo, hi] linearly onto 0..255 (uint8), clipping values outside it."""
    y = (np.asarray(x, dtype=np.float64) - lo) * (255.0 / (hi - lo))
    return np.rint(np.clip(y, 0, 255)).astype(np.uint8)


def _to_uint8(arr: np.ndarray, bits: int | None = None) -> np.ndarray:
    """Map an image to uint8 by the range of its type (see "Pixel values" in the module docstring).

    Parameters
    ----------
    arr : ndarray, (H, W) or (H, W, C)
    bits : int, optional
        Bits actually used by an integer image (DICOM's ``BitsStored``); default the dtype's.

    Raises
    ------
    ValueError
        A float image outside [0, 1] (no range to map from).
    """
    if arr.dtype == np.uint8 and bits in (None, 8):
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        bits = bits or 8 * arr.dtype.itemsize
        if np.issubdtype(arr.dtype, np.signedinteger):
            return scale_range(arr, -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1)
        return scale_range(arr, 0, 2.0**bits - 1)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo >= 0 and hi <= 1:
        return scale_range(arr, 0, 1)
    raise ValueError(
        f"a floating-point image with values in [{lo:g}, {hi:g}] has no fixed range to map to 0..255. "
        "Fix: save it as 8- or 16-bit integers, or as floats in [0, 1]."
    )


def _pil_array(im) -> np.ndarray:
    """Pillow image -> (H, W) or (H, W, 3) uint8, alpha dropped, palettes expanded."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode == "LA":
        return np.asarray(im.getchannel("L"))
    if mode == "P":
        return np.asarray(im.convert("RGB"))
    if mode.startswith("I;16"):
        return _to_uint8(np.asarray(im).astype(np.uint16, copy=False), bits=16)
    if mode == "I":
        # Pillow's 32-bit container, which it also uses for 16-bit PNG / PGM files
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError(f"32-bit integer values in [{arr.min()}, {arr.max()}], beyond 16 bits")
        return _to_uint8(arr.astype(np.uint16), bits=16)
    if mode == "F":
        return _to_uint8(np.asarray(im))
    # RGBA, CMYK, YCbCr, LAB, HSV, RGBX, ...: alpha (if any) is dropped, not composited, since
    # medical files that carry one have it fully opaque.
    return np.asarray(im.convert("RGB"))


def _set_channels(arr: np.ndarray, channels: int | None) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if channels is None:
        if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
            return np.ascontiguousarray(arr[..., 0])
        return arr
    if channels == 1:
        if arr.ndim == 2:
            return arr
        # Pillow's "L" conversion: ITU-R 601-2 luma, rounded.
        luma = arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
        return np.rint(luma).astype(np.uint8)
    if channels == 3:
        return arr if arr.ndim == 3 else np.repeat(arr[:, :, None], 3, axis=2)
    raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")


def _size_tuple(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive (H, W), got {size!r}")
    return h, w


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    h, w = size
    if arr.shape[:2] == (h, w):
        return arr
    shrink = h <= arr.shape[0] and w <= arr.shape[1]
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(arr).resize((w, h), resample=resample))


def decode_image(path: str | os.PathLike, *, channels: int | None = None, size=None) -> np.ndarray:
    """Decode one image file to uint8.

    Parameters
    ----------
    path : path-like
        A Pillow-readable image, or a DICOM file (``.dcm``/``.dicom`` suffix, or no suffix).
    channels : {None, 1, 3}
        See the module docstring.
    size : int or (H, W), optional
        Resize on read.

    Returns
    -------
    ndarray of uint8, shape (H, W) or (H, W, 3)

    Raises
    ------
    CorruptImageError
        The file is truncated, not an image, or (DICOM) has no pixel data; the message names it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in DICOM_SUFFIXES or suffix == "":
        from ._dicom import read_dicom

        arr = read_dicom(path)
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.load()
                arr = _pil_array(im)
        except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            reason = str(exc) or type(exc).__name__
            raise CorruptImageError(
                path,
                f"cannot decode image {path}: {reason}. Fix: re-export or remove this file ({SKIP_HINT}).",
            ) from None
    arr = _set_channels(arr, channels)
    size = _size_tuple(size)
    if size is not None:
        arr = _resize(arr, size)
    return arr


# --------------------------------------------------------------------------------------------
# Many files: thread pool + cache
# --------------------------------------------------------------------------------------------


def _cache_key(paths: Sequence[Path], params: dict) -> str:
    h = hashlib.sha1()
    h.update(json.dumps({"v": _CACHE_VERSION, **params}, sort_keys=True).encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _cache_load(file: Path, n: int) -> list[np.ndarray] | None:
    try:
        with np.load(file) as z:
            shapes = z["shapes"]
            data = z["data"]
    except (OSError, KeyError, ValueError):
        return None  # unreadable or partial entry: decode again
    if len(shapes) != n:
        return None
    if data.ndim > 1:  # uniform sizes were stored stacked
        return list(data)
    out, start = [], 0
    for s in shapes:
        shape = tuple(int(v) for v in s if v > 0)
        size = int(np.prod(shape))
        out.append(data[start : start + size].reshape(shape))
        start += size
    return out


def _cache_save(file: Path, images: list[np.ndarray]) -> None:
    shapes = np.zeros((len(images), 3), np.int64)
    for i, a in enumerate(images):
        shapes[i, : a.ndim] = a.shape
    if len({a.shape for a in images}) == 1:
        data = np.stack(images)
    else:
        data = np.concatenate([a.ravel() for a in images])
    file.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary name and rename, so a concurrent reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, shapes=shapes, data=data)  # uncompressed: the cache exists to be fast
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _decode_chunk(paths: Sequence[Path], channels, size) -> list:
    out = []
    for p in paths:
        try:
            out.append(decode_image(p, channels=channels, size=size))
        except CorruptImageError as exc:
            out.append(exc)
    return out


def decode_many(
    paths: Sequence[str | os.PathLike],
    *,
    channels: int | None = None,
    size=None,
    skip_corrupt: bool = False,
    workers: int | None = None,
    cache: bool = True,
    cache_dir_: str | os.PathLike | None = None,
    notes: list[str] | None = None,
    desc: str = "decoding",
) -> tuple[list[np.ndarray], np.ndarray]:
    """Decode many files in parallel, through the cache.

    Long: its signature and this docstring take 43 of its 107 lines; the code is 64 (the lazy hand-off,
    cache look-up, threaded decoding, the corrupt-file report, cache write).

    Parameters
    ----------
    paths : sequence of path-like, length N
    channels, size
        As in :func:`decode_image`.
    skip_corrupt : bool
        False (default): any file that cannot be decoded raises :class:`CorruptImageError` naming
        it (after every file was tried, so the message counts them all). True: such files are
        dropped and one :class:`DataWarning` at the end gives their count and names.
    workers : int, optional
        Threads; default ``min(8, os.cpu_count())``.
    cache : bool
        Read and write the decoded-image cache (see the module docstring).
    cache_dir_ : path-like, optional
        Cache folder instead of ``$GRAPHZOO_CACHE``.
    notes : list of str, optional
        Receives the skip note.

    Returns
    -------
    images : list of N' uint8 arrays, or an :class:`~graphzoo.data.store.ImageFiles`
        One per decodable file, in the order of ``paths``; the files themselves, decoded on demand,
        when :mod:`graphzoo.data.store`'s rule reads the set lazily (``data_in_memory``).
    ok : ndarray of bool, shape (N,)
        Which of ``paths`` gave an image (all True unless ``skip_corrupt`` dropped some).
    """
    paths = [Path(p) for p in paths]
    n = len(paths)
    if n == 0:
        return [], np.zeros(0, bool)
    size = _size_tuple(size)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be None, 1 or 3, got {channels!r}")
    from .store import lazy_files  # a set over the memory budget is listed, not decoded (graphzoo.data.store)

    lazy = lazy_files(paths, channels=channels, size=size, workers=workers, skip_corrupt=skip_corrupt, notes=notes)
    if lazy is not None:
        return lazy

    entry = None
    if cache:
        key = _cache_key(paths, {"channels": channels, "size": size})
        entry = cache_dir(cache_dir_) / "images" / f"{key}.npz"
        if entry.exists():
            images = _cache_load(entry, n)
            if images is not None:
                return images, np.ones(n, bool)

    workers = workers or min(8, os.cpu_count() or 1)
    chunks = [paths[i : i + _CHUNK] for i in range(0, n, _CHUNK)]
    from ..progress import bar as progress_bar

    results: list = []
    # A bar on a terminal only: redrawn with carriage returns, it would fill a log file with one long line.
    bar = progress_bar(n, desc, enabled=n >= 2000)
    try:
        if workers <= 1 or len(chunks) == 1:
            for c in chunks:
                results.extend(_decode_chunk(c, channels, size))
                bar.update(len(c))
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for c, res in zip(chunks, pool.map(lambda c: _decode_chunk(c, channels, size), chunks)):
                    results.extend(res)
                    bar.update(len(c))
    finally:
        bar.close()

    bad = [r for r in results if isinstance(r, CorruptImageError)]
    ok = np.array([not isinstance(r, CorruptImageError) for r in results], bool)
    if bad:
        names = ", ".join(str(e.path) for e in bad[:5]) + (", ..." if len(bad) > 5 else "")
        if skip_corrupt and len(bad) == n:  # skipping them all would leave an empty set
            raise CorruptImageError(
                bad[0].path,
                f"none of the {n} files could be decoded ({names}), so skipping them leaves no images. "
                "Fix: check that the path holds image files of a supported format.",
            )
        if not skip_corrupt:
            if len(bad) == 1:
                raise bad[0]
            raise CorruptImageError(
                bad[0].path,
                f"{len(bad)} of {n} files could not be decoded ({names}); first: {bad[0]}",
            )
        msg = f"skipped {len(bad)} of {n} files that could not be decoded (skip_corrupt=True): {names}"
        note(notes if notes is not None else [], msg)
    images = [r for r in results if not isinstance(r, CorruptImageError)]

    if entry is not None and not bad:
        try:
            _cache_save(entry, images)
        except OSError as exc:  # a read-only or full cache folder must not stop the load
            warnings.warn(f"could not write the image cache {entry}: {exc}", DataWarning, stacklevel=2)
    return images, ok


def finish_images(
    images: list[np.ndarray],
    *,
    stack: bool | None,
    where: str,
    names: Sequence[str] | None = None,
    notes: list[str],
):
    """Make a set uniform in channels, then stack it into one array when sizes agree.

    Parameters
    ----------
    images : list of N uint8 arrays
    stack : bool or None
        None: an array when all sizes agree, else the list and a note. True: an array, or a
        ``ValueError`` naming the sizes when they differ. False: always the list.
    where : str
        The source, for messages.
    names : sequence of str, optional
        File names, to point at examples of each size.

    Returns
    -------
    ndarray of shape (N, H, W[, 3]) or list of N arrays; ``images`` itself when it is read lazily
    (an :class:`~graphzoo.data.store.ImageFiles`: the channels and sizes are settled batch by batch).
    """
    from .store import ImageFiles

    if isinstance(images, ImageFiles):
        return images
    if any(a.ndim == 3 for a in images) and any(a.ndim == 2 for a in images):
        n_gray = sum(a.ndim == 2 for a in images)
        images = [a if a.ndim == 3 else np.repeat(a[:, :, None], 3, axis=2) for a in images]
        note(notes, f"{where}: {n_gray} gray images were repeated to 3 channels to match the colour ones")
    shapes: dict[tuple, list[int]] = {}
    for i, a in enumerate(images):
        shapes.setdefault(a.shape[:2], []).append(i)
    if len(shapes) <= 1:
        if stack is False:
            return list(images)
        if not images:
            return np.zeros((0, 0, 0), np.uint8)
        return np.stack(images)
    common = sorted(shapes.items(), key=lambda kv: -len(kv[1]))
    parts = []
    for shape, idx in common[:4]:
        example = f", e.g. {names[idx[0]]}" if names is not None else ""
        parts.append(f"{shape[0]}x{shape[1]} ({len(idx)}{example})")
    summary = "; ".join(parts) + ("; ..." if len(common) > 4 else "")
    if stack:
        raise ValueError(
            f"{where}: images have {len(shapes)} different sizes: {summary}. Fix: pass size=(H, W) "
            "to resize on read, or stack=False to get a list of arrays."
        )
    if stack is None:
        note(
            notes,
            f"{where}: images have {len(shapes)} different sizes ({summary}); returned as a list. "
            "Pass size=(H, W) to resize them on read.",
        )
    return list(images)
