"""The front door for data, :func:`load`, its format registry, and the generic readers.

``load(path)`` looks at ``path`` and picks a reader from :data:`READERS` (or takes the one named
by ``format=``); every reader returns an :class:`~graphzoo.data.types.ImageSet`. This module holds
the registry, the format detection and the readers that are not tied to one dataset:

* ``folder``: one folder per class (``Parasitized/``, ``Uninfected/``), optionally below split
  folders (``train/``, ``valid/``, ``val/``, ``test/``) and wrapper folders, as Malaria's
  ``cell_images/{train,valid}/{Parasitized,Uninfected}`` or ChestX-ray14's
  ``NIH1000/{train,valid,test}/{0_normal,1_abnormal}``;
* ``npz``: our layout (``images``, ``labels``, ``class_names``, ``split``, further arrays as
  metadata);
* ``medmnist``: the MedMNIST key layout (``train_images``, ``train_labels``, ``val_*``, ``test_*``).

The dataset-specific readers (``chestxray14``, ``cbis_ddsm``, ``mias``) live in their own modules
and register themselves, each with its own format test, through :func:`register_reader` on import
(``graphzoo.data`` imports them all).
"""

from __future__ import annotations

import inspect
import os
import zipfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..registry import Registry
from ._images import IMAGE_SUFFIXES, decode_many, finish_images, note
from .types import ImageSet

__all__ = ["READERS", "load", "detect_format", "register_reader", "SPLIT_NAMES"]

READERS: Registry[Callable[..., ImageSet]] = Registry("data format")

# Folder names that mean "a split of the data", not a class.
SPLIT_NAMES = frozenset({"train", "training", "valid", "validation", "val", "test", "testing"})

# The advice of an undetectable format; ``graphzoo data inspect`` swaps in its flag.
FORMAT_HINT = "pass format= one of"


def load(path: str | os.PathLike, format: str | None = None, *, skip_corrupt: bool = False, **options) -> ImageSet:
    """Read a dataset from disk in any supported format.

    Parameters
    ----------
    path : path-like or str
        A folder or file. ``"FORMAT:PATH"`` (e.g. ``"folder:/data/cells"``) names the format
        inline, for places that only take one string.
    format : str, optional
        One of ``READERS.names()`` (``cbis_ddsm``, ``chestxray14``, ``folder``, ``medmnist``,
        ``mias``, ``npz``). Default: detected from ``path`` (see :func:`detect_format`).
    skip_corrupt : bool
        False (default): an image that cannot be decoded is an error that names it. True: such
        images are skipped, with one warning at the end giving their count.
    **options
        Passed to the reader; each reader's docstring lists its options. Image-file readers share
        ``channels`` (None | 1 | 3), ``size`` (resize on read), ``stack`` (None: array when sizes
        agree, else list; True: array or error; False: list), ``workers``, ``cache`` and
        ``cache_dir``.

    Returns
    -------
    ImageSet
        ``images`` uint8 (N, H, W[, C]) (or a list when sizes differ), ``labels`` int64 (N,),
        ``class_names``, and whatever the source has of ``split``, ``patient_ids``,
        ``filenames``, ``multilabels``, ``meta``; ``notes`` lists what was worked around.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The format cannot be detected or is unknown, an option is unknown, the set holds no
        images, or the data is bad (the message names the file and the fix).

    Examples
    --------
    >>> ds = load("malaria/malaria_50_gray.npz")                         # doctest: +SKIP
    >>> ds.images.shape, ds.class_names                                 # doctest: +SKIP
    ((27558, 50, 50), ['Uninfected', 'Parasitized'])
    """
    text = os.fspath(path)
    if format is None and ":" in text:
        prefix, rest = text.split(":", 1)
        if prefix in READERS:  # a one-letter Windows drive is never a format name
            format, text = prefix, rest
    path = Path(text).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist (resolved from {Path.cwd()}). Fix: check the path (relative paths start "
            "at the current folder)."
        )
    if format is None:
        format, path = _detect(path)
    reader = READERS.get(format)
    params = inspect.signature(reader).parameters
    unknown = [k for k in options if k not in params]
    if unknown:
        accepted = [k for k, p in params.items() if p.kind == p.KEYWORD_ONLY and k != "skip_corrupt"]
        raise ValueError(
            f"format {format!r} does not take option(s) {', '.join(map(repr, unknown))}; "
            f"it takes: {', '.join(accepted)}."
        )
    ds = reader(path, skip_corrupt=skip_corrupt, **options)
    if len(ds) == 0:
        raise ValueError(
            f"{path} holds no images (read as {format!r}). Fix: point at a dataset with at least one labelled "
            "image, or pass format= if it was read as the wrong format."
        )
    return ds


