"""Random views of small grey medical images for self-supervised pretraining, batched in torch.

:class:`ViewMaker` turns a batch of raw intensities (float, 0–255, shape ``(B, C, H, W)``) into one
random *view* of each image, all images at once, every random number drawn from a
``torch.Generator`` (so a pretraining epoch is reproducible and resumable). A view is, in order:

1. a random resized crop: area share ``a ~ U(crop_min, 1)``, aspect ratio ``r ~ logU(1/aspect, aspect)``,
   side lengths ``(√(a r), √(a / r))`` of the image's (clipped to 1), placed uniformly inside the
   image and resized back by bilinear sampling. ``crop_min`` is mild by default (0.6): a cell is
   centred and fills the image, and an aggressive crop (SimCLR's 0.08 on ImageNet) cuts away the few
   dark pixels of a parasite, so the two views of one cell would no longer share its class;
2. a horizontal and a vertical flip, each with probability ½, and ``k ~ U{0..3}`` exact quarter
   turns (cells have no orientation: the 8 symmetries of the square are label-preserving). Each of
   the three can be switched off (``hflip``, ``vflip``, ``rot90``): a run passes its own, so the views
   use only the symmetries its data has (a mirrored chest X-ray is not a normal chest — the heart is
   on the left — and a film is not read upside down);
3. with probability ``blur_p``, a Gaussian blur of standard deviation ``σ ~ U(0.1, blur_sigma)`` px
   (5×5 kernel, reflect padding);
4. brightness and contrast: ``x ← (x − m) · c + m · b`` with ``m`` the image's mean, contrast
   ``c ~ U(1 − contrast, 1 + contrast)`` and brightness ``b ~ U(1 − brightness, 1 + brightness)``
   (multiplicative, so the black background of a cell stays black);
5. with probability ``noise_p``, additive Gaussian noise of standard deviation ``noise · 255``;

then clamped to [0, 255]. No colour jitter: the images are grey (one channel) or grey replicated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ViewMaker", "VIEW_SETTINGS"]

#: The settings of a :class:`ViewMaker` (keys a pretraining method's settings may carry).
VIEW_SETTINGS = ("crop_min", "aspect", "blur_p", "blur_sigma", "brightness", "contrast", "noise_p", "noise")


@dataclass(frozen=True)
class ViewMaker:
    """Random views of a batch (module docstring). Every probability and range is checked here."""

    crop_min: float = 0.6
    aspect: float = 4 / 3
    blur_p: float = 0.5
    blur_sigma: float = 1.0
    brightness: float = 0.25
    contrast: float = 0.25
    noise_p: float = 0.5
    noise: float = 0.03
    # The label-preserving symmetries of the data (not pretraining settings: a run's hflip / vflip / rot90).
    hflip: bool = True
    vflip: bool = True
    rot90: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.crop_min <= 1:
            raise ValueError(f"crop_min must lie in (0, 1] (share of the image's area a crop keeps), got "
                             f"{self.crop_min}")
        if self.aspect < 1:
            raise ValueError(f"aspect must be >= 1 (crops' aspect ratios lie in [1/aspect, aspect]), got {self.aspect}")
        for key in ("blur_p", "noise_p"):
            if not 0 <= getattr(self, key) <= 1:
                raise ValueError(f"{key} must be a probability in [0, 1], got {getattr(self, key)}")
        for key in ("brightness", "contrast"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"{key} must lie in [0, 1), got {getattr(self, key)}")
        if self.blur_sigma < 0.1 or self.noise < 0:
            raise ValueError(f"blur_sigma must be >= 0.1 px and noise >= 0, got {self.blur_sigma}, {self.noise}")

    @classmethod
    def from_settings(cls, settings: dict, **symmetries: bool) -> "ViewMaker":
        """The views of a method's resolved ``settings``, with the data's ``hflip`` / ``vflip`` / ``rot90``."""
        return cls(**{k: float(settings[k]) for k in VIEW_SETTINGS if k in settings}, **symmetries)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One view of each image of ``x`` (float (B, C, H, W), 0–255); same shape, in [0, 255]."""
        b = x.shape[0]
        u = torch.rand(b, 12, generator=generator)  # on the CPU: the same stream on any device
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        x = self._crop_flip(x, u)
        x = x.clone()
        turns = (u[:, 6] * 4).long().clamp_(max=3) * int(self.rot90)  # all 0 without quarter turns
        for k in (1, 2, 3):
            sel = torch.nonzero(turns == k).flatten().to(x.device)
            if len(sel):
                x[sel] = torch.rot90(x[sel], k, dims=(2, 3))
        x = self._blur(x, u[:, 7] < self.blur_p, 0.1 + (self.blur_sigma - 0.1) * u[:, 8])
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        c = (1 + self.contrast * (2 * u[:, 9] - 1)).view(b, 1, 1, 1).to(x.device, x.dtype)
        bright = (1 + self.brightness * (2 * u[:, 10] - 1)).view(b, 1, 1, 1).to(x.device, x.dtype)
        x = (x - mean) * c + mean * bright
        on = (u[:, 11] < self.noise_p).view(b, 1, 1, 1).to(x.device, x.dtype)
        x = x + on * noise * (self.noise * 255.0)
        return x.clamp_(0, 255)

    def _crop_flip(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Random resized crop and flips as one affine map per image (bilinear, inside the image)."""
        b = x.shape[0]
        area = self.crop_min + (1 - self.crop_min) * u[:, 0]
        ratio = torch.exp((2 * u[:, 1] - 1) * math.log(self.aspect))
        sx = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width / image width
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (2 * u[:, 2] - 1) * (1 - sx)  # the crop's centre, in [-1, 1] units, keeps it inside
        ty = (2 * u[:, 3] - 1) * (1 - sy)
        fx = torch.where((u[:, 4] < 0.5) & self.hflip, -1.0, 1.0)
        fy = torch.where((u[:, 5] < 0.5) & self.vflip, -1.0, 1.0)
        zero = torch.zeros(b)
        mat = torch.stack([torch.stack([sx * fx, zero, tx], 1), torch.stack([zero, sy * fy, ty], 1)], 1)
        grid = F.affine_grid(mat.to(x.device, x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    @staticmethod
    def _blur(x: torch.Tensor, on: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Gaussian blur of the images where ``on``, each with its own σ (a 5×5 separable kernel,
        applied as one grouped convolution over the batch)."""
        sel = torch.nonzero(on).flatten()
        if not len(sel):
            return x
        b, c, h, w = x.shape
        t = torch.arange(-2, 3, dtype=torch.float32)
        k1 = torch.exp(-t.view(1, -1) ** 2 / (2 * sigma[sel].view(-1, 1) ** 2))
        k1 = k1 / k1.sum(1, keepdim=True)  # (S, 5)
        k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, 0)[:, None]  # (S·C, 1, 5, 5)
        sub = x[sel.to(x.device)].reshape(1, len(sel) * c, h, w)
        sub = F.conv2d(F.pad(sub, (2, 2, 2, 2), mode="reflect"), k2.to(x.device, x.dtype), groups=len(sel) * c)
        x[sel.to(x.device)] = sub.reshape(len(sel), c, h, w)
        return x
