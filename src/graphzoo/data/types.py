"""The form every reader returns (torch-free): in memory, or lazily for sets over the memory budget; and the
decoding options the image-file readers share."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ImageSet:
    """A labelled image collection as read from disk.

    Attributes
    ----------
    images : ndarray of shape (N, H, W) or (N, H, W, C), uint8 — or a list of N such arrays
        when the source's images differ in size (resize them with the preprocessing transforms).
        Read under ``data_in_memory`` ``auto`` / ``false`` (:mod:`graphzoo.data.store`), a set over the
        memory budget holds an :class:`~graphzoo.data.store.ImageFiles` (its files, decoded on demand) or
        a read-only ``np.memmap`` instead.
    labels : ndarray of int64, shape (N,)
        Index into ``class_names``; -1 where the source gives no label.
    class_names : list of str
    split : ndarray of str, shape (N,), optional
        The source's own split ("train", "valid", "test", ...) where it has one.
    patient_ids : ndarray of str, shape (N,), optional
        Patient (or slide) of each image, for patient-grouped splits.
    filenames : ndarray of str, shape (N,), optional
        Original file names (or paths relative to the dataset root).
    multilabels : ndarray of int64, shape (N, L), optional
        Multi-hot labels for multi-label sets (ChestX-ray14's 14 pathologies).
    multilabel_names : list of str, optional
    meta : dict of str -> ndarray of shape (N, ...)
        Any further per-image metadata (age, view position, lesion centre, ...).
    source : str
        Where it was read from and in which format, for messages and run records.
    notes : list of str
        What the reader noticed and worked around (files ignored, rows without an image, mixed
        sizes, ...), one sentence each; each was also issued as a :class:`DataWarning`.
    """

    images: Any
    labels: np.ndarray
    class_names: list[str]
    split: np.ndarray | None = None
    patient_ids: np.ndarray | None = None
    filenames: np.ndarray | None = None
    multilabels: np.ndarray | None = None
    multilabel_names: list[str] | None = None
    meta: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class DecodeOptions:
    """How an image-file reader decodes its files: the options every such reader shares.

    The readers (``folder``, ``chestxray14``, ``mias``, ``cbis_ddsm``, ``mias_patches``, and
    :func:`~graphzoo.data.labels_csv.load_with_labels`) take these as plain keywords, as
    :func:`graphzoo.data.load` documents them, or as one object, ``decode=DecodeOptions(...)``
    (:func:`~graphzoo.data.readers.takes_decode_options`); a keyword given beside ``decode`` wins.

    Attributes
    ----------
    channels : None (as stored) | 1 | 3
    size : None, an int (square side) or (height, width): resize on read
    stack : None (array when the sizes agree, else a list) | True (array or error) | False (list)
    workers : decoding threads (None: ``min(8, os.cpu_count())``)
    cache, cache_dir : use the decoded-image cache, and where it lives (None: ``$GRAPHZOO_CACHE``)
    skip_corrupt : False: an undecodable file is an error naming it; True: skipped, counted in one warning
    """

    channels: int | None = None
    size: Any = None
    stack: bool | None = None
    workers: int | None = None
    cache: bool = True
    cache_dir: str | os.PathLike | None = None
    skip_corrupt: bool = False

    def decode_kwargs(self) -> dict:
        """The keyword arguments of :func:`~graphzoo.data._images.decode_many` (all but ``stack``, which
        :func:`~graphzoo.data._images.finish_images` takes)."""
        return {"channels": self.channels, "size": self.size, "skip_corrupt": self.skip_corrupt,
                "workers": self.workers, "cache": self.cache, "cache_dir_": self.cache_dir}
