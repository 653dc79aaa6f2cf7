"""The seed's in-run pretraining: the ``autoencoder`` backbone reconstructs all images first.

The self-supervised methods (:data:`PRETRAINING`, :mod:`graphzoo.selfsup`) run before the run instead,
once per split, through the encoder cache (:mod:`.pretrain_cache`); this phase is what a run with the
``autoencoder`` backbone and no ``pretrain`` set does, as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..selfsup import PRETRAINING

__all__ = ["PRETRAINING", "pretrain"]


def _autoencoder_epoch(trainer) -> dict:
    """One epoch of mean-squared reconstruction error on every image (labels unused)."""
    g = trainer.generator()
    idx = torch.arange(len(trainer.data.split))
    batches = idx[torch.randperm(len(idx), generator=g)].split(trainer.cfg.batch_size)
    total, bar = 0.0, trainer.bar(len(batches), "ae")
    for step, b in enumerate(batches):
        x = trainer.batch(trainer.local(b), None)
        loss = F.mse_loss(trainer.forward(x, reconstruct=True), x)
        trainer.optimizer_step(loss, step)
        total += loss.item()
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    return {"train_loss": total / len(batches), "recon_loss": total / len(batches)}


def pretrain(trainer) -> None:
    """The in-run pretraining: the autoencoder backbone reconstructs all images first unless it starts
    from pretrained weights, from a cached encoder (``pretrain`` set) or ``ae_pretrain_epochs=0``."""
    cfg = trainer.cfg
    if cfg.backbone == "autoencoder" and not cfg.pretrained and cfg.ae_pretrain_epochs and not cfg.pretrain:
        trainer.phase("ae", cfg.ae_pretrain_epochs, _autoencoder_epoch, validate=False)
