"""Reading medical image datasets and making reproducible splits (torch-free).

``load(path)`` detects the format and returns an :class:`ImageSet` (uint8 images, labels, class
names, and the source's split, patient ids, file names, multi-hot labels and metadata).
Formats, in :data:`READERS`:

=============== ==============================================================================
``folder``      one folder per class, optionally under ``train/valid/test`` folders
``chestxray14`` NIH ChestX-ray14: ``Data_Entry_2017*.csv[.gz]`` + PNGs (14 findings multi-hot)
``cbis_ddsm``   CBIS-DDSM case-description CSVs + DICOM tree
``mias``        mini-MIAS ``.pgm`` films + ``Info.txt``, or our npz of them
``npz``         our array layout (``images``, ``labels``, ``class_names``, ``split``, ...)
``medmnist``    MedMNIST ``train_images`` / ``train_labels`` / ``val_*`` / ``test_*``
=============== ==============================================================================

Splits: :func:`label_budget` (the labelled subset, stratified, >= 1 per class),
:func:`patient_split` (train / val / test with no patient on two sides), :func:`save_split` /
:func:`load_split` (a JSON record in the run folder). The torch ``Dataset`` and transforms are
in :mod:`graphzoo.data.torchdata`, which is the only part of this package that imports torch
(:func:`prepare_data`, which loads, splits, draws the label budget and makes the image tensor,
imports it when called).
"""

from __future__ import annotations

from ._images import IMAGE_SUFFIXES, CorruptImageError, DataWarning, decode_image
from .readers import READERS, detect_format, load
from .prepare import PreparedData, prepare_data
from .splits import label_budget, load_split, patient_split, save_split
from .types import ImageSet

# Importing the dataset readers registers them (and their format tests) in READERS.
from . import cbis_ddsm, chestxray14, mias  # noqa: E402,F401  isort: skip

__all__ = [
    "load",
    "detect_format",
    "ImageSet",
    "READERS",
    "label_budget",
    "patient_split",
    "save_split",
    "load_split",
    "prepare_data",
    "PreparedData",
    "CorruptImageError",
    "DataWarning",
    "decode_image",
    "IMAGE_SUFFIXES",
]
