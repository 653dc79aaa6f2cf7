"""The self-supervised methods that pretrain ψ on all training images, labels ignored.

:data:`PRETRAINING` maps a method name to a :class:`PretrainMethod`: its settings with their
defaults, the head it trains on top of ψ (discarded afterwards) and its loss on a batch of raw
images. :mod:`graphzoo.train.pretrain_cache` runs a method over the training split, stores the encoder under a
key of (training images, split, method, settings) and hands it to every run asking for it
(``pretrain: simclr``). Methods:

* ``simclr`` (default) — contrastive: two random views (:class:`.views.ViewMaker`) of each image
  are pulled together and pushed away from the other images of the batch (:func:`.losses.nt_xent`).
  Chosen first because it needs nothing but a batch of a few hundred images (256 here: 510
  negatives per positive, enough for 2 classes of cells; SimCLR's large-batch need comes from
  ImageNet's 1000 classes), has one sensitive setting (the temperature), no momentum encoder and
  no stop-gradient trick to tune, and was measured on these cells (issue 16's first probe: its
  fine-tuned features beat from-scratch training by 0.7–1.1 points at 1 %).
* ``vicreg`` — no negatives, no large batch: invariance between views plus a variance and a
  covariance term on the embeddings, which keep it from collapsing (:func:`.losses.vicreg`); the
  alternative when batches must be small.
* ``autoencoder`` — the seed's: reconstruction of un-augmented images by the ``autoencoder``
  backbone (``backbone.reconstruct``). Without ``pretrain`` set, an ``autoencoder`` backbone still
  pretrains inside the run for ``ae_pretrain_epochs`` (:func:`graphzoo.train.pretrain.pretrain`, today's behaviour).

Every method shares the optimisation settings of :data:`COMMON` (batch size, Adam learning rate
with cosine decay, weight decay, seed); the view settings of :class:`.views.ViewMaker` belong to the
methods that use views.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry, did_you_mean
from .losses import nt_xent, projector, vicreg
from .views import VIEW_SETTINGS, ViewMaker

__all__ = ["PRETRAINING", "PretrainMethod", "COMMON", "VIEWS", "resolve_settings", "resolve_auto_pretrain",
           "AUTO_PRETRAIN_METHOD", "AUTO_PRETRAIN_MIN_IMAGES", "AUTO_PRETRAIN_CPU_WORK"]

#: Settings every method has: images per step, Adam's learning rate (cosine-annealed to 0 over
#: the epochs) and weight decay, the seed of batch order and views.
COMMON = {"batch_size": 256, "lr": 1e-3, "weight_decay": 1e-6, "seed": 0}
#: Defaults of the view settings (:class:`.views.ViewMaker`).
VIEWS = {k: getattr(ViewMaker(), k) for k in VIEW_SETTINGS}


@dataclass(frozen=True)
class PretrainMethod:
    """One self-supervised objective.

    Attributes
    ----------
    name : str
    defaults : dict
        Its settings (beyond :data:`COMMON`) with their defaults; ``pretrain_params`` may change them.
    head : callable (backbone, settings) -> nn.Module
        What the loss is computed on top of ψ (a projector); trained, then thrown away.
    loss : callable (backbone, head, x, views, normalizer, generator, settings) -> scalar tensor
        ``x``: raw images of the batch, float (B, C, H, W) in 0–255; ``views``: the :class:`ViewMaker`;
        ``normalizer`` turns raw images into the network's input.
    """

    name: str
    defaults: dict
    head: Callable[[nn.Module, dict], nn.Module]
    loss: Callable[..., torch.Tensor]
    uses_views: bool = True
    doc: str = field(default="", compare=False)


PRETRAINING: Registry = Registry("pretraining method")


def _two_views(backbone, head, x, views, normalizer, g):
    return head(backbone(normalizer(views(x, g)))), head(backbone(normalizer(views(x, g))))


def _simclr_loss(backbone, head, x, views, normalizer, g, s):
    return nt_xent(*_two_views(backbone, head, x, views, normalizer, g), temperature=s["temperature"])


def _vicreg_loss(backbone, head, x, views, normalizer, g, s):
    return vicreg(*_two_views(backbone, head, x, views, normalizer, g), sim=s["sim"], var=s["var"], cov=s["cov"])


def _autoencoder_loss(backbone, head, x, views, normalizer, g, s):
    xn = normalizer(x)
    return F.mse_loss(backbone.reconstruct(xn), xn)


def _mlp_head(backbone, s):
    return projector(backbone.out_dim, int(s["proj_hidden"]), int(s["proj_dim"]))


PRETRAINING.register("simclr")(PretrainMethod(
    "simclr", {"temperature": 0.2, "proj_hidden": 256, "proj_dim": 64, **VIEWS}, _mlp_head, _simclr_loss,
    doc="SimCLR: contrastive, two views per image, the rest of the batch as negatives"))
PRETRAINING.register("vicreg")(PretrainMethod(
    "vicreg", {"sim": 25.0, "var": 25.0, "cov": 1.0, "proj_hidden": 512, "proj_dim": 512, **VIEWS}, _mlp_head,
    _vicreg_loss, doc="VICReg: invariance + variance + covariance, no negatives"))
PRETRAINING.register("autoencoder")(PretrainMethod(
    "autoencoder", {}, lambda backbone, s: nn.Identity(), _autoencoder_loss, uses_views=False,
    doc="reconstruction of every image by the autoencoder backbone (the seed's)"))


def resolve_settings(method: str, params: dict, epochs: int) -> dict:
    """The full settings of ``method``: :data:`COMMON`, its defaults, then ``params``, plus ``epochs``
    (sorted keys, numbers as floats or ints as the defaults). Unknown keys and non-numbers are refused."""
    m = PRETRAINING.get(method)
    defaults = {**COMMON, **m.defaults}
    out = dict(defaults)
    for key, value in (params or {}).items():
        if key not in defaults:
            raise ValueError(f"pretrain_params: {key!r} is not a setting of {method} (its settings: "
                             f"{', '.join(sorted(defaults))}).{did_you_mean(key, defaults)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"pretrain_params: {key} must be a number, got {value!r}")
        out[key] = int(value) if isinstance(defaults[key], int) else float(value)
    if out["batch_size"] < 2 or out["lr"] <= 0 or out["weight_decay"] < 0:
        raise ValueError(f"pretrain_params: batch_size must be >= 2, lr > 0 and weight_decay >= 0, got "
                         f"{out['batch_size']}, {out['lr']}, {out['weight_decay']}")
    if method == "simclr" and out["temperature"] <= 0:
        raise ValueError(f"pretrain_params: temperature must be > 0, got {out['temperature']}")
    if m.uses_views:
        ViewMaker.from_settings(out)  # checks the view settings' ranges
    if epochs < 1:
        raise ValueError(f"pretrain_epochs must be >= 1, got {epochs}")
    return dict(sorted({**out, "epochs": int(epochs)}.items()))


#: ``pretrain=auto`` (the default) pretrains with this method when the training split holds at least
#: :data:`AUTO_PRETRAIN_MIN_IMAGES` images (labelled or not), and not at all below. Measured
#: (docs/results.md, issue 16): on the 19,273 training cells of malaria SimCLR + fine-tuning lifts the
#: graph by +3.2 points at 1 % labels; on the demo (978 images), the ChestX-ray14 subset (~720) and the
#: mini-MIAS patches (~195) it cost up to 5.5 points — instance discrimination over a few hundred images
#: learns those images, not their classes. 5,000 lies between what was measured to help and to hurt.
AUTO_PRETRAIN_METHOD = "simclr"
AUTO_PRETRAIN_MIN_IMAGES = 5000
#: On the CPU, ``pretrain=auto`` declines pretraining that reads more pixel values than this (training
#: images × epochs × C·H·W). Malaria's default, 19,273 cells × 10 epochs × 50·50, is 4.8e8 (about 20 minutes
#: with small_cnn on 2 cores); 224 px chest films at that scale are 20 times more.
AUTO_PRETRAIN_CPU_WORK = 1e9


def resolve_auto_pretrain(cfg, n_train: int, pixels: int = 0, on_cpu: bool = False):
    """``cfg`` with ``pretrain="auto"`` decided for a training split of ``n_train`` images, and why.

    ``pixels``: values per image (C·H·W); ``on_cpu``: the run trains on the CPU. Returns ``(cfg, reason)``:
    ``cfg`` unchanged and ``""`` when ``pretrain`` is not "auto"; else a copy whose ``pretrain`` is
    :data:`AUTO_PRETRAIN_METHOD` or "" (none), and one line saying which and why. Explicit weights
    (``pretrained``) and the autoencoder backbone (it pretrains itself, ``ae_pretrain_epochs``) resolve to
    none, and so does a CPU run whose pretraining would read more than :data:`AUTO_PRETRAIN_CPU_WORK` pixel
    values (n_train · pretrain_epochs · pixels): a default must not start hours of pretraining on a laptop.
    """
    if cfg.pretrain != "auto":
        return cfg, ""
    work = n_train * cfg.pretrain_epochs * pixels
    if cfg.pretrained:
        method, why = "", "ψ starts from the given pretrained weights"
    elif cfg.backbone == "autoencoder":
        method, why = "", "the autoencoder backbone pretrains itself (ae_pretrain_epochs)"
    elif n_train < AUTO_PRETRAIN_MIN_IMAGES:
        method, why = "", (f"{n_train:,} training images < {AUTO_PRETRAIN_MIN_IMAGES:,}: on small sets "
                           "self-supervised pretraining was measured to cost accuracy")
    elif on_cpu and work > AUTO_PRETRAIN_CPU_WORK:
        method, why = "", (f"{n_train:,} training images x {cfg.pretrain_epochs} epochs x {pixels:,} values = "
                           f"{work:.1e} > {AUTO_PRETRAIN_CPU_WORK:.0e}: hours on a CPU; on a GPU it would pretrain")
    else:
        method, why = AUTO_PRETRAIN_METHOD, f"{n_train:,} training images >= {AUTO_PRETRAIN_MIN_IMAGES:,}"
    reason = f"pretrain=auto: {method or 'none'} ({why}; --pretrain NAME or none to choose)"
    return dataclasses.replace(cfg, pretrain=method), reason
