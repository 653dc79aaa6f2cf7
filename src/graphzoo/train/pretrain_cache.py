"""Pretrained encoders built once, stored under a key, reused by every run that asks for the same one.

An entry lives in ``<cache>/<method>-<h>/`` (``<cache>`` is ``pretrain_dir``, by default
``<out>/.pretrained``), ``h`` a hash of its key: the data source (path, image shape), the SHA-1 of
the *training split's* indices, the method, its resolved settings (:func:`graphzoo.selfsup.resolve_settings`,
epochs included), the backbone, and the flips / quarter turns its views may use (the run's own ``hflip`` /
``vflip`` / ``rot90``: :func:`view_symmetries`). The entry's ``meta.json`` also stores the SHA-1 of the
training images themselves: an entry whose images differ (the file was rewritten in place) is reported and
rebuilt, never reused. Labels are not part of the key: pretraining ignores them, so adding labels
(``--init-from``) reuses the encoder as long as the split stays.

Files of an entry: ``last.pt`` (safe checkpoint after every epoch: backbone, head, optimiser, epoch,
history; a killed pretraining continues from it), ``encoder.pt`` (ψ's weights, written once training
ended healthy) and ``meta.json`` (key, history, time, peak memory, feature health).

Only training images are seen (``split == "train"``, labelled or not): never validation or test images.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

try:
    import resource  # peak memory (POSIX)
except ImportError:  # pragma: no cover - Windows
    resource = None

from .. import progress
from ..selfsup.views import ViewMaker
from .checkpoints import load_checkpoint, save_checkpoint
from ..selfsup.methods import PRETRAINING, resolve_settings
from ..selfsup.losses import check_not_collapsed, representation_health

__all__ = ["PretrainResult", "ensure_pretrained", "pretrain_request", "cache_dir", "encoder_health",
           "start_from_pretrained", "images_sha1", "view_symmetries"]

#: Training images whose ψ the health check measures (fixed: the first ones of a seeded permutation).
HEALTH_IMAGES = 1024


@dataclass
class PretrainResult:
    """What :func:`ensure_pretrained` gives: the entry's folder, its ``encoder.pt``, whether this call
    trained (``epochs_trained`` epochs; 0 on a cache hit) and the entry's ``meta``."""

    folder: Path
    encoder: Path
    epochs_trained: int
    meta: dict


def cache_dir(cfg) -> Path:
    return Path(cfg.pretrain_dir) if cfg.pretrain_dir else Path(cfg.out) / ".pretrained"


def images_sha1(images: torch.Tensor, idx: np.ndarray) -> str:
    """SHA-1 of the training images' bytes (the only input pretraining reads)."""
    h = hashlib.sha1()
    for i in range(0, len(idx), 4096):
        h.update(images[torch.as_tensor(idx[i:i + 4096])].numpy().tobytes())
    return h.hexdigest()


def pretrain_request(cfg, data, idx_train: np.ndarray) -> dict:
    """The key of the encoder ``cfg`` asks for on ``data`` (plain values; see the module docstring)."""
    settings = resolve_settings(cfg.pretrain, cfg.pretrain_params, cfg.pretrain_epochs)
    source = str(Path(cfg.data).resolve()) if cfg.data else "<in memory>"
    key = {"method": cfg.pretrain, "settings": settings, "backbone": cfg.backbone,
           "backbone_kwargs": dict(sorted(cfg.backbone_kwargs.items())), "source": source,
           "image_shape": list(data.images.shape[1:]), "n_train": int(len(idx_train)),
           "train_indices_sha1": hashlib.sha1(np.asarray(idx_train, dtype=np.int64).tobytes()).hexdigest()}
    # How the file is read (e.g. MIAS patches of another size) names another encoder. Only when set, so the
    # keys of encoders cached before these settings existed stay the same.
    if cfg.data_format:
        key["data_format"] = cfg.data_format
    if cfg.reader_options:
        key["reader_options"] = dict(sorted(cfg.reader_options.items()))
    # The views use the symmetries the run declares for its data (view_symmetries); recorded only when one is
    # off, for the same reason: views with all of them are what every encoder cached before had.
    symmetries = view_symmetries(cfg)
    if PRETRAINING.get(cfg.pretrain).uses_views and not all(symmetries.values()):
        key["view_symmetries"] = symmetries
    return key


