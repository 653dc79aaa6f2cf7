"""Torch side of the data: images as one in-memory uint8 tensor, normalisation, augmentation.

The sets used here fit in memory many times over (all 27,558 malaria cells at 50×50 are 69 MB as
uint8), so instead of a per-image ``DataLoader`` pipeline the images are stored once as a
``(N, C, H, W)`` uint8 tensor and every batch is cut from it by indexing, converted to float,
normalised and augmented as one tensor operation. This keeps the data side far cheaper than the
network on a CPU (see ``bench/train_bench.py``).

* :func:`to_image_tensor` turns an :class:`~graphzoo.data.types.ImageSet`'s images (an array or a
  list of differently sized arrays, gray or RGB) into that tensor, resizing and converting
  gray ↔ RGB.
* :class:`Normalizer` holds per-channel mean / std measured on the training images only.
* :class:`Augment` draws random flips, small rotations, scalings (crops) and shifts for a whole
  batch at once and applies them with one ``grid_sample``.
* :func:`image_store` gives that tensor, or for a set over the memory budget (read lazily,
  :mod:`graphzoo.data.store`) a :class:`LazyImages`, which decodes the images a batch indexes (the
  same pixels, bit for bit) through a bounded cache: ``images[idx]`` works on both.
* :class:`ImageTensorDataset` is a standard ``torch.utils.data.Dataset`` over the same tensor for
  code that wants one.
"""

from __future__ import annotations

import math
import mmap
import os
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["to_image_tensor", "image_store", "LazyImages", "Normalizer", "Augment", "ImageTensorDataset", "tta_views",
           "apply_view"]

# ITU-R 601 luma weights, the same as PIL's "L" conversion.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _convert_channels(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """(B, C, H, W) uint8/float → (B, in_chans, H, W): gray → RGB by repetition, RGB → gray by luma."""
    c = x.shape[1]
    if c == in_chans:
        return x
    if c == 4:  # RGBA: drop alpha (the sets here have an opaque one)
        x, c = x[:, :3], 3
        if in_chans == 3:
            return x
    if c == 1 and in_chans == 3:
        return x.expand(-1, 3, -1, -1)
    if c == 3 and in_chans == 1:
        gray = (x.float() * _LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True)
        return gray.round().clamp(0, 255).to(x.dtype) if x.dtype == torch.uint8 else gray
    raise ValueError(f"cannot convert {c}-channel images to {in_chans} channels; use in_chans 1 or 3")


