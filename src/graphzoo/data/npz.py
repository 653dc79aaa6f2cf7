"""The array-file readers: ``npz`` (our layout) and ``medmnist`` (the MedMNIST key layout).

``npz``: ``images``, ``labels``, ``class_names``, ``split``, ``patient_ids``, ``filenames``,
``multilabels`` / ``multilabel_names``, further per-image arrays as metadata. ``medmnist``:
``{train,val,test}_{images,labels}``, the splits concatenated. Both register themselves in
:data:`~graphzoo.data.readers.READERS` on import: ``medmnist`` (priority 40) claims an ``.npz``
with ``train_images``, ``npz`` (priority 50) any other ``.npz``. No pickles are loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ._images import note
from .readers import npz_keys, register_reader
from .store import npz_images_map
from .types import ImageSet

__all__ = ["read_npz", "read_medmnist"]


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
    ``meta``; other arrays are left out with a note. No pickles are loaded. Under ``data_in_memory``
    ``auto`` / ``false`` (:mod:`graphzoo.data.store`) a large uint8 ``images`` array is memory-mapped.

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
        # A set over the memory budget: its images memory-mapped, not read (graphzoo.data.store).
        mapped = npz_images_map(path)
        data = {k: mapped if k == "images" and mapped is not None else z[k] for k in keys}
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