def view_symmetries(cfg) -> dict:
    """The flips and quarter turns the run's data allows (its ``hflip``, ``vflip``, ``rot90``), which its
    pretraining views use: a symmetry the supervised augmentation leaves out because it changes what an
    image shows (a mirrored chest X-ray) is not one the encoder should learn to ignore either."""
    return {"hflip": bool(cfg.hflip), "vflip": bool(cfg.vflip), "rot90": bool(cfg.rot90)}


def _entry(cfg, key: dict) -> Path:
    h = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir(cfg) / f"{key['method']}-{h}"


@torch.no_grad()
def encoder_health(backbone, images: torch.Tensor, idx: np.ndarray, normalizer, device, seed: int = 0) -> dict:
    """:func:`graphzoo.selfsup.representation_health` of ψ over :data:`HEALTH_IMAGES` training images (eval mode),
    with the feature dimension; BatchNorm statistics are first recomputed over those images
    (un-augmented), since the running averages of training followed augmented views."""
    order = torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))[:HEALTH_IMAGES]
    sub = torch.as_tensor(idx)[order]
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below ("precise BN")
    backbone.train()
    for b in sub.split(256):
        backbone(normalizer(images[b].to(device)))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    backbone.eval()
    feats = torch.cat([backbone(normalizer(images[b].to(device))).float().cpu() for b in sub.split(256)])
    backbone.train()
    return {**representation_health(feats), "dim": int(feats.shape[1])}


def _new_backbone(cfg, in_chans: int):
    from ..models import create_backbone

    return create_backbone(cfg.backbone, in_chans=in_chans, pretrained=False, **cfg.backbone_kwargs)


def _read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def ensure_pretrained(cfg, data, idx_train: np.ndarray, normalizer, device=torch.device("cpu"), *,
                      stop_after_epochs: int | None = None) -> PretrainResult:
    """The encoder ``cfg.pretrain`` asks for: read from the cache, or trained (and stored) now.

    Raises ``ValueError`` when the training split is smaller than one batch,
    :class:`graphzoo.selfsup.CollapsedRepresentationError` when the trained features collapsed, and
    :class:`.trainer.TrainingInterrupted` after ``stop_after_epochs`` epochs (a test hook standing
    for a kill).
    """
    key = pretrain_request(cfg, data, idx_train)
    folder = _entry(cfg, key)
    sha = images_sha1(data.images, idx_train)
    meta = _read_meta(folder)
    def say(msg: str, always: bool = False) -> None:
        progress.say(msg, cfg.progress or always)  # a stale entry is said even without progress lines

    if meta is not None and meta.get("images_sha1") != sha:
        say(f"pretrain: the cached encoder {folder} was built from other training images (the data changed "
            "since); discarding it and pretraining again", always=True)
        shutil.rmtree(folder)
        meta = None
    if meta is not None and meta.get("done") and (folder / "encoder.pt").is_file():
        say(f"pretrain: reusing {cfg.pretrain} encoder {folder} ({key['settings']['epochs']} epochs, "
            f"{meta.get('time_s', 0):.0f} s when built)")
        return PretrainResult(folder, folder / "encoder.pt", 0, meta)
    n, bs = len(idx_train), key["settings"]["batch_size"]
    if n < bs:
        raise ValueError(f"pretraining {cfg.pretrain} needs at least one batch of batch_size={bs} training images, "
                         f"but the training split has {n}; lower it (--set pretrain_params='{{batch_size: "
                         f"{max(2, 2 ** int(np.log2(max(n, 2))))}}}') or run without --pretrain")
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"key": key, "images_sha1": sha, "done": False}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    # Its own RNG stream: the encoder does not depend on who asked first (a run, a grid cell, graphzoo
    # pretrain), and the asking run's dropout draws are the same whether the cache hit or missed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(meta["key"]["settings"]["seed"])
        return _train(cfg, data, idx_train, normalizer, device, folder, meta, stop_after_epochs)


