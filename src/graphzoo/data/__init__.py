"""Reading medical image datasets and making reproducible splits (torch-free).

``load(path)`` detects the format and returns an :class:`ImageSet` (uint8 images, labels, class
names, and the source's split, patient ids, file names, multi-hot labels and metadata).
Formats, in :data:`READERS`:

=============== =================== ===============================================================
format          module              layout
=============== =================== ===============================================================
``folder``      :mod:`.folder`      one folder per class, optionally under ``train/valid/test``
``chestxray14`` :mod:`.chestxray14` NIH ChestX-ray14: ``Data_Entry_2017*.csv[.gz]`` + PNGs
``cbis_ddsm``   :mod:`.cbis_ddsm`   CBIS-DDSM case-description CSVs + DICOM tree
``mias``        :mod:`.mias`        mini-MIAS ``.pgm`` films + ``Info.txt``, or our npz of them
``mias_patches`` :mod:`.mias_patches` lesion-centred MIAS patches vs normal tissue (by name only; also
                                    ``mias_patches_malignancy``: benign vs malignant lesion patches)
``npz``         :mod:`.npz`         our array layout (``images``, ``labels``, ``class_names``, ...)
``medmnist``    :mod:`.npz`         MedMNIST ``train_images`` / ``train_labels`` / ``val_*`` / ...
=============== =================== ===============================================================

The registry and the detection are in :mod:`.readers`; a new format is one new module that
registers its reader there, plus its name in the import list below.

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
from .types import DecodeOptions, ImageSet

# Importing the readers registers them (and their format tests) in READERS.
from . import folder, npz  # noqa: E402,F401  isort: skip
from . import cbis_ddsm, chestxray14, mias, mias_patches  # noqa: E402,F401  isort: skip

__all__ = [
    "load",
    "detect_format",
    "ImageSet",
    "DecodeOptions",
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