# --------------------------------------------------------------------------------------------
# Format detection: each reader brings its own test
# --------------------------------------------------------------------------------------------


def register_reader(name: str, *, detect: Callable[[Path], bool], priority: int):
    """Decorator: register a reader in :data:`READERS` together with its format test.

    Parameters
    ----------
    name : str
        The format name (``load(path, format=name)``).
    detect : callable (Path) -> bool
        True when ``path`` (a file, or a folder) is in this format. It must look at names (and at
        most an archive's key list or a small array), never decode an image.
    priority : int
        :func:`detect_format` asks the readers in increasing ``priority`` (then name), and the
        first that answers True wins: specific layouts (a named CSV, ``Info.txt``) come before
        generic ones (any ``.npz``, any folder of images).

    Adding a format is one new module that defines its reader with this decorator, plus its name
    in the imports of :mod:`graphzoo.data`.
    """

    def decorator(reader: Callable[..., ImageSet]) -> Callable[..., ImageSet]:
        reader.detect = detect  # type: ignore[attr-defined]
        reader.priority = priority  # type: ignore[attr-defined]
        return READERS.register(name)(reader)

    return decorator


def npz_keys(path: Path) -> list[str]:
    """The array names in an ``.npz`` (read from the zip directory, nothing is loaded)."""
    try:
        with zipfile.ZipFile(path) as z:
            return [n[:-4] if n.endswith(".npy") else n for n in z.namelist()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path} is not a readable .npz archive ({exc}). Fix: re-create or re-download it.") from None


def top_files(path: Path) -> list[Path]:
    """The visible files directly in the folder ``path`` (``[path]`` when it is a file)."""
    if path.is_file():
        return [path]
    return [p for p in path.iterdir() if not p.name.startswith(".") and p.is_file()]


def _has_images_below(path: Path, max_depth: int = 4) -> bool:
    for root, dirs, files in os.walk(path):
        if len(Path(root).relative_to(path).parts) >= max_depth:
            dirs[:] = []
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in files):
            return True
    return False


def _lone_npz(path: Path) -> Path | None:
    """The one ``.npz`` of a folder that holds no images (a folder that is just a wrapper around it)."""
    npz = [p for p in top_files(path) if p.suffix.lower() == ".npz"]
    if len(npz) == 1 and not _has_images_below(path):
        return npz[0]
    return None


def _detect(path: Path) -> tuple[str, Path]:
    """(format, the path to read): a folder that only wraps one ``.npz`` is read as that file."""
    names = ", ".join(READERS.names())
    readers = sorted(READERS.names(), key=lambda n: (READERS.get(n).priority, n))
    for name in readers:
        if READERS.get(name).detect(path):
            return name, path
    if path.is_dir():
        lone = _lone_npz(path)
        if lone is not None:
            return _detect(lone)
        raise ValueError(
            f"cannot tell the format of {path}: no images, npz or known CSV/Info.txt found. "
            f"Fix: {FORMAT_HINT} {names}, or point at the folder that holds the class folders."
        )
    raise ValueError(f"cannot tell the format of the file {path}. Fix: {FORMAT_HINT} {names}.")


