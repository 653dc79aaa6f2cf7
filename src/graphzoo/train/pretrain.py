"""Pretraining ψ on all images, labelled or not, before the supervised phase.

:data:`PRETRAINING` maps a method name to a function ``(trainer) -> None`` that trains the
backbone for some epochs of its own phase. Today it holds the autoencoder's reconstruction; the
self-supervised methods to come (issue 16) register here the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import Registry

__all__ = ["PRETRAINING", "pretrain"]

PRETRAINING: Registry = Registry("pretraining method")


def _autoencoder_epoch(trainer) -> dict:
    """One epoch of mean-squared reconstruction error on every image (labels unused)."""
    g = trainer.generator()
    idx = torch.arange(len(trainer.data.split))
    batches = idx[torch.randperm(len(idx), generator=g)].split(trainer.cfg.batch_size)
    total, bar = 0.0, trainer.bar(len(batches), "ae")
    for step, b in enumerate(batches):
        x = trainer.batch(b, None)
        loss = F.mse_loss(trainer.model.backbone.reconstruct(x), x)
        trainer.optimizer_step(loss, step)
        total += loss.item()
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    return {"train_loss": total / len(batches), "recon_loss": total / len(batches)}


@PRETRAINING.register("autoencoder")
def autoencoder(trainer) -> None:
    """Reconstruction epochs (``ae_pretrain_epochs``) of the autoencoder backbone on all images."""
    trainer.phase("ae", trainer.cfg.ae_pretrain_epochs, _autoencoder_epoch, validate=False)


def pretrain(trainer) -> None:
    """Run the pretraining the config asks for: the autoencoder backbone reconstructs all images
    first unless it starts from pretrained weights or ``ae_pretrain_epochs=0``."""
    cfg = trainer.cfg
    if cfg.backbone == "autoencoder" and not cfg.pretrained and cfg.ae_pretrain_epochs:
        PRETRAINING.get("autoencoder")(trainer)
