"""Checkpoints that are safe to load: tensors and plain Python values only, never pickled objects.

Checkpoints travel between hospitals, so loading one must never run code. ``torch.load`` with
``weights_only=False`` unpickles arbitrary objects, and a crafted ``best.pt`` whose metadata has
a ``__reduce__`` runs a shell command. Here:

* :func:`save_checkpoint` converts everything to tensors, ``dict`` / ``list`` / ``tuple``, ``str``,
  ``int``, ``float``, ``bool`` and ``None`` first (numpy arrays become tensors, numpy scalars
  Python numbers) and writes atomically (``*.pt.tmp`` then rename, so a kill or a full disk never
  leaves a truncated checkpoint);
* :func:`load_checkpoint` reads with ``weights_only=True``: PyTorch's restricted unpickler, which
  refuses any global that is not a tensor type. Checkpoints written before this format held numpy
  arrays (split masks, pseudo-labels, numpy's RNG state); numpy's array and dtype constructors are
  allowed for them (they rebuild data, they cannot call anything else), so those old checkpoints
  still load. Anything else is refused with :class:`UnsafeCheckpointError`.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "to_plain", "CheckpointError", "UnsafeCheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint cannot be read (truncated, not a PyTorch file)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds objects other than tensors and plain values."""


def to_plain(obj):
    """``obj`` with numpy arrays as tensors and numpy scalars as Python numbers (recursively)."""
    if isinstance(obj, dict):
        return {to_plain(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [to_plain(v) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "US":  # strings: a list keeps them readable and safe
            return obj.tolist()
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (torch.Tensor, str, int, float, bool)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint: "
                    "only tensors, arrays and plain values are saved")


def save_checkpoint(obj: dict, path: str | os.PathLike) -> None:
    """Write ``obj`` (converted by :func:`to_plain`) to ``path`` atomically."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        torch.save(to_plain(obj), tmp)
        os.replace(tmp, path)  # a kill mid-write never leaves a truncated checkpoint
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk or Ctrl-C leaves the previous checkpoint, not a stray .tmp
        raise


def _numpy_globals() -> list:
    """The numpy constructors a pre-0.2 checkpoint's arrays need (data only, no callables)."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    out = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    out += [type(np.dtype(t)) for t in ("b", "u1", "i2", "i4", "i8", "u4", "u8", "f2", "f4", "f8", "?", "U1")]
    return out


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint without running any code in it.

    Raises :class:`UnsafeCheckpointError` for a file that holds other objects (a crafted or
    foreign checkpoint), naming what it holds; ``FileNotFoundError`` when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "global" in ln.lower() and "weights_only" not in ln]
        what = lines[0] if lines else "objects PyTorch's safe loader does not know"
        raise UnsafeCheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain values ({what[:200]}), "
            "and loading those can run code. graphzoo writes only safe checkpoints; "
            "retrain the run, or ask its author for a checkpoint written by graphzoo"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise CheckpointError(f"cannot read checkpoint {path}: {first} (truncated or not a PyTorch checkpoint); "
                              "rerun the run, or copy the file again") from None