def detect_format(path: str | os.PathLike) -> str:
    """Guess the format of ``path`` from names only (no image is decoded).

    Each reader in :data:`READERS` carries a ``detect(path) -> bool`` and a ``priority``; the
    readers are asked in increasing priority and the first to say yes wins:

    ============= ======== =========================================================================
    ``chestxray14``  10    a ``Data_Entry_2017*.csv[.gz]`` (the file, or at the folder's top level)
    ``cbis_ddsm``    20    a ``*case_description*.csv`` (the file, or at the folder's top level)
    ``mias``         30    ``Info.txt`` (with ``.pgm`` files, at the top level or one folder down),
                           or our npz of mini-MIAS (``mdbNNN`` file names, no ``patient_ids``)
    ``medmnist``     40    an ``.npz`` with ``train_images``
    ``npz``          50    any other ``.npz``
    ``folder``       90    a folder with image files below it (4 levels deep at most)
    ============= ======== =========================================================================

    A folder that no reader claims but that holds exactly one ``.npz`` and no images is
    detected as that file.

    Raises
    ------
    ValueError
        Nothing recognisable; the message lists the formats so ``format=`` can be given.
    """
    return _detect(Path(path))[0]


# --------------------------------------------------------------------------------------------
# folder: one folder per class
# --------------------------------------------------------------------------------------------


def _scan_class_folders(root: Path, notes: list[str]) -> list[tuple[Path, str, str | None]]:
    """Walk ``root``; return (file, class, split) for every image in a class folder.

    A class folder is a folder that directly holds images; its name is the class, and its parent's
    name is the split when that is one of :data:`SPLIT_NAMES`. Hidden files and folders are
    skipped silently, other non-image files with one note per folder.
    """
    items: list[tuple[Path, str, str | None]] = []
    holders: dict[Path, int] = {}  # folder -> number of images directly in it
    ignored: dict[Path, list[str]] = {}
    all_dirs: list[Path] = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        d = Path(dirpath)
        all_dirs.append(d)
        count = 0
        for f in sorted(files):
            if f.startswith("."):
                continue
            suffix = Path(f).suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                count += 1
                if d == root:
                    continue
                parent = d.parent.name.lower()
                split = parent if parent in SPLIT_NAMES else None
                items.append((d / f, d.name, split))
            else:
                ignored.setdefault(d, []).append(f)
        holders[d] = count

    if holders.get(root, 0) and not items:
        raise ValueError(
            f"{root} holds images directly but no class folders. Fix: put each class's images in "
            f"its own subfolder ({root}/<class>/...), or use a format with a label file."
        )
    if holders.get(root, 0):
        note(notes, f"{root}: {holders[root]} image files at the top level are not in a class folder and were ignored")
    # An "empty class folder" is a folder with no images below it, next to folders that are
    # class folders (so that a stray empty folder elsewhere does not stop the load).
    has_below: dict[Path, bool] = {}
    for d in sorted(all_dirs, key=lambda p: -len(p.parts)):
        has_below[d] = holders.get(d, 0) > 0 or any(
            has_below.get(c, False) for c in d.iterdir() if c.is_dir() and not c.name.startswith(".")
        )
    for d in all_dirs:
        if d == root or has_below[d]:
            continue
        siblings = [s for s in d.parent.iterdir() if s.is_dir() and s != d and not s.name.startswith(".")]
        if any(holders.get(s, 0) > 0 for s in siblings):
            held = f"; it holds {', '.join(ignored[d][:3])}" if d in ignored else ""
            raise ValueError(
                f"class folder {d} is empty (no image files{held}). "
                "Fix: add its images, or remove the folder if that class is not wanted."
            )
    for d, fs in ignored.items():
        if holders.get(d, 0) > 0:
            shown = ", ".join(fs[:3]) + (", ..." if len(fs) > 3 else "")
            note(notes, f"{d}: ignored {len(fs)} non-image file(s) ({shown})")
    return items