def _train(cfg, data, idx_train, normalizer, device, folder: Path, meta: dict, stop_after) -> PretrainResult:
    """Pretrain (continuing ``last.pt`` if there), check health, write ``encoder.pt`` and ``meta.json``."""
    from .trainer import TrainingInterrupted

    s = meta["key"]["settings"]
    method = PRETRAINING.get(cfg.pretrain)
    backbone = _new_backbone(cfg, data.images.shape[1]).to(device)
    head = method.head(backbone, s).to(device)
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=s["lr"], weight_decay=s["weight_decay"])
    state = {"epoch": 0, "history": [], "time_s": 0.0}
    last = folder / "last.pt"
    if last.is_file():
        ck = load_checkpoint(last, map_location=device)
        backbone.load_state_dict(ck["backbone"])
        head.load_state_dict(ck["head"])
        opt.load_state_dict(ck["optimizer"])
        state = ck["state"]
        progress.say(f"pretrain: continuing {folder} after epoch {state['epoch']}", cfg.progress)
    views = ViewMaker.from_settings(s, **view_symmetries(cfg)) if method.uses_views else None
    idx = torch.as_tensor(idx_train, dtype=torch.long)
    steps, epochs = len(idx) // s["batch_size"], s["epochs"]  # full batches only: equal negatives per step
    t0, trained = time.perf_counter(), 0
    for epoch in range(state["epoch"], epochs):
        if stop_after is not None and trained >= stop_after:
            raise TrainingInterrupted(epoch)
        g = torch.Generator().manual_seed(s["seed"] * 1_000_003 + epoch)
        order = idx[torch.randperm(len(idx), generator=g)][: steps * s["batch_size"]].view(steps, -1)
        total, bar = 0.0, progress.bar(steps, f"pretrain {cfg.pretrain} epoch {epoch + 1}/{epochs}", cfg.progress)
        for step, b in enumerate(order):
            for group in opt.param_groups:  # cosine annealing to 0 over all steps
                group["lr"] = s["lr"] * 0.5 * (1 + np.cos(np.pi * (epoch * steps + step) / (epochs * steps)))
            loss = method.loss(backbone, head, data.images[b].to(device).float(), views, normalizer, g, s)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pretraining loss became {loss.item()} at epoch {epoch + 1}, step {step}; "
                                         f"lower its lr (--set pretrain_params='{{lr: {s['lr'] / 10:g}}}')")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        health = encoder_health(backbone, data.images, idx_train, normalizer, device)
        trained += 1
        state["epoch"] = epoch + 1
        state["time_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        state["history"].append({"epoch": epoch + 1, "loss": total / steps, **health})
        save_checkpoint({"backbone": backbone.state_dict(), "head": head.state_dict(),
                         "optimizer": opt.state_dict(), "state": state}, last)
        progress.say(f"pretrain {cfg.pretrain} epoch {epoch + 1}/{epochs}: loss {total / steps:.4f}, feature std "
                     f"{health['std']:.3f}, effective rank {health['effective_rank']:.1f}/{health['dim']} "
                     f"({state['time_s']:.0f} s so far)", cfg.progress)
        check_not_collapsed(health, f"the {cfg.pretrain} encoder after epoch {epoch + 1} ({folder})")
    save_checkpoint(backbone.state_dict(), folder / "encoder.pt")
    peak = None if resource is None else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    meta.update(done=True, time_s=round(state["time_s"], 1), peak_rss_mb=peak, history=state["history"])
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))
    last.unlink(missing_ok=True)  # the optimiser state is not needed once the encoder is written
    return PretrainResult(folder, folder / "encoder.pt", trained, meta)


def start_from_pretrained(trainer) -> None:
    """A new run with ``pretrain`` set starts ψ from the cached encoder (built now if missing), after
    checking its features over this run's training images are not collapsed. ``pretrained`` (explicit
    weights, a warm start from a run) takes precedence: those weights already descend from it."""
    cfg = trainer.cfg
    if not cfg.pretrain or cfg.pretrained:
        return
    d = trainer.data
    result = ensure_pretrained(cfg, d, trainer.idx_train, trainer.normalizer, trainer.device)
    backbone = trainer.model.backbone
    backbone.load_state_dict(load_checkpoint(result.encoder, map_location=trainer.device))
    health = encoder_health(backbone, d.images, trainer.idx_train, trainer.normalizer, trainer.device)
    check_not_collapsed(health, f"the {cfg.pretrain} encoder {result.folder}")
    # in the loop state: saved with every checkpoint, so a resumed run still reports it in metrics.json
    trainer.state["pretrain"] = {"method": cfg.pretrain, "auto": trainer.pretrain_auto,
                                 "folder": str(result.folder), "freeze": cfg.pretrain_freeze,
                                 "built_now": result.epochs_trained > 0, "time_s": result.meta.get("time_s"),
                                 "peak_rss_mb": result.meta.get("peak_rss_mb"), **health}


def freeze_backbone(model) -> None:
    """``pretrain_freeze``: ψ's weights stop learning (no gradient) and its BatchNorm running statistics
    stop moving (momentum 0; ``precise_bn`` may still recompute them), so only the head trains."""
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    for m in model.backbone.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
