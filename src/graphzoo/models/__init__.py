"""Deep feature extractors ψ (plug-and-play backbones) and the classifier head on top of them.

Every backbone is an ``nn.Module`` whose ``forward`` maps images ``(B, C, H, W)`` to pooled
features ``(B, out_dim)`` and which carries ``out_dim``: the timm convention of a network with its
classification head removed (``num_classes=0``). :func:`create_backbone` builds one by name from
:data:`BACKBONES`, falls back to any torchvision classification model by name, or wraps a module
you built yourself.

The registry itself is torch-free (its entries import torch when called), so ``graphzoo list``
can show the names without paying for importing torch.
"""

from __future__ import annotations

from ..registry import did_you_mean
from ._registry import BACKBONES

__all__ = ["BACKBONES", "check_backbone_kwargs", "create_backbone", "HybridNet"]


def create_backbone(name, in_chans: int = 1, pretrained=False, **kwargs):
    """Build a feature extractor ψ.

    Parameters
    ----------
    name : str or nn.Module
        A name in :data:`BACKBONES` (``small_cnn``, ``resnet18``, ``resnet50``, ``vgg16``,
        ``autoencoder``), any torchvision classification model (``"densenet121"``,
        ``"efficientnet_b0"``, ...), or a module of your own: it is wrapped so that its output is
        flattened to ``(B, out_dim)`` and ``out_dim`` is measured with a dummy forward pass
        unless the module already has it.
    in_chans : int, default=1
        Image channels (1 for grayscale, 3 for RGB). For torchvision models the first convolution
        is rebuilt for ``in_chans``; pretrained RGB weights are averaged over colour for one
        channel (timm's ``adapt_input_conv``), so grayscale images keep ImageNet features.
    pretrained : bool or str, default=False
        ``False``: random initialisation. A path: load a state dict from that local file.
        ``True``: use the torchvision weights already in the local torch cache
        (``$TORCH_HOME/hub/checkpoints``); nothing is ever downloaded.
    **kwargs
        Passed to the backbone builder (e.g. ``width`` for ``small_cnn``).

    Returns
    -------
    nn.Module
        ``forward(x: (B, in_chans, H, W)) -> (B, out_dim)``, attribute ``out_dim``.
    """
    import torch.nn as nn

    from . import backbones

    if isinstance(name, nn.Module):
        return backbones.ModuleBackbone(name, in_chans=in_chans)
    if not isinstance(name, str):
        raise TypeError(f"backbone must be a name or an nn.Module, got {type(name).__name__}")
    if name in BACKBONES:
        return BACKBONES.get(name)(in_chans=in_chans, pretrained=pretrained, **kwargs)
    if backbones.is_torchvision_model(name):
        return backbones.torchvision_backbone(name, in_chans=in_chans, pretrained=pretrained, **kwargs)
    raise ValueError(
        f"Unknown backbone {name!r}.{did_you_mean(name, BACKBONES)} Available: {', '.join(BACKBONES.names())}. "
        "Any torchvision classification model name also works."
    )


def check_backbone_kwargs(name: str, kwargs: dict) -> None:
    """Refuse ``kwargs`` that backbone ``name`` would reject, before any data is read.

    The backbone is built once on PyTorch's ``meta`` device (shapes only: no memory, no weights
    read, well under a second even for ResNet-50), so the check is the constructor's own, for our
    backbones and torchvision's alike. A misspelled keyword of one of our backbones gets a
    "did you mean"; torchvision's builders take ``**kwargs``, so their message is the model's own.
    Raises ``ValueError`` naming the key and the fix.
    """
    if not kwargs:
        return
    import inspect

    import torch

    from . import backbones

    for key in ("in_chans", "pretrained"):
        if key in kwargs:
            raise ValueError(f"backbone_kwargs: set {key} with its own config key, not inside backbone_kwargs")
    own = getattr(backbones, name, None) if name in BACKBONES else None
    if callable(own):
        params = inspect.signature(own).parameters
        names = [k for k, p in params.items() if k not in ("in_chans", "pretrained") and p.kind != p.VAR_KEYWORD]
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            for key in kwargs:
                if key not in names:
                    raise ValueError(f"backbone_kwargs: backbone {name!r} has no parameter {key!r}."
                                     f"{did_you_mean(key, names)} Its parameters: {', '.join(names) or 'none'}.")
    try:
        with torch.device("meta"):
            create_backbone(name, in_chans=1, pretrained=False, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"backbone_kwargs={kwargs!r} do not fit backbone {name!r}: {exc}") from None


def __getattr__(name):
    # HybridNet lives in the torch module; import it on first use only.
    if name == "HybridNet":
        from .backbones import HybridNet

        return HybridNet
    raise AttributeError(name)