def _decode_opts(channels, size, workers, cache, cache_dir) -> dict:
    return {"channels": channels, "size": size, "workers": workers, "cache": cache, "cache_dir_": cache_dir}


def _is_image_folder(path: Path) -> bool:
    return path.is_dir() and _has_images_below(path)


@register_reader("folder", detect=_is_image_folder, priority=90)
def read_folder(
    path: Path,
    *,
    skip_corrupt: bool = False,
    class_names: Sequence[str] | None = None,
    channels: int | None = None,
    size=None,
    stack: bool | None = None,
    workers: int | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> ImageSet:
    """Class-per-folder images (png, jpg, tif, bmp, pgm, dcm).

    Every folder that directly holds images is a class folder named by its folder; classes of the
    same name under different split folders are one class. The split of an image is its class
    folder's parent name when that is ``train``, ``training``, ``valid``, ``validation``, ``val``,
    ``test`` or ``testing`` (lower-cased, otherwise as written), else ``None`` for the whole set.

    Parameters
    ----------
    class_names : sequence of str, optional
        Class order (label i is ``class_names[i]``). Default: sorted folder names, as torchvision's
        ``ImageFolder``. Folders not listed are left out, with a note; a listed name with no
        folder is an error.
    channels, size, stack, workers, cache, cache_dir
        See :func:`load`.

    Returns
    -------
    ImageSet
        ``filenames`` are paths relative to ``path``; ``split`` is set when split folders exist.
    """
    notes: list[str] = []
    items = _scan_class_folders(path, notes)
    if not items:
        raise ValueError(
            f"no images found below {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}). "
            "Fix: point at the folder that holds one subfolder per class."
        )
    found = sorted({c for _, c, _ in items})
    if class_names is None:
        class_names = found
    else:
        class_names = [str(c) for c in class_names]
        missing = [c for c in class_names if c not in found]
        if missing:
            raise ValueError(
                f"class_names lists {missing} but {path} has no such class folder (found: {found}). "
                "Fix: correct class_names or add the folders."
            )
        dropped = [c for c in found if c not in class_names]
        if dropped:
            note(notes, f"{path}: class folders {dropped} are not in class_names and were left out")
            items = [it for it in items if it[1] in class_names]
    index = {c: i for i, c in enumerate(class_names)}
    files = [p for p, _, _ in items]
    images, ok = decode_many(
        files,
        skip_corrupt=skip_corrupt,
        notes=notes,
        desc=f"decoding {path.name}",
        **_decode_opts(channels, size, workers, cache, cache_dir),
    )
    items = [it for it, k in zip(items, ok) if k]
    rel = np.array([str(p.relative_to(path)) for p, _, _ in items])
    labels = np.array([index[c] for _, c, _ in items], dtype=np.int64)
    splits = [s for _, _, s in items]
    split = None
    if any(s is not None for s in splits):
        split = np.array([s if s is not None else "" for s in splits])
        if (split == "").any():
            note(notes, f"{path}: {int((split == '').sum())} images are not under a split folder; their split is ''")
    return ImageSet(
        images=finish_images(images, stack=stack, where=str(path), names=rel, notes=notes),
        labels=labels,
        class_names=list(class_names),
        split=split,
        filenames=rel,
        source=f"folder:{path}",
        notes=notes,
    )


# --------------------------------------------------------------------------------------------
# npz (ours) and MedMNIST
# --------------------------------------------------------------------------------------------


def _as_uint8_images(images: np.ndarray, where: str) -> np.ndarray:
    """Images from an array file -> uint8 (N, H, W) or (N, H, W, C); clear errors otherwise."""
    if images.dtype == object:
        raise ValueError(f"{where}: 'images' is an object array. Fix: save a numeric (N, H, W[, C]) array.")
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (3, 4)):
        raise ValueError(
            f"{where}: 'images' has shape {images.shape}; expected (N, H, W) or (N, H, W, C) with C in 1, 3, 4. "
            "Fix: save channels last."
        )
    if images.dtype == np.uint8:
        return images
    lo, hi = (images.min(), images.max()) if images.size else (0, 0)
    if np.issubdtype(images.dtype, np.floating) and lo >= 0 and hi <= 1:
        return np.rint(images * 255).astype(np.uint8)
    if (np.issubdtype(images.dtype, np.integer) or images.dtype == bool) and lo >= 0 and hi <= 255:
        return images.astype(np.uint8)
    raise ValueError(
        f"{where}: 'images' is {images.dtype} with values in [{lo}, {hi}]; expected uint8, or floats in [0, 1]. "
        "Fix: scale the images to 0..255 uint8 before saving."
    )