def _as_nchw(a, single: bool = False) -> torch.Tensor:
    """uint8 array → (N, C, H, W) tensor. A stack is (N, H, W) or (N, H, W, C); a ``single``
    image (a list element) is (H, W) or (H, W, C)."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {a.dtype}; rescale them to 0..255 first")
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # torch.from_numpy warns on read-only (e.g. cached, memory-mapped) arrays
        a = a.copy()
    t = torch.from_numpy(a)
    if single:
        t = t[None]
    if t.ndim == 3:
        return t[:, None]
    if t.ndim == 4:
        return t.permute(0, 3, 1, 2)
    raise ValueError(f"images must have shape (N, H, W) or (N, H, W, C), got {tuple(a.shape)}")


def _resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    # Antialiased bilinear, like PIL's area-style downsampling used to build the npz files.
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round().clamp(0, 255).to(torch.uint8)


def to_image_tensor(images, size: int | None = None, in_chans: int | None = None, chunk: int = 2048) -> torch.Tensor:
    """Stack images into one uint8 tensor of shape (N, C, size, size).

    Parameters
    ----------
    images : ndarray (N, H, W) or (N, H, W, C) uint8, or list of (H, W[, C]) uint8 arrays
        As in :attr:`graphzoo.data.types.ImageSet.images`. Lists may mix sizes.
    size : int, optional
        Side of the square output; default the input's size (then all images must share it).
    in_chans : {1, 3}, optional
        Output channels; default the input's.
    chunk : int
        Images resized per step, bounding the float32 working memory.

    Returns
    -------
    Tensor of uint8, shape (N, C, size, size)
    """
    if isinstance(images, (list, tuple)):
        parts = [_as_nchw(a, single=True) for a in images]
        sizes = {tuple(p.shape[-2:]) for p in parts}
        if size is None and len(sizes) > 1:
            raise ValueError(f"images have {len(sizes)} different sizes; give image_size to resize them")
        chans = in_chans or (max(min(p.shape[1], 3) for p in parts) if parts else 1)
        out = [_resize_uint8(_convert_channels(p, chans), size or p.shape[-1]) for p in parts]
        return torch.cat(out) if out else torch.zeros(0, chans, size or 1, size or 1, dtype=torch.uint8)
    x = _as_nchw(images)
    chans = in_chans or (3 if x.shape[1] == 4 else x.shape[1])
    if size is None and x.shape[-2] != x.shape[-1]:
        size = max(x.shape[-2:])
    target = size or x.shape[-1]
    if x.shape[1] == chans and x.shape[-2:] == (target, target):
        return x.contiguous()
    out = [_resize_uint8(_convert_channels(x[i : i + chunk], chans), target) for i in range(0, len(x), chunk)]
    return torch.cat(out).contiguous()


class Normalizer:
    """Per-channel standardisation ``(x / 255 − mean) / std`` with statistics from training images.

    Parameters
    ----------
    mean, std : sequence of float, one per channel, in [0, 1] units.
    """

    def __init__(self, mean, std) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3).view(1, -1, 1, 1)

    @classmethod
    def fit(cls, images: torch.Tensor, indices=None, chunk: int = 4096) -> "Normalizer":
        """Measure mean / std of ``images[indices]`` (uint8 (N, C, H, W), or :class:`LazyImages`), chunked
        in float64: at most ``chunk`` images and 512 MiB of float64 a step (all 4096 up to 128² gray, 73² RGB)."""
        idx = torch.arange(len(images)) if indices is None else torch.as_tensor(indices)
        chunk = max(1, min(chunk, 2**29 // (8 * math.prod(images.shape[1:]) or 1)))
        total = torch.zeros(images.shape[1], dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        count = 0
        for i in range(0, len(idx), chunk):
            x = images[idx[i : i + chunk]].double().div_(255.0)  # in place: one float64 copy of the chunk
            total += x.sum(dim=(0, 2, 3))
            total_sq += x.mul_(x).sum(dim=(0, 2, 3))
            count += x.shape[0] * x.shape[2] * x.shape[3]
            del x  # else the next chunk's float64 copy is made while this one is still held: two at the peak
        mean = total / max(count, 1)
        std = (total_sq / max(count, 1) - mean**2).clamp_min(0).sqrt()
        return cls(mean.float(), std.float())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) → normalised float32, on ``x``'s device."""
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.float() / 255.0 - mean) / std

    def state_dict(self) -> dict:
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normalizer":
        return cls(state["mean"], state["std"])


