"""Small real datasets shipped with the package (see README.md beside this file)."""

from __future__ import annotations

from pathlib import Path

#: 1,400 NIH malaria cells, 50×50 gray, class-balanced, with patient ids (about 1.8 MB).
MALARIA_DEMO = Path(__file__).with_name("malaria_demo.npz")


def load_malaria_demo():
    """Load the bundled malaria demo set as a :class:`graphzoo.data.ImageSet`."""
    from ..data import load

    return load(MALARIA_DEMO)