def _check_labels(labels: np.ndarray, n_classes: int, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(f"{where}: labels must be integers, got {labels.dtype}. Fix: store class indices.")
    labels = labels.astype(np.int64)
    bad = (labels < -1) | (labels >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{where}: labels out of range: {int(bad.sum())} values outside -1..{n_classes - 1} "
            f"(first: labels[{i}] = {labels[i]}) for {n_classes} class names. Fix: the labels must index "
            "class_names (-1 for unlabelled); correct the labels or the class_names."
        )
    return labels


# Keys of our layout that map onto ImageSet fields rather than meta.
_FIELDS = ("images", "labels", "class_names", "split", "patient_ids", "filenames", "multilabels", "multilabel_names")


def _is_npz(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".npz"


def _is_medmnist(path: Path) -> bool:
    return _is_npz(path) and "train_images" in npz_keys(path)


@register_reader("npz", detect=_is_npz, priority=50)
def read_npz(path: Path, *, skip_corrupt: bool = False, class_names: Sequence[str] | None = None) -> ImageSet:
    """Our npz array layout: images, labels and optionally class names, split, patient ids, file names.

    Required: ``images`` uint8 (N, H, W[, C]) and ``labels`` int (N,). Optional:
    ``class_names`` (L,), ``split``, ``patient_ids``, ``filenames`` (N,) strings, ``multilabels``
    (N, L) with ``multilabel_names``. Every other array whose first axis has length N goes to
    ``meta``; other arrays are left out with a note. No pickles are loaded.

    Parameters
    ----------
    class_names : sequence of str, optional
        Overrides (or supplies) the file's ``class_names``. Without either, classes are named
        ``class_0``, ``class_1``, ...
    """
    where = str(path)
    notes: list[str] = []
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.files)
        missing = [k for k in ("images", "labels") if k not in keys]
        if missing:
            raise ValueError(
                f"{where} has no {' or '.join(map(repr, missing))} array (it has: {', '.join(keys)}). "
                "Fix: save images (N, H, W) uint8 and labels (N,) int, or pass format='medmnist' for "
                "MedMNIST files."
            )
        data = {k: z[k] for k in keys}
    images = _as_uint8_images(data["images"], where)
    n = len(images)
    labels = np.asarray(data["labels"])
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (n,):
        raise ValueError(
            f"{where}: labels have shape {labels.shape} but there are {n} images. Fix: save one label per image."
        )
    if class_names is None and "class_names" in data:
        class_names = [str(c) for c in data["class_names"]]
    if class_names is None:
        k = int(labels.max()) + 1 if labels.size else 0
        class_names = [f"class_{i}" for i in range(k)]
        note(notes, f"{where}: no class_names stored; named the classes class_0..class_{k - 1}")
    class_names = [str(c) for c in class_names]
    labels = _check_labels(labels, len(class_names), where)

    def per_image(key: str) -> np.ndarray | None:
        if key not in data:
            return None
        arr = data[key]
        if len(arr) != n:
            raise ValueError(f"{where}: {key!r} has {len(arr)} entries for {n} images. Fix: one entry per image.")
        return arr

    split = per_image("split")
    patient_ids = per_image("patient_ids")
    filenames = per_image("filenames")
    multilabels = per_image("multilabels")
    meta: dict[str, np.ndarray] = {}
    for k, arr in data.items():
        if k in _FIELDS:
            continue
        if arr.ndim >= 1 and len(arr) == n:
            meta[k] = arr
        else:
            note(notes, f"{where}: array {k!r} with shape {arr.shape} is not per image and was left out")
    return ImageSet(
        images=images,
        labels=labels,
        class_names=class_names,
        split=None if split is None else split.astype(str),
        patient_ids=None if patient_ids is None else patient_ids.astype(str),
        filenames=None if filenames is None else filenames.astype(str),
        multilabels=None if multilabels is None else multilabels.astype(np.int64),
        multilabel_names=[str(c) for c in data["multilabel_names"]] if "multilabel_names" in data else None,
        meta=meta,
        source=f"npz:{path}",
        notes=notes,
    )


@register_reader("medmnist", detect=_is_medmnist, priority=40)
def read_medmnist(path: Path, *, skip_corrupt: bool = False, class_names: Sequence[str] | None = None) -> ImageSet:
    """A MedMNIST npz (train / val / test images and labels), the three splits concatenated in that order.

    The keys are ``{train,val,test}_{images,labels}``.

    Labels (n, 1) are single-label classes. Labels (n, L) with L > 1 (ChestMNIST's 14 findings)
    are multi-label: they go to ``multilabels`` and ``labels`` becomes the binary view
    0 = no positive label, 1 = at least one, as for ChestX-ray14.

    Parameters
    ----------
    class_names : sequence of str, optional
        The file does not store names (MedMNIST keeps them in its ``INFO`` dict); default
        ``class_0``, ``class_1``, ...
    """
    where = str(path)
    notes: list[str] = []
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        parts = [s for s in ("train", "val", "test") if f"{s}_images" in keys]
        if not parts:
            raise ValueError(
                f"{where} has no train_images/val_images/test_images (it has: {', '.join(sorted(keys))}). "
                "Fix: pass format='npz' for our layout."
            )
        for s in parts:
            if f"{s}_labels" not in keys:
                raise ValueError(f"{where} has {s}_images but no {s}_labels. Fix: save both for every split.")
        imgs = [_as_uint8_images(z[f"{s}_images"], f"{where}[{s}_images]") for s in parts]
        labs = [np.asarray(z[f"{s}_labels"]) for s in parts]
    for s, im, lb in zip(parts, imgs, labs):
        if len(im) != len(lb):
            raise ValueError(
                f"{where}: {s}_images has {len(im)} images but {s}_labels has {len(lb)}. Fix: one label row per image."
            )
    shapes = {im.shape[1:] for im in imgs}
    if len(shapes) > 1:
        raise ValueError(f"{where}: the splits' images differ in shape {sorted(shapes)}. Fix: save one image size.")
    images = np.concatenate(imgs)
    split = np.concatenate([np.full(len(im), s) for s, im in zip(parts, imgs)])
    lab = np.concatenate([lb.reshape(len(lb), -1) for lb in labs])
    multilabels = multilabel_names = None
    if lab.shape[1] == 1:
        labels = lab[:, 0]
        if class_names is None:
            k = int(labels.max()) + 1 if labels.size else 0
            class_names = [f"class_{i}" for i in range(k)]
    else:
        multilabels = lab.astype(np.int64)
        if not np.isin(multilabels, (0, 1)).all():
            raise ValueError(f"{where}: multi-label rows must be 0/1. Fix: store multi-hot labels.")
        multilabel_names = [f"label_{i}" for i in range(lab.shape[1])]
        labels = (multilabels.sum(axis=1) > 0).astype(np.int64)
        class_names = class_names or ["no_finding", "abnormal"]
    class_names = [str(c) for c in class_names]
    labels = _check_labels(labels, len(class_names), where)
    return ImageSet(
        images=images,
        labels=labels,
        class_names=class_names,
        split=split,
        multilabels=multilabels,
        multilabel_names=multilabel_names,
        source=f"medmnist:{path}",
        notes=notes,
    )
