"""Mixed precision (``cfg.amp``): the autocast dtype a run computes in, its context, and the fp16 loss scaler.

:func:`amp_dtype` turns the setting into a dtype (None: full float32), :func:`autocast` wraps a forward
pass in it, :func:`grad_scaler` gives the :class:`torch.amp.GradScaler` fp16 needs (None otherwise).
The training step (:mod:`.train_step`) and inference (:mod:`.inference`) use them through the :class:`.Trainer`.
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["amp_dtype", "autocast", "grad_scaler"]


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``amp`` ("auto", "bf16", "fp16", "off") on ``device``; None: full float32.

    "auto" is bf16 on a CUDA GPU that supports it (same exponent range as float32: no loss scaling),
    fp16 on an older one (with a gradient scaler, :func:`grad_scaler`), and off elsewhere. Off on a CPU
    because its speed depends on the CPU: with AVX-512 BF16 (this project's 2-core AMD EPYC) bf16 trained
    small_cnn at 50 px 1.7× faster (``bench/gpu_bench.py --device cpu``), without it autocast emulates bf16
    and is slower; and a default that changes the numbers from one CPU to another would break
    reproducibility. ``amp=bf16`` turns it on."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ValueError(f"amp='fp16' needs a CUDA device (this run is on {device}); use amp='bf16' or 'off'")
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def grad_scaler(dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """The loss scaler of a run computing in ``dtype``: fp16's narrow range underflows small gradients, so its
    loss is scaled (bf16 and float32 need no scaler: None)."""
    return torch.amp.GradScaler("cuda") if dtype == torch.float16 else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision in ``dtype`` for a forward pass on ``device``; a no-op context in float32 (``dtype`` None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
