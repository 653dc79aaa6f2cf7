"""The random number generators a run draws from: seeded at its start, saved in ``last.pt``, restored on resume.

Dropout draws from the global torch RNG (and numpy / Python's ``random`` from theirs), so a resumed run
continues exactly where its last epoch ended only if these states travel with the checkpoint. Under
torchrun every rank's dropout draws depend on its own batches: :func:`gather_rng_states` keeps all of them
(``rng_ranks``), and :func:`restore_rng_states` gives each resumed rank its own.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from .. import distributed

__all__ = ["seed_all", "rng_state", "set_rng_state", "gather_rng_states", "restore_rng_states"]


def seed_all(seed: int) -> None:
    """Seed the torch, numpy and Python generators with ``seed``."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng_state() -> dict:
    """This process's RNG states: torch, numpy, python, and every CUDA device's when there is one."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states of :func:`rng_state` (numpy's key as uint32: a checkpoint stores it as a tensor)."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_rng_states() -> tuple[dict, list[dict] | None]:
    """``(rng, rng_ranks)`` for ``last.pt``: rank 0's states, and under torchrun every rank's (None in one
    process). A collective: every rank calls it."""
    rngs = distributed.all_objects(rng_state())
    return rngs[0], rngs if len(rngs) > 1 else None


def restore_rng_states(checkpoint: dict) -> None:
    """Restore the states saved by :func:`gather_rng_states` in ``checkpoint`` (``rng``, ``rng_ranks``): with the
    same number of processes each rank its own; otherwise every rank continues from rank 0's."""
    ranks = checkpoint.get("rng_ranks")
    set_rng_state(ranks[distributed.rank()] if ranks and len(ranks) == distributed.world_size()
                  else checkpoint["rng"])
