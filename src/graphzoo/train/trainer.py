"""`Trainer`: the pieces both modes share — the run folder, data, model, the epoch loop, validation,
checkpoints — and the public face of the parts it delegates, each a module of its own: :mod:`.batches`,
:mod:`.train_step`, :mod:`.precision`, :mod:`.inference`, :mod:`.rng_state`, :mod:`.split_files` (one line
each in :mod:`graphzoo.train`).

A mode (:mod:`.one_pass`, :mod:`.dynamic_pass`) is a short function that calls
:meth:`Trainer.phase` once per phase with the function that trains one epoch of it::

    trainer.phase("supervised", cfg.epochs, supervised_epoch, early_stopping=True)

Every epoch ends with a checkpoint holding the model, optimiser, loop state, RNG states and
pseudo-labels, so a killed run continues exactly where its last epoch ended (``resume=True``):
:meth:`phase` skips the phases the checkpoint has finished and continues the one it was in.
Batch order and augmentation come from a generator seeded by ``(seed, epoch)``, dropout from the
global torch RNG saved in the checkpoint: same seed and config give the same numbers on a CPU.

Under ``torchrun`` (:mod:`graphzoo.distributed`) every rank runs this same code: :meth:`forward` goes
through DistributedDataParallel, each rank trains on its rows of every batch (:meth:`local`),
:meth:`infer` embeds a block of the images per rank and gathers them on every rank, and only rank 0
writes the run's files.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed, progress
from ..config import RunConfig, config_diff
from ..data.prepare import labels_line, prepare_data
from ..data.torchdata import Augment, Normalizer, tta_views
from ..rundir import RunDir
from . import batches, inference, precision, train_step
from .checkpoints import load_checkpoint, save_checkpoint
from .metrics import classification_metrics, multilabel_metrics
from .precision import amp_dtype
from .rng_state import gather_rng_states, restore_rng_states, seed_all
from .split_files import check_same_data, check_same_split_as, data_fingerprint, write_split

__all__ = ["Trainer", "TrainingInterrupted", "default_run_name"]


class TrainingInterrupted(Exception):
    """Raised by the ``stop_after_epochs`` test hook: the run stops as if killed after an epoch."""


def default_run_name(cfg: RunConfig) -> str:
    stem = Path(cfg.data).name.split(".")[0] if cfg.data else "run"
    budget = f"n{cfg.labels_per_class}" if cfg.labels_per_class else f"lf{cfg.label_fraction:g}"
    return f"{stem}-{cfg.mode}-{cfg.backbone}-{cfg.energy}-{budget}-s{cfg.seed}"


class Trainer:
    """One run: its folder, data, network, optimiser and loop state.

    Parameters
    ----------
    cfg : RunConfig
        Validated here, before anything is read or trained.
    resume : bool
        Continue from ``checkpoints/last.pt``; refused when the saved config differs in a key that
        changes results (the message lists them) or when the data changed (checked in :meth:`setup`).
    imageset : ImageSet, optional
        Use these images instead of reading ``cfg.data`` (tests, notebooks).
    stop_after_epochs : int, optional
        Test hook: raise :class:`TrainingInterrupted` after this many epochs, as a kill would.
    """

    def __init__(self, cfg: RunConfig, resume: bool = False, imageset=None,
                 stop_after_epochs: int | None = None) -> None:
        self.cfg = cfg.validate()
        # What the user asked for, written to config.yaml (``--resume`` compares against it); self.cfg
        # becomes the settings as run once setup() has decided pretrain="auto" on the split's size.
        self.requested_cfg = self.cfg
        self.pretrain_auto = ""  # setup(): the line saying what pretrain="auto" chose and why
        self.name = cfg.name or default_run_name(cfg)
        self.rundir = RunDir(Path(cfg.out) / self.name)
        self.resume = resume
        self.imageset = imageset
        self.stop_after_epochs = stop_after_epochs
        self.epochs_this_session = 0
        self.device = distributed.init(cfg.device)  # under torchrun: joins the process group
        if resume:
            if not self.rundir.started or not self.rundir.config.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint in {self.rundir}; run it without --resume first")
            import yaml

            diff = config_diff(yaml.safe_load(self.rundir.config.read_text()), cfg.to_dict())
            if diff:
                raise ValueError(f"--resume refused: the config differs from the saved run in {len(diff)} key(s): "
                                 + "; ".join(diff) + ". Use the saved settings, or start again with --overwrite")
        elif self.rundir.started:
            raise ValueError(f"{self.rundir} already holds a run; use --resume to continue it, --overwrite to start it "
                             "again, or choose another --out / name")
        distributed.barrier()  # every rank checked the folder before rank 0 creates it
        distributed.set_resume_hint(f"The last checkpoint, {self.rundir.checkpoint('last')}, is intact: rerun the same "
                                    "command with --resume to continue from it")

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Seed, read and split the data, check it against the graph settings, build net and optimiser."""
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
            try:  # the kNN search runs in faiss's own OpenMP pool
                import faiss

                faiss.omp_set_num_threads(cfg.threads)
            except ImportError:
                pass
        seed_all(cfg.seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        self.data = d = prepare_data(**cfg.data_options(), imageset=self.imageset)
        self.idx_lab = d.idx("train", True)
        self.idx_unl = d.idx("train", False)
        self.idx_train = d.idx("train")
        self.idx_val = d.idx("val", True)
        self.idx_test = d.idx("test")
        progress.say(labels_line(d), cfg.progress)
        self.cfg = cfg = self._decide_pretrain(cfg)
        self._check_graph_size()
        self.normalizer = Normalizer.fit(d.images, self.idx_train)
        self.augment = (Augment(cfg.hflip, cfg.vflip, cfg.rotate_degrees, cfg.crop_scale, cfg.translate, cfg.rot90)
                        if cfg.augment else None)

        from ..models import HybridNet, create_backbone

        pretrained = True if cfg.pretrained == "torchvision" else cfg.pretrained or False
        backbone = create_backbone(cfg.backbone, in_chans=d.images.shape[1], pretrained=pretrained,
                                   **cfg.backbone_kwargs)
        torch.manual_seed(cfg.seed)  # the head's initialisation does not depend on the backbone's draws
        self.model = HybridNet(backbone, d.n_outputs, cfg.dropout).to(self.device)
        if self.device.type == "cuda":  # cuDNN's convolutions are fastest on NHWC tensors under mixed precision
            self.model = self.model.to(memory_format=torch.channels_last)
        self.amp_dtype = amp_dtype(cfg.amp, self.device)
        self.scaler = precision.grad_scaler(self.amp_dtype)  # fp16 only: its narrow range underflows small gradients
        if cfg.pretrain_freeze:
            from .pretrain_cache import freeze_backbone

            freeze_backbone(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self._ddp = None  # the DistributedDataParallel view of the model, made at the first training step
        self.state = {"phase": None, "finished_phases": [], "phase_epoch": 0, "epoch": 0, "best": None,
                      "best_epoch": -1, "bad": 0, "stop_reasons": {}, "history": [], "pseudo": None, "elapsed_s": 0.0}
        self.ema = None  # Dynamic Pass's mean-teacher copy of the network (``ema_decay`` > 0), else None
        if distributed.rank() > 0:
            # The weights are the same on every rank (same seed; DDP also copies rank 0's); the dropout draws
            # must not be, or every rank would drop the same units of its k-th image.
            torch.manual_seed(cfg.seed * 1_000_003 + distributed.rank())
        self.data_sha1 = data_fingerprint(d)

    def _decide_pretrain(self, cfg: RunConfig) -> RunConfig:
        """``pretrain="auto"`` decided on the training split's size and, on the CPU, the pretraining's cost
        (:func:`graphzoo.selfsup.resolve_auto_pretrain`), said on a line of its own and kept in ``self.pretrain_auto``."""
        from ..selfsup import resolve_auto_pretrain

        pixels = int(np.prod(self.data.images.shape[1:]))
        cfg, self.pretrain_auto = resolve_auto_pretrain(cfg, len(self.idx_train), pixels, self.device.type == "cpu")
        if self.pretrain_auto:
            # choosing to pretrain starts minutes of work the command did not name: said even without progress
            progress.say(self.pretrain_auto, cfg.progress or bool(cfg.pretrain))
        return cfg

    def _check_graph_size(self) -> None:
        """Refuse k ≥ the nodes of a graph the run will build, before any training (not silently clip)."""
        cfg = self.cfg
        smallest = len(self.idx_train) if cfg.mode == "dynamic" else len(self.data.split)
        what = "training images (Dynamic Pass builds its graph over them)" if cfg.mode == "dynamic" else "images"
        if cfg.n_neighbors >= smallest:
            raise ValueError(f"n_neighbors={cfg.n_neighbors} but the data has only {smallest} {what}; "
                             f"set n_neighbors to at most {smallest - 1} "
                             f"(e.g. --set n_neighbors={min(10, smallest - 1)})")

    def start(self) -> None:
        """Set up, then either write the new run's config and split, or restore the last checkpoint."""
        self.t_start = time.perf_counter()
        self.setup()
        if not self.resume:  # before the run folder exists: a failed pretraining leaves no half-started run
            from .pretrain_cache import start_from_pretrained

            # Under torchrun rank 0 pretrains (or finds the cached encoder); the others then load it from the cache.
            if distributed.is_main():
                start_from_pretrained(self)
            distributed.barrier()
            if not distributed.is_main():
                start_from_pretrained(self)
        if self.resume:
            check_same_data(self.rundir, self.data, self.data_sha1)
            self._load_last()
        else:
            if self.cfg.init_from:
                check_same_split_as(RunDir(self.cfg.init_from), self.data)
            if distributed.is_main():
                self.rundir.checkpoints.mkdir(parents=True, exist_ok=True)
                self.requested_cfg.dump(self.rundir.config)
                write_split(self.rundir, self.data, self.cfg, self.data_sha1)
            distributed.barrier()
        self.elapsed_before = self.state.get("elapsed_s", 0.0)

    def model_meta(self) -> dict:
        """What ``graphzoo predict`` needs to rebuild the network (plain values only)."""
        d = self.data
        return {"backbone": self.cfg.backbone, "backbone_kwargs": self.cfg.backbone_kwargs,
                "in_chans": int(d.images.shape[1]), "image_size": int(d.images.shape[-1]), "n_outputs": d.n_outputs,
                "names": d.names, "multilabel": d.multilabel, "dropout": self.cfg.dropout,
                "normalizer": self.normalizer.state_dict(),
                "tta_views": [list(v) for v in self.views()] if self.cfg.tta else []}

    # ------------------------------------------------------------------ batches, forward, inference
    def local(self, idx: torch.Tensor) -> torch.Tensor:
        """This process's rows of a global batch of indices (all of them without torchrun)."""
        return distributed.local_rows(idx)

    def forward(self, x: torch.Tensor, reconstruct: bool = False, with_features: bool = False):
        """The training forward pass, through DDP under autocast: logits (B, n_outputs), or the autoencoder's
        reconstruction of ``x``; ``with_features``: (logits, ψ(x)) (:func:`.train_step.forward`)."""
        return train_step.forward(self, x, reconstruct, with_features)

    @property
    def graph_device(self) -> str | None:
        """Where the graph step's exact kNN search runs: this process's GPU when it trains on one
        (faiss's GPU index or a blocked top-k in torch, :mod:`graphzoo.knn_device`), else the CPU."""
        return str(self.device) if self.device.type == "cuda" else None

    def autocast(self):
        """Mixed precision (``cfg.amp``) for a forward pass; a no-op context in float32."""
        return precision.autocast(self.device, self.amp_dtype)

    def read_ahead(self, index_batches: list[torch.Tensor]):
        """Yield ``(idx, images)`` for each batch of ``index_batches``, the next batch read in a background
        thread while the caller computes on this one (:func:`.batches.read_ahead`)."""
        return batches.read_ahead(self.data.images, index_batches, self.device)

    def batch(self, idx: torch.Tensor, generator: torch.Generator | None, images: torch.Tensor | None = None,
              augment=None) -> torch.Tensor:
        """Normalised images ``idx`` on the device; augmented when a generator is given. ``images``: the uint8
        ``images[idx]`` already read (:meth:`read_ahead`); ``augment``: another augmentation than the run's
        (any ``(x, generator) -> x``, e.g. Dynamic Pass's strong :class:`~graphzoo.selfsup.views.ViewMaker`
        views). See :func:`.batches.to_network`."""
        x = batches.read(self.data.images, idx, self.device) if images is None else images
        return batches.to_network(x, self.device, self.normalizer, augment or self.augment, generator)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample (multiclass) or per-entry (multi-label) loss, unreduced."""
        if self.data.multilabel:
            return F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        return F.cross_entropy(logits, target, reduction="none")

    def infer(self, idx: np.ndarray, tta: bool = False, batch_size: int = 512,
              model: torch.nn.Module | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Logits (len(idx), n_outputs) and ψ features (len(idx), out_dim) of ``images[idx]`` in eval mode, float32
        numpy, sharded and gathered under torchrun (:func:`.inference.infer`). ``tta``: averaged over
        :meth:`views`; ``model``: another network than ``self.model`` (Dynamic Pass's mean teacher)."""
        return inference.infer(self, idx, tta, batch_size, model)

    def views(self) -> list[tuple[int, bool]]:
        """The views test-time averaging uses (:func:`tta_views`): the exact symmetries training augments
        with, or with ``tta_views="dihedral"`` all 8 symmetries of the square (images without an orientation)."""
        cfg = self.cfg
        if cfg.tta_views == "dihedral":
            return tta_views(hflip=True, vflip=True, rot90=True)
        return tta_views(cfg.hflip, cfg.vflip, cfg.rot90) if cfg.augment else [(0, False)]

    def proba(self, logits: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(logits).double()
        return (torch.sigmoid(t) if self.data.multilabel else torch.softmax(t, 1)).numpy()

    def metrics(self, idx: np.ndarray, proba: np.ndarray) -> dict:
        d = self.data
        if d.multilabel:
            return multilabel_metrics(d.targets[idx], proba, d.names)
        return classification_metrics(d.targets[idx], proba, d.names)

    def validate(self, model: torch.nn.Module | None = None) -> dict:
        if len(self.idx_val) == 0:
            return {}
        logits, _ = self.infer(self.idx_val, model=model)
        target = torch.as_tensor(self.data.targets[self.idx_val])
        loss = float(self.loss(torch.from_numpy(logits), target).mean())
        m = self.metrics(self.idx_val, self.proba(logits))
        return {"val_loss": loss, "val_accuracy": m.get("accuracy"), "val_auc": m.get("auc")}

    def _score(self, row: dict):
        """Larger is better; accuracy / AUC ties are broken by the loss."""
        if not row or row.get("val_loss") is None:
            return None
        if self.cfg.monitor == "val_loss":
            return (-row["val_loss"],)
        main = row.get(self.cfg.monitor)
        return (main if main is not None else -math.inf, -row["val_loss"])

    # ------------------------------------------------------------------ training steps
    def generator(self) -> torch.Generator:
        """This epoch's generator for batch order and augmentation: seeded by (seed, epoch)."""
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.state["epoch"])

    def augment_generator(self, g: torch.Generator) -> torch.Generator:
        """The generator this process's augmentations draw from once the epoch's batch order is drawn from
        ``g``: ``g`` itself in one process and on rank 0; on rank r > 0 a generator seeded by (g's seed, r),
        or every rank would turn its k-th row of a batch the same way."""
        r = distributed.rank()
        return g if r == 0 else torch.Generator().manual_seed(g.initial_seed() * 1_000_003 + r)

    def optimizer_step(self, loss: torch.Tensor, step: int) -> None:
        """One gradient step on ``loss`` (loss-scaled in fp16), refusing a NaN / inf loss before it reaches the
        weights (:func:`.train_step.optimizer_step`)."""
        train_step.optimizer_step(self, loss, step)

    @torch.no_grad()
    def recalibrate_batchnorm(self, batch_size: int = 256, model: torch.nn.Module | None = None) -> None:
        """Recompute every BatchNorm layer's running mean / variance over ``cfg.precise_bn`` training
        images (a fixed subset, un-augmented, labels unused): the average of per-batch statistics under
        the current weights (exact in one batch) instead of a lagging exponential average. Only eval-mode
        outputs change; training uses batch statistics either way."""
        n, model = self.cfg.precise_bn, self.model if model is None else model
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not n or not bns:
            return
        order = torch.randperm(len(self.idx_train), generator=torch.Generator().manual_seed(self.cfg.seed))
        subset = torch.as_tensor(self.idx_train)[order][:n]
        was_training = model.training
        model.eval()  # dropout off: no RNG draws, no noise in the statistics
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
            m.train()
        for b in subset.split(batch_size):
            model.features(self.batch(b, None))
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)

    def labelled_stream(self, n_needed: int, g: torch.Generator) -> torch.Tensor:
        """``n_needed`` labelled training indices: the labelled set reshuffled as often as needed."""
        lab = torch.as_tensor(self.idx_lab, dtype=torch.long)
        reps = -(-n_needed // len(lab))
        return torch.cat([lab[torch.randperm(len(lab), generator=g)] for _ in range(reps)])[:n_needed]

    def bar(self, n: int, desc: str):
        return progress.bar(n, f"epoch {self.state['epoch'] + 1} {desc}", self.cfg.progress)

    # ------------------------------------------------------------------ the epoch loop
    def phase(self, name: str, max_epochs: int, epoch_fn: Callable[["Trainer"], dict], *,
              validate: bool = True, early_stopping: bool = False) -> None:
        """Train ``epoch_fn`` for up to ``max_epochs`` epochs as phase ``name`` (skipped when a resumed
        checkpoint finished it). ``validate``: track the best model by ``cfg.monitor`` (checkpoint
        ``best.pt``, plateau learning-rate decay); ``early_stopping``: stop after ``cfg.patience``
        epochs without improvement and continue from the best model."""
        st = self.state
        if name in st["finished_phases"]:
            return
        if st["phase"] != name:
            st.update(phase=name, phase_epoch=0, bad=0)
        elif early_stopping and st["bad"] >= self.cfg.patience:
            # A kill between the early stop's checkpoint and the end of the phase: finish it, as the
            # uninterrupted run did, rather than train on.
            return self._finish_phase(name, self._early_stop_reason())
        while st["phase_epoch"] < max_epochs:
            if self.stop_after_epochs is not None and self.epochs_this_session >= self.stop_after_epochs:
                raise TrainingInterrupted(st["epoch"])
            t0 = time.perf_counter()
            row = {"epoch": st["epoch"] + 1, "phase": name, "lr": self.optimizer.param_groups[0]["lr"]}
            row.update(epoch_fn(self))
            self.recalibrate_batchnorm()
            if validate:
                row.update(self.validate())
            st["epoch"] += 1
            st["phase_epoch"] += 1
            self.epochs_this_session += 1
            stop = self._track_best(row) if validate else None
            if not (early_stopping and stop):
                stop = None
            row["time_s"] = round(time.perf_counter() - t0, 2)
            st["history"].append(row)
            st["elapsed_s"] = self.elapsed_before + time.perf_counter() - self.t_start
            progress.say(_epoch_line(row), self.cfg.progress)
            if st["epoch"] % self.cfg.checkpoint_every == 0 or stop:
                self.save_last()
            if stop:
                return self._finish_phase(name, stop)
        self._finish_phase(name, "max_epochs")

    def _track_best(self, row: dict) -> str | None:
        """Save best.pt on improvement, decay the learning rate on a plateau; the early-stop reason.

        A row with ``ema_val_*`` (Dynamic Pass's mean teacher, validated too) offers the teacher as a
        second candidate: best.pt then holds whichever of the two validates better."""
        st, cfg = self.state, self.cfg
        score = self._score(row)
        if score is None:  # no validation images: the latest model is the best we know
            self.save_best()
            return None
        ema_score = self._score({k[4:]: v for k, v in row.items() if k.startswith("ema_val_")})
        use_ema = self.ema is not None and ema_score is not None and ema_score > score
        if use_ema:
            score = ema_score
        if st["best"] is None or score > st["best"]:
            st.update(best=score, best_epoch=st["epoch"], bad=0)
            row["is_best"] = True
            if self.ema is not None:
                row["best_model"] = "ema" if use_ema else "net"
            self.save_best(self.ema if use_ema else None)
            return None
        st["bad"] += 1
        row["is_best"] = False
        if cfg.lr_patience and st["bad"] % cfg.lr_patience == 0:
            # Plateau: decay the learning rate (kept in the optimiser state, so a resumed run
            # continues with the decayed rate).
            for group in self.optimizer.param_groups:
                group["lr"] *= cfg.lr_decay
        if st["bad"] >= cfg.patience:
            return self._early_stop_reason()
        return None

    def _early_stop_reason(self) -> str:
        return f"early_stopping (no {self.cfg.monitor} improvement in {self.cfg.patience} epochs)"

    def _finish_phase(self, name: str, reason: str) -> None:
        st = self.state
        st["stop_reasons"][name] = reason
        if name == "supervised":
            # Early stopping: Dynamic Pass starts from (and One Pass extracts features with) the
            # best warm-up model.
            self.load_best_weights()
        st["finished_phases"].append(name)
        st.update(phase=None, phase_epoch=0, bad=0)
        # A new phase trains on a new objective (pseudo-labels): start again from the base
        # learning rate rather than the plateau-decayed one of the warm-up.
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr
        self.save_last()

    # ------------------------------------------------------------------ checkpoints
    def save_last(self) -> None:
        """checkpoints/last.pt, by rank 0; every rank returns once it is written.

        Under torchrun the RNG states of all ranks are kept (``rng_ranks``): each rank's dropout draws
        depend on its own batches, and a resumed rank continues from its own state."""
        rng, rng_ranks = gather_rng_states()
        if distributed.is_main():
            save_checkpoint({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                             "state": self.state, "rng": rng, "rng_ranks": rng_ranks,
                             "config": self.cfg.to_dict(), "meta": self.model_meta(),
                             "ema": None if self.ema is None else self.ema.state_dict(),
                             "scaler": None if self.scaler is None else self.scaler.state_dict()},
                            self.rundir.checkpoint("last"))
        distributed.barrier()

    def save_best(self, model: torch.nn.Module | None = None) -> None:
        """best.pt from ``model`` (default ``self.model``; Dynamic Pass's mean teacher when it validates better)."""
        weights = (self.model if model is None else model).state_dict()
        if distributed.is_main():
            save_checkpoint({"model": weights, "epoch": self.state["epoch"], "meta": self.model_meta(),
                             "config": self.cfg.to_dict()}, self.rundir.checkpoint("best"))
        distributed.barrier()

    def _load_last(self) -> None:
        ck = load_checkpoint(self.rundir.checkpoint("last"), map_location=self.device)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if ck.get("ema") is not None:  # a run killed mid-Dynamic-Pass continues with its mean teacher
            import copy

            self.ema = copy.deepcopy(self.model).requires_grad_(False)
            self.ema.load_state_dict(ck["ema"])
        if ck.get("scaler") is not None and self.scaler is not None:
            self.scaler.load_state_dict(ck["scaler"])
        self.state = self._upgrade_state(ck["state"])
        restore_rng_states(ck)  # each rank its own states when the number of processes is unchanged, else rank 0's

    def _upgrade_state(self, state: dict) -> dict:
        """Checkpoints before graphzoo 0.2 count phases by position in the mode's list; name them."""
        if "finished_phases" in state:
            return state
        cfg = self.cfg
        names = (["ae"] if cfg.backbone == "autoencoder" and not cfg.pretrained and cfg.ae_pretrain_epochs else [])
        names += ["supervised"] + (["dynamic"] if cfg.mode == "dynamic" else [])
        k = int(state["phase"])
        state["finished_phases"] = names[:k]
        state["phase"] = names[k] if k < len(names) else None
        return state

    def load_best_weights(self) -> None:
        best = self.rundir.checkpoint("best")
        if best.exists():
            self.model.load_state_dict(load_checkpoint(best, map_location=self.device)["model"])

    def final_model(self) -> str:
        """"best" or "last": the weights the final evaluation uses.

        Dynamic Pass ends with its last model under "auto" (as LP-DeepSSL): a validation part cut from a
        1 % label budget is a few dozen images, too few to pick among pseudo-label epochs; the
        best-by-validation model stays in checkpoints/best.pt. With ``final_model=best`` Dynamic Pass picks
        among its dynamic epochs only (the warm-up's score is not carried over) and, with ``ema_decay``,
        between the net and its mean teacher (:mod:`.dynamic_pass`).
        """
        if self.cfg.final_model == "auto":
            return "last" if self.cfg.mode == "dynamic" else "best"
        return self.cfg.final_model


def _epoch_line(row: dict) -> str:
    """``epoch 3 supervised: train_loss 0.412, val_accuracy 0.871 (2.1 s)`` for logs."""
    keys = ("train_loss", "val_loss", "val_accuracy", "val_auc", "ema_val_accuracy", "pseudo_accuracy", "alpha")
    parts = [f"{k} {row[k]:.3f}" for k in keys if isinstance(row.get(k), (int, float))]
    return f"epoch {row['epoch']} {row['phase']}: {', '.join(parts)} ({row.get('time_s', 0):.1f} s)"
