"""A run's images on their way to the network: read (ahead, in a background thread), moved to the device,
augmented and normalised.

:func:`read_ahead` yields the uint8 images of each batch of indices, the next batch read while the caller
computes on this one; :func:`to_network` turns them into the normalised float batch the network takes.
:meth:`.Trainer.read_ahead` and :meth:`.Trainer.batch` call them with the run's images, device,
normaliser and augmentation.
"""

from __future__ import annotations

from typing import Iterator

import torch

__all__ = ["read", "read_ahead", "to_network"]


def read(images, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``images[idx]`` on the host (decoded, for a lazily read set); pinned when they go to a GPU."""
    x = images[idx]
    return x.pin_memory() if device.type == "cuda" else x


def read_ahead(images, index_batches: list[torch.Tensor], device: torch.device
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(idx, images[idx])`` for each batch ``idx`` of ``index_batches``, the next batch read in a
    background thread while the caller computes on this one.

    Reading is the data side's cost where images are decoded from disk (a lazily read set) or copied to a
    GPU through pinned memory; an in-memory set on the CPU is read in place (a gather costs less than the
    hand-over). Only that thread touches the images while the loop runs, in the loop's order, so the
    batches are those of a plain loop."""
    if isinstance(images, torch.Tensor) and device.type != "cuda":
        for b in index_batches:
            yield b, images[b]
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="graphzoo-read") as pool:
        ahead = pool.submit(read, images, index_batches[0], device) if len(index_batches) else None
        for i, b in enumerate(index_batches):
            x = ahead.result()
            if i + 1 < len(index_batches):
                ahead = pool.submit(read, images, index_batches[i + 1], device)
            yield b, x


def to_network(x: torch.Tensor, device: torch.device, normalizer, augment=None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """The uint8 images ``x`` (B, C, H, W) as the network's normalised float batch on ``device``; augmented by
    ``augment`` (an :class:`~graphzoo.data.torchdata.Augment`) when it and a generator are given.

    On CUDA the batch comes from pinned memory (:func:`read`), so its copy overlaps the GPU's work, and is
    channels-last like the network."""
    if device.type == "cuda":
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    else:
        x = x.to(device)
    if augment is not None and generator is not None:
        # Augment before normalising, so that the area a rotation or shift uncovers is filled
        # with black (the background of cells, X-rays, mammograms), not with the mean gray.
        x = augment(x.float(), generator).clamp_(0, 255)
    return normalizer(x)
