"""One Pass (the seed's Listing 1.1): train ψ on the labelled images, then one graph step.

``supervised`` epochs on the labelled images (cross-entropy, Adam, dropout, early stopping on the
labelled validation part); the final evaluation (:mod:`.evaluate`) then embeds *all* images with
the best network, builds one kNN graph and minimises the energy once: the prediction is the
energy's argmax (transductive).
"""

from __future__ import annotations

import torch

from .pretrain import pretrain

__all__ = ["one_pass", "supervised_epoch"]


def supervised_epoch(trainer) -> dict:
    """One epoch on the labelled training images.

    An epoch makes at least ``min_epoch_steps`` steps (the labelled set is repeated, reshuffled),
    so that an epoch on 1 % labels is not two steps long.
    """
    cfg, g = trainer.cfg, trainer.generator()
    idx_lab = trainer.idx_lab
    n_steps = max(-(-len(idx_lab) // cfg.batch_size), cfg.min_epoch_steps)
    if n_steps > 1 or len(idx_lab) > cfg.batch_size:
        stream = trainer.labelled_stream(n_steps * cfg.batch_size, g)
    else:
        stream = torch.as_tensor(idx_lab)[torch.randperm(len(idx_lab), generator=g)]
    batches = stream.split(cfg.batch_size)
    g = trainer.augment_generator(g)  # the batch order above is the same on every rank, the augmentations not
    targets = torch.as_tensor(trainer.data.targets)
    total, bar = 0.0, trainer.bar(len(batches), "supervised")
    mine = [trainer.local(b) for b in batches]  # this process's rows (all of them without torchrun)
    for step, (b, raw) in enumerate(trainer.read_ahead(mine)):
        x = trainer.batch(b, g, raw)
        loss = trainer.loss(trainer.forward(x), targets[b].to(trainer.device)).mean()
        trainer.optimizer_step(loss, step)
        total += loss.item()
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    return {"train_loss": total / len(batches), "loss_labelled": total / len(batches), "images": len(stream)}


def one_pass(trainer) -> None:
    """Pretraining (if any), then supervised epochs with early stopping."""
    pretrain(trainer)
    trainer.phase("supervised", trainer.cfg.epochs, supervised_epoch, early_stopping=True)
