"""The backbone registry, kept free of torch so that listing names is instant.

Each entry is a builder ``(in_chans=..., pretrained=..., **kwargs) -> nn.Module``. The built-in
entries are thin wrappers that import :mod:`graphzoo.models.backbones` (and with it torch) only
when called. Register your own with ``@BACKBONES.register("my_net")``; ``BACKBONES.names()`` lists them all.
"""

from __future__ import annotations

from ..registry import Registry

#: Registry of feature extractors by name; see :func:`graphzoo.models.create_backbone`.
BACKBONES: Registry = Registry("backbone")


def _lazy(name: str, attr: str, doc: str) -> None:
    def build(**kwargs):
        from . import backbones

        return getattr(backbones, attr)(**kwargs)

    build.__name__ = name
    build.__doc__ = doc
    BACKBONES.register(name)(build)


_lazy("small_cnn", "small_cnn",
      "The GraphNet Zoo paper's customised CNN: four conv-BN-ReLU-pool blocks, global average pooling.")
_lazy("resnet18", "resnet18", "torchvision ResNet-18 without its fc layer (512-d).")
_lazy("resnet50", "resnet50", "torchvision ResNet-50 without its fc layer (2048-d).")
_lazy("vgg16", "vgg16", "torchvision VGG-16 convolutions + global average pooling (512-d).")
_lazy("autoencoder", "autoencoder",
      "Convolutional autoencoder; its encoder is ψ (reconstruction pretraining).")