class Augment:
    """Random flips, small rotations, zoom-in crops and shifts for a whole batch at once.

    For each image one affine map is drawn: rotation ``θ ~ U(−degrees, degrees)``, scale
    ``s ~ U(1 − scale, 1)`` (a random crop of side ``s`` resized back), shift ``~ U(±translate)``
    of the half-width, and independent horizontal / vertical flips. All maps are applied by one
    ``affine_grid`` + ``grid_sample`` (bilinear, zero padding: apply it to raw intensities, before
    normalising, so that uncovered corners are black like the images' background). Randomness comes only from
    ``generator``, so a run is reproducible.

    Parameters
    ----------
    hflip, vflip : bool
    degrees : float
        Maximum absolute rotation.
    scale : float in [0, 1)
        Maximum zoom-in (0.1: crops of 90–100 % of the side).
    translate : float in [0, 1)
        Maximum shift as a fraction of the half-width.
    rot90 : bool
        Also apply a random number of exact quarter turns. With ``degrees = scale = translate = 0``
        no resampling happens at all (flips and quarter turns are index permutations).
    """

    def __init__(self, hflip: bool = True, vflip: bool = True, degrees: float = 10.0, scale: float = 0.1,
                 translate: float = 0.05, rot90: bool = False) -> None:
        if not 0 <= scale < 1 or not 0 <= translate < 1 or degrees < 0:
            raise ValueError("augmentation needs degrees >= 0, 0 <= scale < 1 and 0 <= translate < 1")
        self.hflip, self.vflip, self.degrees, self.scale, self.translate = hflip, vflip, degrees, scale, translate
        self.rot90 = rot90

    @property
    def resamples(self) -> bool:
        """Whether a draw interpolates (a free-angle turn, zoom or shift); flips and quarter turns only index."""
        return not (self.degrees == 0 and self.scale == 0 and self.translate == 0)

    def exact(self) -> "Augment":
        """The same flips and quarter turns, without the rotation, zoom and shift that resample."""
        return Augment(self.hflip, self.vflip, 0.0, 0.0, 0.0, self.rot90)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a float batch (B, C, H, W); draws 7 numbers per image from ``generator``."""
        b = x.shape[0]
        u = torch.rand(b, 7, generator=generator)  # drawn on CPU: identical streams on any device
        if self.rot90:
            # Exact quarter turns (no interpolation, so no blur): with the flips they give the 8
            # symmetries of the square, all label-preserving for orientation-free images (cells).
            k = (u[:, 6] * 4).long().clamp_(max=3)
            x = x.clone()
            for turns in (1, 2, 3):
                sel = torch.nonzero(k == turns).flatten().to(x.device)
                if len(sel):
                    x[sel] = torch.rot90(x[sel], turns, dims=(2, 3))
        if not self.resamples:
            # Flips only: index, no resampling.
            x = x if self.rot90 else x.clone()  # never modify the caller's tensor
            if self.hflip:
                sel = torch.nonzero(u[:, 2] < 0.5).flatten().to(x.device)
                x[sel] = x[sel].flip(3)
            if self.vflip:
                sel = torch.nonzero(u[:, 3] < 0.5).flatten().to(x.device)
                x[sel] = x[sel].flip(2)
            return x
        theta = (2 * u[:, 0] - 1) * math.radians(self.degrees)
        s = 1 - self.scale * u[:, 1]
        sx = torch.where(u[:, 2] < 0.5, -1.0, 1.0) if self.hflip else torch.ones(b)
        sy = torch.where(u[:, 3] < 0.5, -1.0, 1.0) if self.vflip else torch.ones(b)
        tx, ty = (2 * u[:, 4] - 1) * self.translate, (2 * u[:, 5] - 1) * self.translate
        cos, sin = torch.cos(theta) * s, torch.sin(theta) * s
        mat = torch.stack(
            [torch.stack([cos * sx, -sin * sy, tx], 1), torch.stack([sin * sx, cos * sy, ty], 1)], 1
        ).to(x.device, x.dtype)
        grid = F.affine_grid(mat, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def tta_views(hflip: bool, vflip: bool, rot90: bool) -> list[tuple[int, bool]]:
    """The exact symmetries :class:`Augment` draws from, as views for test-time averaging.

    A view ``(k, f)`` is: mirror left-right if ``f``, then ``k`` quarter turns
    (:func:`apply_view`). These are index permutations, so no view blurs the image. With ``rot90``
    and a flip they are the 8 symmetries of the square; without ``rot90``: the identity plus the
    flips that training used (``vflip`` is ``(2, True)``: a mirror then a half turn).
    """
    if rot90:
        return [(k, f) for f in ((False, True) if hflip or vflip else (False,)) for k in range(4)]
    views = [(0, False)]
    if hflip:
        views.append((0, True))
    if vflip:
        views.append((2, True))
    if hflip and vflip:
        views.append((2, False))
    return views


def apply_view(x: torch.Tensor, view: tuple[int, bool]) -> torch.Tensor:
    """Apply one :func:`tta_views` view to a batch (B, C, H, W)."""
    k, f = view
    if f:
        x = x.flip(3)
    return torch.rot90(x, k, dims=(2, 3)) if k else x


class ImageTensorDataset(Dataset):
    """A ``Dataset`` over an in-memory uint8 image tensor: items ``(image, target, index)``.

    Parameters
    ----------
    images : Tensor uint8 (N, C, H, W)
        From :func:`to_image_tensor`.
    targets : array-like (N,) or (N, L), optional
        Class indices (``-1`` = unlabelled) or multi-hot rows; zeros when absent.
    normalizer : Normalizer, optional
    indices : array-like of int, optional
        The subset of images this dataset exposes (default all).

    ``image`` is float32 (C, H, W), normalised when a normalizer is given, else in [0, 1].
    For fast training prefer cutting batches from the tensor directly (``images[batch_idx]``);
    this class exists for code that wants a ``DataLoader``.
    """

    def __init__(self, images: torch.Tensor, targets=None, normalizer: Normalizer | None = None, indices=None) -> None:
        self.images = images
        n = len(images)
        self.targets = torch.zeros(n, dtype=torch.long) if targets is None else torch.as_tensor(np.asarray(targets))
        self.normalizer = normalizer
        self.indices = torch.arange(n) if indices is None else torch.as_tensor(np.asarray(indices), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = int(self.indices[i])
        x = self.images[j : j + 1]
        x = self.normalizer(x)[0] if self.normalizer is not None else x[0].float() / 255.0
        return x, self.targets[j], j


def image_store(images, size: int | None = None, in_chans: int | None = None):
    """The images of a run: :func:`to_image_tensor` of an in-memory set, :class:`LazyImages` of a lazy one
    (an :class:`~graphzoo.data.store.ImageFiles` or a memory map, :mod:`graphzoo.data.store`)."""
    from .store import is_lazy

    if is_lazy(images):
        return LazyImages(images, size=size, in_chans=in_chans)
    return to_image_tensor(images, size=size, in_chans=in_chans)


def _cache_budget() -> int:
    """Bytes of decoded images a :class:`LazyImages` keeps: ``$GRAPHZOO_DECODE_CACHE_MB`` MiB (default 512)."""
    raw = os.environ.get("GRAPHZOO_DECODE_CACHE_MB", "")
    try:
        return int(float(raw) * 2**20) if raw else 512 * 2**20
    except ValueError:
        raise ValueError(f"GRAPHZOO_DECODE_CACHE_MB={raw!r} is not a number; set it to a size in MiB, "
                         "e.g. 512") from None


class LazyImages:
    """Images read from disk as they are indexed, in place of :func:`to_image_tensor`'s (N, C, H, W) tensor.

    ``images[idx]`` (an int, a slice, or an index array / tensor) gives the uint8 tensor the in-memory
    path would give for the same indices, bit for bit: each image is decoded, converted to ``C``
    channels and resized to ``H = W = size`` by the same functions. ``len``, ``shape`` and ``dtype``
    are the tensor's. Decoded (converted) images are kept in a least-recently-used cache of at most
    ``cache_bytes`` — one slab of ``capacity`` images whose slots are reused — so memory stays bounded
    however many images the set has.

    Parameters
    ----------
    source : ImageFiles, or uint8 ndarray (N, H, W[, C]) (a memory map)
    size, in_chans : as in :func:`to_image_tensor`. Without them, the first image decides (its
        channels, and its larger side), and an image that would need another choice raises a
        ``ValueError`` naming it and the option to set (the in-memory path looks at all images first).
    cache_bytes : int, optional
        Default ``$GRAPHZOO_DECODE_CACHE_MB`` MiB (512).
    """

    dtype = torch.uint8

    def __init__(self, source, size: int | None = None, in_chans: int | None = None,
                 cache_bytes: int | None = None) -> None:
        self.source = source
        first = _as_nchw(self._raw([0])[0], single=True) if len(source) else torch.zeros(0, 1, 1, 1)
        c = first.shape[1]
        self.chans = in_chans or (3 if c == 4 else c)
        self.first_hw = tuple(first.shape[-2:])
        self.side = size or max(self.first_hw)
        self.size_given, self.chans_given = size is not None, in_chans is not None
        self.shape = torch.Size((len(source), self.chans, self.side, self.side))
        per_image = self.chans * self.side * self.side
        budget = _cache_budget() if cache_bytes is None else cache_bytes
        self.capacity = max(1, min(budget // per_image, len(source)))
        # The cache's images live in one slab (capacity, C, side, side), allocated on first use: a new image
        # is copied into the slot of the one it evicts. One tensor per cached image instead made the cache
        # churn the allocator (each decoded buffer freed in whichever thread's arena decoded it), and the
        # freed holes kept the process's resident memory rising with the images read, past the cache's size.
        self._slab: torch.Tensor | None = None
        self._cache: OrderedDict[int, int] = OrderedDict()  # image index -> slot, least recently used first

    def __len__(self) -> int:
        return len(self.source)

    def __getstate__(self) -> dict:  # a copy for another process (a DataLoader worker) starts with an empty cache
        return {**self.__dict__, "_slab": None, "_cache": OrderedDict()}

    def _raw(self, idx: list[int]) -> list[np.ndarray]:
        if isinstance(self.source, np.ndarray):
            rows = np.array(self.source[np.asarray(idx, dtype=np.int64)])  # a copy: the map's pages can go
            mm = getattr(self.source, "_mmap", None)  # np.memmap's (and its views') mmap.mmap
            if mm is not None and hasattr(mm, "madvise"):
                # Pages read through a map count as this process's resident memory until it lets them go:
                # drop them (they stay in the page cache), or a pass over a 5.6 GB file shows 5.6 GB resident.
                mm.madvise(mmap.MADV_DONTNEED)
            return list(rows)
        return self.source.decode(idx)

    def _name(self, i: int) -> str:
        return self.source.paths[i] if hasattr(self.source, "paths") else f"image {i}"

    def _convert(self, i: int, raw: np.ndarray) -> torch.Tensor:
        """One decoded image -> (C, side, side) uint8, as :func:`to_image_tensor` converts it."""
        x = _as_nchw(raw, single=True)
        if not self.size_given and tuple(x.shape[-2:]) != self.first_hw:
            raise ValueError(f"{self._name(i)} is {x.shape[-2]}x{x.shape[-1]} but the first image is "
                             f"{self.first_hw[0]}x{self.first_hw[1]}; set image_size to resize them all to one size")
        if not self.chans_given and min(x.shape[1], 3) > self.chans:
            raise ValueError(f"{self._name(i)} is a colour image but the first image is gray; set in_chans "
                             "(3 keeps colour, 1 converts to gray) so that every image gets the same channels")
        return _resize_uint8(_convert_channels(x, self.chans), self.side)[0]

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, (int, np.integer)):
            return self[[int(idx)]][0]
        if isinstance(idx, slice):
            idx = range(*idx.indices(len(self)))
        order = [int(i) for i in (idx.tolist() if hasattr(idx, "tolist") else idx)]
        n = len(self)
        order = [i + n if i < 0 else i for i in order]
        missing = list(dict.fromkeys(i for i in order if i not in self._cache))
        out_of_range = [i for i in missing if not 0 <= i < n]
        if out_of_range:
            raise IndexError(f"index {out_of_range[0]} is out of range for {n} images")
        out = torch.empty((len(order), *self.shape[1:]), dtype=torch.uint8)
        where = {i: [] for i in missing}
        for j, i in enumerate(order):
            if i in where:
                where[i].append(j)
            else:
                out[j] = self._slab[self._cache[i]]
                self._cache.move_to_end(i)
        for i, raw in zip(missing, self._raw(missing)):
            out[where[i]] = self._convert(i, raw)  # the decoded buffer is dropped here, after one copy
        for i in missing[-self.capacity:]:  # cached after use, so a batch larger than the cache still works
            self._store(i, out[where[i][0]])
        return out

    def _store(self, i: int, image: torch.Tensor) -> None:
        """Put image ``i`` in the cache, in the slot of the least recently used image once it is full."""
        if self._slab is None:
            self._slab = torch.empty((self.capacity, *self.shape[1:]), dtype=torch.uint8)
        if len(self._cache) < self.capacity:
            slot = len(self._cache)
        else:
            _, slot = self._cache.popitem(last=False)
        self._slab[slot] = image
        self._cache[i] = slot
