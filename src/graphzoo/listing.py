"""``graphzoo list``: the plug-ins available: backbones, energies, data formats (no torch import).

Each line describes its item in plain words. The built-in ones are described here, for a reader at
a terminal; a plug-in registered by a user is described by the first line of its docstring, with
Sphinx markup (``:math:`...```, double back-quotes) and pointers into the source removed.
"""

from __future__ import annotations

import argparse
import re

#: Plain one-line descriptions of the built-in plug-ins, by kind and name.
DESCRIPTIONS = {
    "backbones": {
        "small_cnn": "small CNN (four conv blocks), fast on a CPU; the default",
        "resnet18": "ResNet-18 from torchvision, 512 features per image",
        "resnet50": "ResNet-50 from torchvision, 2048 features per image",
        "vgg16": "VGG-16 convolutions from torchvision, 512 features per image",
        "autoencoder": "convolutional autoencoder, first trained to reconstruct all images (labels not needed)",
    },
    "energies": {
        "label_spreading": "label spreading (Zhou et al. 2004): labels spread to neighbours, alpha sets how far",
        "laplace": "harmonic (Laplace) learning (Zhu et al. 2003): labels kept fixed, smooth in between",
        "poisson": "Poisson learning (Calder et al. 2020): robust at very few labels, optional class priors",
        "tv_ratio": "total-variation ratio (Bresson et al. 2013): sharp class boundaries, slower",
        "poisson_mbo": "Poisson learning + graph MBO with class sizes held to priors (Calder et al. 2020)",
    },
    "data formats": {
        "cbis_ddsm": "CBIS-DDSM mammography lesions: the case CSVs and their DICOM or PNG crops",
        "chestxray14": "NIH ChestX-ray14: image folder with Data_Entry_2017.csv (14 findings, multi-label)",
        "folder": "one folder per class holding image files (png, jpg, tif, bmp, pgm, dcm)",
        "medmnist": "a MedMNIST .npz file (train, val and test parts joined in that order)",
        "mias": "mini-MIAS mammograms: the .pgm films listed in Info.txt",
        "npz": "graphzoo's .npz layout: images, labels and optional split, patient ids, class names",
    },
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=["backbones", "energies", "formats", "strategies", "all"],
                        default="all")


def plain(text: str) -> str:
    """First docstring line without Sphinx markup or "(see ...)" pointers into the source."""
    text = re.sub(r":\w+:`([^`]*)`", r"\1", text)  # :math:`x`, :func:`f` -> x, f
    text = text.replace("``", "")
    text = re.sub(r"\s*\(see [^)]*\)", "", text)
    return text.strip()


def describe(kind: str, name: str, obj) -> str:
    """The plain description of plug-in ``name`` of ``kind`` (a section title of ``graphzoo list``)."""
    if name in DESCRIPTIONS.get(kind, {}):
        return DESCRIPTIONS[kind][name]
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return plain(doc[0]) if doc else ""


def main(args: argparse.Namespace) -> int:
    from . import ENERGIES
    from .models import BACKBONES

    registries = [("backbones", BACKBONES)] if args.what in ("backbones", "all") else []
    if args.what in ("energies", "all"):
        registries.append(("energies", ENERGIES))
    if args.what in ("formats", "all"):
        from .data import READERS

        registries.append(("data formats", READERS))
    if args.what in ("strategies", "all"):
        from .acquisition import ACQUISITION

        registries.append(("acquisition strategies (graphzoo suggest)", ACQUISITION))
    for kind, registry in registries:
        rows = [(n, describe(kind, n, registry.get(n))) for n in registry.names()]
        if kind == "backbones":
            rows.append(("<torchvision name>", "any torchvision classification model, e.g. densenet121"))
        print(f"{kind}:")
        width = max((len(n) for n, _ in rows), default=0)
        for name, text in rows:
            print(f"  {name.ljust(width)}  {text}")
    return 0
