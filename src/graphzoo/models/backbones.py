"""Torch implementations of the feature extractors ψ and the hybrid network f = head ∘ ψ.

Builders registered in :mod:`graphzoo.models._registry` call the functions here. Every backbone
maps ``(B, C, H, W)`` images to pooled features ``(B, out_dim)``: torchvision models lose their
classification head (timm's ``num_classes=0`` convention), our own nets end in global average
pooling, so any input size of at least 32 px works.

Weights never download: ``pretrained=True`` reads the file torchvision would have cached under
``$TORCH_HOME/hub/checkpoints`` and fails with instructions when it is absent; ``pretrained=PATH``
reads a local state dict (a torchvision checkpoint, one saved from our backbone, or a dict with a
``"state_dict"`` / ``"model"`` entry).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "SmallCNN",
    "ConvAutoencoder",
    "ModuleBackbone",
    "TorchvisionBackbone",
    "HybridNet",
    "small_cnn",
    "resnet18",
    "resnet50",
    "vgg16",
    "autoencoder",
    "torchvision_backbone",
    "is_torchvision_model",
]


# --------------------------------------------------------------------------------------------
# Our own networks
# --------------------------------------------------------------------------------------------
def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """The GraphNet Zoo paper's customised CNN: a short VGG-style stack sized for small images on a CPU.

    Four stages of ``conv3×3-BN-ReLU`` (two convolutions in the last two stages), 2×2 max
    pooling between stages, then global average pooling. Widths ``w, 2w, 4w, 8w``;
    ``out_dim = 8w`` (128 for the default ``w = 16``). At 50×50 px the spatial sizes are
    50 → 25 → 12 → 6, so the last stage sees the whole cell, at about 40 MFLOPs per image:
    the full-resolution stages are kept thin because on a CPU they dominate the cost (every
    Dynamic Pass epoch retrains on the whole training set).

    Parameters
    ----------
    in_chans : int, default=1
    width : int, default=16
        Channels of the first stage ``w``.
    """

    def __init__(self, in_chans: int = 1, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_block(in_chans, w),
            nn.MaxPool2d(2),
            _conv_block(w, 2 * w),
            nn.MaxPool2d(2),
            _conv_block(2 * w, 4 * w),
            _conv_block(4 * w, 4 * w),
            nn.MaxPool2d(2),
            _conv_block(4 * w, 8 * w),
            _conv_block(8 * w, 8 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 8 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder whose encoder is the feature extractor ψ (the paper's autoencoder).

    Encoder: three stride-2 ``conv-BN-ReLU`` stages (widths ``w, 2w, 4w``), global average
    pooling and a linear map to a ``latent``-dimensional code: ``forward(x) -> (B, latent)``.
    Decoder: linear → ``(4w, 4, 4)`` → three ×2 upsampling convolutions → bilinear resize to the
    input size. Pretrain it by minimising ``‖decode(encode(x)) − x‖²`` on all images, labelled
    or not (a run with this backbone does so for ``ae_pretrain_epochs`` epochs first); the hybrid
    network then fine-tunes the encoder.

    Parameters
    ----------
    in_chans : int, default=1
    width : int, default=32
    latent : int, default=128
        ``out_dim`` of the encoder.
    """

    def __init__(self, in_chans: int = 1, width: int = 32, latent: int = 128) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(in_chans, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * w, latent),
        )
        self.decoder_fc = nn.Linear(latent, 4 * w * 16)
        self.decoder = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2), nn.Conv2d(4 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2), nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2), nn.Conv2d(w, in_chans, 3, padding=1),
        )
        self.width = w
        self.out_dim = latent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the code of ``x`` back to an image of the same shape ``(B, C, H, W)``."""
        z = self.decoder_fc(self.encoder(x)).view(len(x), 4 * self.width, 4, 4)
        return F.interpolate(self.decoder(z), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ModuleBackbone(nn.Module):
    """Wrap any user ``nn.Module`` as a backbone: flatten its output, measure ``out_dim``.

    A 4-D output ``(B, C, h, w)`` is global-average-pooled to ``(B, C)``; higher-rank outputs are
    flattened. ``out_dim`` comes from the module's own attribute (``out_dim`` or
    ``num_features``) when present, else from one dummy forward pass on a 64×64 input.
    """

    def __init__(self, module: nn.Module, in_chans: int = 1, probe_size: int = 64) -> None:
        super().__init__()
        self.module = module
        out_dim = getattr(module, "out_dim", None) or getattr(module, "num_features", None)
        if out_dim is None:
            was_training = module.training
            module.eval()
            with torch.no_grad():
                out_dim = self._pool(module(torch.zeros(2, in_chans, probe_size, probe_size))).shape[1]
            module.train(was_training)
        self.out_dim = int(out_dim)

    @staticmethod
    def _pool(y: torch.Tensor) -> torch.Tensor:
        if y.ndim == 4:
            return y.mean(dim=(2, 3))
        return y.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pool(self.module(x))


# --------------------------------------------------------------------------------------------
# torchvision models
# --------------------------------------------------------------------------------------------
def is_torchvision_model(name: str) -> bool:
    """Whether ``name`` is a torchvision classification model (``torchvision.models.list_models``)."""
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)


def _cached_weights_file(name: str) -> Path:
    """Path where torchvision caches the default ImageNet weights of model ``name``."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    # torch.hub.get_dir() honours $TORCH_HOME, as torchvision's own download does.
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _read_state_dict(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {str(path)!r} does not exist")
    import pickle

    try:  # weights_only: PyTorch's restricted unpickler, so that a weights file can never run code
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        what = next((ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln), "objects other than tensors")
        raise ValueError(f"refused to load pretrained weights {path}: it holds {what}, and loading those can run "
                         "code; use a checkpoint written by graphzoo or a plain state dict") from None
    for key in ("state_dict", "model", "backbone"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def _under_prefix(state: dict, prefix: str) -> dict:
    """The entries of ``state`` under ``prefix``, with the prefix removed; ``state`` itself when no
    key has it (so a plain backbone state dict passes through)."""
    if not any(k.startswith(prefix) for k in state):
        return state
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError(f"{type(model).__name__} has no Conv2d layer to adapt to the input channels")


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _adapt_input_conv(model: nn.Module, in_chans: int) -> str:
    """Replace the first convolution by one taking ``in_chans`` channels; return its name."""
    name, conv = _first_conv(model)
    if conv.in_channels != in_chans:
        new = nn.Conv2d(
            in_chans, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
        )
        _set_submodule(model, name, new)
    return name


def _adapt_weight(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """RGB filters → ``in_chans`` filters (timm's ``adapt_input_conv``).

    For one channel the three colour filters are summed, so that a gray image gives the response
    the RGB net gives to the same image replicated over three channels.
    """
    if weight.shape[1] == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def _strip_head(model: nn.Module) -> None:
    """Turn a torchvision classifier into a pooled-feature extractor (head → Identity)."""
    for attr in ("fc", "heads", "head"):
        if isinstance(getattr(model, attr, None), nn.Module):
            setattr(model, attr, nn.Identity())
            return
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear):
        model.classifier = nn.Identity()
        return
    if isinstance(classifier, nn.Sequential):
        # Keep what precedes the last Linear only if it is not itself a large MLP (VGG's 4096-d
        # layers are dropped: features are pooled convolutions, as for the other models).
        layers = list(classifier)
        last = max(i for i, m in enumerate(layers) if isinstance(m, nn.Linear))
        keep = [m for m in layers[:last] if not isinstance(m, (nn.Linear, nn.Dropout, nn.ReLU))]
        model.classifier = nn.Sequential(*keep) if keep else nn.Identity()
        return
    raise ValueError(f"do not know how to remove the head of {type(model).__name__}; wrap it yourself")


class TorchvisionBackbone(nn.Module):
    """A torchvision classification model with its head removed: ``(B, C, H, W) -> (B, out_dim)``."""

    def __init__(self, model: nn.Module, out_dim: int, name: str) -> None:
        super().__init__()
        self.model = model
        self.out_dim = int(out_dim)
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y.mean(dim=(2, 3)) if y.ndim == 4 else y.flatten(1)


class _VGGFeatures(nn.Module):
    """VGG convolutions + global average pooling: 512-d features at any input of ≥ 32 px."""

    def __init__(self, vgg: nn.Module) -> None:
        super().__init__()
        self.features = vgg.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


def torchvision_backbone(name: str, in_chans: int = 1, pretrained=False, **kwargs) -> nn.Module:
    """Any torchvision classification model as a backbone (head removed, input conv adapted).

    See :func:`graphzoo.models.create_backbone` for ``pretrained``.
    """
    import torchvision

    if not is_torchvision_model(name):
        raise ValueError(f"{name!r} is not a torchvision classification model")
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    state = None
    if pretrained is True:
        path = _cached_weights_file(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained=True needs torchvision's cached weights for {name} at {path}; "
                "nothing is downloaded here. Copy the file there, pass pretrained=PATH, or use pretrained=False"
            )
        state = _read_state_dict(path)
    elif pretrained:
        state = _read_state_dict(pretrained)
        # a graphzoo run's checkpoint: HybridNet.backbone (TorchvisionBackbone).model
        state = _under_prefix(state, "backbone.model.")

    conv_name = _adapt_input_conv(model, in_chans)
    if state is not None:
        key = conv_name + ".weight"
        if key in state:
            state = dict(state)
            state[key] = _adapt_weight(state[key], in_chans)
    if name.startswith("vgg"):
        model = _VGGFeatures(model)
        out_dim = 512
        if state is not None:
            state = {k: v for k, v in state.items() if k.startswith("features.")}
    else:
        _strip_head(model)
        out_dim = None
    if state is not None:
        own = model.state_dict()
        # Keys of the removed head are expected to be unused; everything the backbone needs
        # must be present with the right shape.
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        missing = [k for k in own if k not in usable and not k.endswith("num_batches_tracked")]
        if missing:
            raise ValueError(
                f"pretrained weights for {name} lack {len(missing)} backbone tensors "
                f"(first: {missing[:3]}); is the file for this architecture?"
            )
        model.load_state_dict(usable, strict=False)
    if out_dim is None:
        was = model.training
        model.eval()
        with torch.no_grad():
            try:
                y = model(torch.zeros(2, in_chans, 64, 64))
            except RuntimeError:  # e.g. vision transformers need their native size
                y = model(torch.zeros(2, in_chans, 224, 224))
        model.train(was)
        out_dim = y.flatten(1).shape[1] if y.ndim != 4 else y.shape[1]
    return TorchvisionBackbone(model, out_dim, name)


def _load_own(module: nn.Module, pretrained) -> nn.Module:
    if pretrained is True:
        raise ValueError(
            f"{type(module).__name__} has no published weights; pass pretrained=PATH to a state dict "
            "saved from it (e.g. a run's best.pt), or pretrained=False"
        )
    if pretrained:
        state = _read_state_dict(pretrained)
        # Accept a full HybridNet / ModuleBackbone checkpoint too: keep the backbone's part.
        for prefix in ("backbone.", "module."):
            state = _under_prefix(state, prefix)
        module.load_state_dict(state)
    return module


def small_cnn(in_chans: int = 1, pretrained=False, width: int = 16) -> SmallCNN:
    """Build :class:`SmallCNN` (``out_dim = 8·width``)."""
    return _load_own(SmallCNN(in_chans, width), pretrained)


def autoencoder(in_chans: int = 1, pretrained=False, width: int = 32, latent: int = 128) -> ConvAutoencoder:
    """Build :class:`ConvAutoencoder`; ψ is its encoder (``out_dim = latent``)."""
    return _load_own(ConvAutoencoder(in_chans, width, latent), pretrained)


def resnet18(in_chans: int = 1, pretrained=False, **kwargs) -> nn.Module:
    """torchvision ResNet-18 without ``fc`` (``out_dim = 512``)."""
    return torchvision_backbone("resnet18", in_chans, pretrained, **kwargs)


def resnet50(in_chans: int = 1, pretrained=False, **kwargs) -> nn.Module:
    """torchvision ResNet-50 without ``fc`` (``out_dim = 2048``)."""
    return torchvision_backbone("resnet50", in_chans, pretrained, **kwargs)


def vgg16(in_chans: int = 1, pretrained=False, **kwargs) -> nn.Module:
    """torchvision VGG-16 convolutions + global average pooling (``out_dim = 512``).

    The 4096-d fully connected layers are dropped. The plain architecture (no batch norm) matches
    the paper and torchvision's weights; ``vgg16_bn`` is available by name for training from
    scratch.
    """
    return torchvision_backbone("vgg16", in_chans, pretrained, **kwargs)


# --------------------------------------------------------------------------------------------
# The hybrid network
# --------------------------------------------------------------------------------------------
class HybridNet(nn.Module):
    """f = head ∘ ψ: a backbone followed by dropout and a linear classifier.

    Parameters
    ----------
    backbone : nn.Module
        Feature extractor with ``out_dim``.
    n_outputs : int
        Classes (softmax / cross-entropy) or labels (sigmoid / BCE, multi-label).
    dropout : float, default=0.2
        Dropout before the linear layer (the paper's 0.2).

    ``features(x)`` returns ψ(x) of shape ``(B, out_dim)``; ``forward(x)`` the logits
    ``(B, n_outputs)`` (``forward(x, with_features=True)``: both, from one pass, for training losses on ψ);
    ``infer(x, views)`` both, averaged over test-time views.
    """

    def __init__(self, backbone: nn.Module, n_outputs: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.out_dim, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor, with_features: bool = False):
        z = self.backbone(x)
        logits = self.head(self.dropout(z))
        return (logits, z) if with_features else logits

    def infer(self, x: torch.Tensor, views=((0, False),)) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, n_outputs), ψ(x) (B, out_dim))``, each the mean over ``views``
        (:func:`graphzoo.data.torchdata.tta_views`; the default is the image as it is). Call in
        eval mode: the mean logit is then the logit of the mean feature (the head is linear)."""
        from ..data.torchdata import apply_view

        z = torch.stack([self.backbone(apply_view(x, v)) for v in views]).mean(0)
        return self.head(self.dropout(z)), z
