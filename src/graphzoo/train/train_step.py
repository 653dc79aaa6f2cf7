"""One training step: the forward pass through DistributedDataParallel under autocast, then the backward
(loss-scaled in fp16) and the optimiser step.

:meth:`.Trainer.forward` and :meth:`.Trainer.optimizer_step` call :func:`forward` and
:func:`optimizer_step`; the modes (:mod:`.one_pass`, :mod:`.dynamic_pass`, :mod:`.pretrain`) call those.
Under torchrun DDP averages the gradients of the backward pass over the ranks; without it
:func:`graphzoo.distributed.wrap` returns the module itself.
"""

from __future__ import annotations

import torch

from .. import distributed

__all__ = ["TrainStep", "forward", "optimizer_step"]


class TrainStep(torch.nn.Module):
    """The one module DistributedDataParallel wraps: a training step's forward, logits (and ψ) or reconstruction."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, reconstruct: bool = False, with_features: bool = False):
        if reconstruct:
            return self.model.backbone.reconstruct(x)
        return self.model(x, with_features=with_features)


def forward(trainer, x: torch.Tensor, reconstruct: bool = False, with_features: bool = False):
    """The training forward pass: logits (B, n_outputs), or the autoencoder's reconstruction of ``x``;
    with ``with_features`` the pair (logits, ψ(x) of shape (B, d)) from the same pass.

    Under torchrun it goes through DistributedDataParallel, which averages the gradients of the
    backward pass over the ranks; ``trainer.model`` itself (features, inference) is never wrapped. The
    wrapper is made at the first step and kept in ``trainer._ddp`` (None until then)."""
    if trainer._ddp is None:
        # An autoencoder's decoder is idle in supervised steps and its head in reconstruction steps.
        trainer._ddp = distributed.wrap(TrainStep(trainer.model), trainer.device,
                                        find_unused_parameters=hasattr(trainer.model.backbone, "reconstruct"))
    # DDP's forward broadcasts rank 0's BatchNorm buffers to the others: a collective, which fails when a peer died.
    with distributed.peer_guard(), trainer.autocast():
        out = trainer._ddp(x, reconstruct, with_features)
    if with_features:
        return out[0].float(), out[1].float()
    return out.float()  # losses in float32


def optimizer_step(trainer, loss: torch.Tensor, step: int) -> None:
    """One gradient step on ``loss``, refusing a NaN / inf loss before it reaches the weights."""
    if not torch.isfinite(loss):
        last = trainer.rundir.checkpoint("last")
        kept = (f"the last good checkpoint (end of epoch {trainer.state['epoch']}) is kept at {last}"
                if last.exists() else "no checkpoint was written yet")
        raise FloatingPointError(
            f"training loss became {loss.item()} at epoch {trainer.state['epoch'] + 1}, step {step}; stopping. "
            f"{kept}. Lower lr (now {trainer.cfg.lr:g}) or check the images for NaN / constant values."
        )
    trainer.optimizer.zero_grad(set_to_none=True)
    with distributed.peer_guard():  # DDP exchanges gradients during backward
        (loss if trainer.scaler is None else trainer.scaler.scale(loss)).backward()
    if trainer.scaler is None:
        trainer.optimizer.step()
    else:  # skips the step when the scaled gradients overflowed, then adapts the scale
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
