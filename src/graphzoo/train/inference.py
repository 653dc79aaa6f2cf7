"""Inference: a network's logits and ψ features for a set of images, in eval mode, in one pass.

Under torchrun each rank embeds a contiguous block of the images and the blocks are gathered on every
rank (:func:`graphzoo.distributed.shard`, :func:`~graphzoo.distributed.gather_rows`), so every rank
takes the same early-stopping and pseudo-label decisions. :meth:`.Trainer.infer` calls :func:`infer`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import distributed, progress

__all__ = ["infer"]


@torch.no_grad()
def infer(trainer, idx: np.ndarray, tta: bool = False, batch_size: int = 512,
          model: torch.nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits (len(idx), n_outputs) and ψ features (len(idx), out_dim) of ``images[idx]`` in eval
    mode, float32 numpy, in one pass. ``tta``: both averaged over :meth:`.Trainer.views`. ``model``: another
    network than ``trainer.model`` (Dynamic Pass's mean teacher). A batch holds at most 8 Mpx (all 512 images
    up to 128², 167 at 224²): the network's activations, not the data, set the peak memory of a pass over a
    large set."""
    model = trainer.model if model is None else model
    distributed.broadcast_buffers(model)  # one network: rank 0's BatchNorm statistics on every rank
    model.eval()
    batch_size = max(1, min(batch_size, 2**23 // math.prod(trainer.data.images.shape[-2:])))
    views = trainer.views() if tta else [(0, False)]
    mine = np.asarray(idx)[distributed.shard(len(idx))]  # this rank's block; all of idx in one process
    # Written into arrays allocated once: a small output kept per batch lands in the hole of that batch's
    # freed activations and pins the heap, which then grows with the number of batches (at 112k images
    # by gigabytes; bench/memory_bench.py, docs/scaling.md).
    logits = np.empty((len(mine), trainer.data.n_outputs), np.float32)
    feats = np.empty((len(mine), model.head.in_features), np.float32)
    batches = torch.as_tensor(mine, dtype=torch.long).split(batch_size)
    bar = progress.bar(len(batches), f"infer ×{len(views)}" if len(views) > 1 else "infer", trainer.cfg.progress)
    start = 0
    for b, raw in trainer.read_ahead(batches):
        with trainer.autocast():
            lg, z = model.infer(trainer.batch(b, None, raw), views)
        logits[start:start + len(b)] = lg.float().cpu().numpy()
        feats[start:start + len(b)] = z.float().cpu().numpy()
        start += len(b)
        bar.update()
    bar.close()
    model.train()
    return distributed.gather_rows(logits), distributed.gather_rows(feats)
