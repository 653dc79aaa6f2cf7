"""Shared fixtures: small synthetic problems and the location of the real data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
#: Real medical data lives beside the repository (``../shared/data``); override with GRAPHZOO_DATA.
DATA_DIR = Path(os.environ.get("GRAPHZOO_DATA", REPO.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """Path under the shared data folder, skipping the calling test when it is absent."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set GRAPHZOO_DATA to the shared data folder)")
    return path


def mask_labels(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Keep ``per_class`` random labels of each class, set the rest to -1."""
    rng = np.random.default_rng(seed)
    masked = np.full_like(y, -1)
    for c in np.unique(y):
        keep = rng.choice(np.flatnonzero(y == c), per_class, replace=False)
        masked[keep] = c
    return masked


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
