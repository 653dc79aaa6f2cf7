"""One run of the hybrid model, end to end: data → split → ψ training → graph → energy → metrics.

The two modes of the seed (see ``shared/ALGORITHMS.md``) are phases of one epoch loop:

* **One Pass** (Listing 1.1): ``supervised`` epochs on the labelled images (cross-entropy, Adam,
  dropout, early stopping on the labelled validation part), then features ψ(x) of *all* images,
  one kNN graph, one energy minimisation; the prediction is the energy's argmax.
* **Dynamic Pass** (Listing 1.2, the LP-DeepSSL recipe): the same ``supervised`` warm-up, then
  ``dynamic`` epochs: features of the training images → graph → diffusion → pseudo-labels ŷ with
  certainty ξ_i = 1 − H(p_i)/log c and class weights ζ_j = (n/c)/|{i: ŷ_i = j}|, then one epoch
  on ``Σ_L ℓ(f(x_i), y_i) + α(t) Σ_U ξ_i ζ_ŷi ℓ(f(x_i), ŷ_i)``. Test images stay out of the
  graph and are classified by the net (inductive), with the transductive alternative reported.
* The ``autoencoder`` backbone adds an ``ae`` phase first: reconstruction on all images.

Every epoch ends with a checkpoint holding the model, optimiser, loop state, RNG states and
pseudo-labels, so ``resume=True`` continues a killed run exactly where its last epoch ended.
Batch order and augmentation come from a generator seeded by ``(seed, epoch)``, dropout from the
global torch RNG saved in the checkpoint: same seed and config give the same numbers on a CPU.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import RunConfig, config_diff
from ..data.prepare import prepare_data
from ..data.torchdata import Augment, Normalizer, tta_views
from ..graph_step import graph_step
from ..rundir import RunDir
from .checkpoints import load_checkpoint, save_checkpoint
from .metrics import classification_metrics, multilabel_metrics

__all__ = ["Experiment", "run_experiment", "run_training", "TrainingResult", "default_run_name"]


def default_run_name(cfg: RunConfig) -> str:
    stem = Path(cfg.data).name.split(".")[0] if cfg.data else "run"
    budget = f"n{cfg.labels_per_class}" if cfg.labels_per_class else f"lf{cfg.label_fraction:g}"
    return f"{stem}-{cfg.mode}-{cfg.backbone}-{cfg.energy}-{budget}-s{cfg.seed}"


# ----------------------------------------------------------------------------------------------
# The run
# ----------------------------------------------------------------------------------------------
def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Experiment:
    """A run folder and the loop that fills it. See the module docstring.

    Parameters
    ----------
    cfg : RunConfig
        Validated here.
    resume : bool
        Continue from ``runs/<name>/checkpoints/last.pt``; refused when the saved config differs
        (the message lists the keys).
    imageset : ImageSet, optional
        Use these images instead of reading ``cfg.data`` (for tests and notebooks).
    """

    def __init__(self, cfg: RunConfig, resume: bool = False, imageset=None, stop_after_epochs: int | None = None) -> None:
        self.cfg = cfg.validate()
        self.name = cfg.name or default_run_name(cfg)
        self.rundir = RunDir(Path(cfg.out) / self.name)
        self.dir = self.rundir.path
        self.ckpt_dir = self.rundir.checkpoints
        self.resume = resume
        self.stop_after_epochs = stop_after_epochs  # test hook: simulate a kill after this many epochs
        if resume:
            saved = self.dir / "config.yaml"
            if not (self.ckpt_dir / "last.pt").is_file() or not saved.is_file():
                raise FileNotFoundError(f"--resume: no checkpoint in {self.dir}; run it without --resume first")
            import yaml

            diff = config_diff(yaml.safe_load(saved.read_text()), cfg.to_dict())
            if diff:
                raise ValueError(f"--resume refused: the config differs from the saved run in {len(diff)} key(s): " + "; ".join(diff))
        elif (self.ckpt_dir / "last.pt").exists():
            raise ValueError(f"{self.dir} already holds a run; use --resume to continue it, or choose another --out / name")
        self.imageset = imageset

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
            try:  # the kNN search runs in faiss's own OpenMP pool
                import faiss

                faiss.omp_set_num_threads(cfg.threads)
            except ImportError:
                pass
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        self.device = _resolve_device(cfg.device)
        self.data = prepare_data(**cfg.data_options(), imageset=self.imageset)
        d = self.data
        self.idx_lab = d.idx("train", True)
        self.idx_unl = d.idx("train", False)
        self.idx_train = d.idx("train")
        self.idx_val = d.idx("val", True)
        self.idx_test = d.idx("test")
        self.normalizer = Normalizer.fit(d.images, self.idx_train)
        self.augment = Augment(cfg.hflip, cfg.vflip, cfg.rotate_degrees, cfg.crop_scale, cfg.translate, cfg.rot90) if cfg.augment else None

        from ..models import HybridNet, create_backbone

        backbone = create_backbone(cfg.backbone, in_chans=d.images.shape[1], pretrained=(True if cfg.pretrained == "torchvision" else cfg.pretrained or False), **cfg.backbone_kwargs)
        torch.manual_seed(cfg.seed)  # the head's initialisation does not depend on the backbone's draws
        self.model = HybridNet(backbone, d.n_outputs, cfg.dropout).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.phases = []
        if cfg.backbone == "autoencoder" and not cfg.pretrained and cfg.ae_pretrain_epochs:
            self.phases.append(("ae", cfg.ae_pretrain_epochs))
        self.phases.append(("supervised", cfg.warmup_epochs if cfg.mode == "dynamic" else cfg.epochs))
        if cfg.mode == "dynamic":
            self.phases.append(("dynamic", cfg.epochs))
        self.state = {"phase": 0, "phase_epoch": 0, "epoch": 0, "best": None, "best_epoch": -1, "bad": 0,
                      "stop_reasons": {}, "history": [], "pseudo": None, "elapsed_s": 0.0}

    def _model_meta(self) -> dict:
        d = self.data
        return {"backbone": self.cfg.backbone, "backbone_kwargs": self.cfg.backbone_kwargs, "in_chans": int(d.images.shape[1]),
                "image_size": int(d.images.shape[-1]), "n_outputs": d.n_outputs, "names": d.names, "multilabel": d.multilabel,
                "dropout": self.cfg.dropout, "normalizer": self.normalizer.state_dict(),
                "tta_views": [list(v) for v in self._views()] if self.cfg.tta else []}

    def _write_split(self) -> None:
        from ..data import save_split

        d = self.data
        save_split(self.dir / "split.json", n_samples=len(d.split), labelled=d.labelled, split=d.split,
                   filenames=d.filenames, how=d.split_source, label_fraction=self.cfg.label_fraction,
                   labels_per_class=self.cfg.labels_per_class, val_labels=self.cfg.val_labels, seed=self.cfg.seed)
        with open(self.dir / "split.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["index", "filename", "patient_id", "split", "labelled"])
            for i in range(len(d.split)):
                w.writerow([i, "" if d.filenames is None else d.filenames[i], "" if d.patient_ids is None else d.patient_ids[i],
                            d.split[i], int(d.labelled[i])])

    # ------------------------------------------------------------------ batches
    def _batch(self, idx: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        x = self.data.images[idx].to(self.device, non_blocking=True)
        if self.augment is not None and generator is not None:
            # Augment before normalising, so that the area a rotation or shift uncovers is filled
            # with black (the background of cells, X-rays, mammograms), not with the mean gray.
            x = self.augment(x.float(), generator).clamp_(0, 255)
        return self.normalizer(x)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample (multiclass) or per-entry (multi-label) loss, unreduced."""
        if self.data.multilabel:
            return F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none")
        return F.cross_entropy(logits, target, reduction="none")

    @torch.no_grad()
    def _infer(self, idx: np.ndarray, tta: bool = False, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Logits (len(idx), n_outputs) and ψ features (len(idx), out_dim) of ``images[idx]`` in eval
        mode, float32 numpy, in one pass. ``tta``: both averaged over :meth:`_views`."""
        self.model.eval()
        views = self._views() if tta else [(0, False)]
        logits, feats = [], []
        batches = torch.as_tensor(idx, dtype=torch.long).split(batch_size)
        bar = self._progress(len(batches), f"infer ×{len(views)}" if len(views) > 1 else "infer")
        for b in batches:
            x = self._batch(b, None)
            lg, z = self.model.infer(x, views)
            logits.append(lg.float().cpu())
            feats.append(z.float().cpu())
            bar.update()
        bar.close()
        self.model.train()
        if not logits:
            return np.zeros((0, self.data.n_outputs), np.float32), np.zeros((0, self.model.head.in_features), np.float32)
        return torch.cat(logits).numpy(), torch.cat(feats).numpy()

    def _views(self) -> list[tuple[int, bool]]:
        cfg = self.cfg
        return tta_views(cfg.hflip, cfg.vflip, cfg.rot90) if cfg.augment else [(0, False)]

    def _proba(self, logits: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(logits).double()
        return (torch.sigmoid(t) if self.data.multilabel else torch.softmax(t, 1)).numpy()

    def _metrics(self, idx: np.ndarray, proba: np.ndarray) -> dict:
        d = self.data
        if d.multilabel:
            return multilabel_metrics(d.targets[idx], proba, d.names)
        return classification_metrics(d.targets[idx], proba, d.names)

    def _validate(self) -> dict:
        if len(self.idx_val) == 0:
            return {}
        logits, _ = self._infer(self.idx_val)
        target = torch.as_tensor(self.data.targets[self.idx_val])
        loss = float(self._loss(torch.from_numpy(logits), target).mean())
        m = self._metrics(self.idx_val, self._proba(logits))
        return {"val_loss": loss, "val_accuracy": m.get("accuracy"), "val_auc": m.get("auc")}

    def _score(self, row: dict):
        """Larger is better; accuracy / AUC ties are broken by the loss."""
        if not row or row.get("val_loss") is None:
            return None
        if self.cfg.monitor == "val_loss":
            return (-row["val_loss"],)
        main = row.get(self.cfg.monitor)
        return (main if main is not None else -math.inf, -row["val_loss"])

    # ------------------------------------------------------------------ epochs
    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.state["epoch"])

    def _optimizer_step(self, loss: torch.Tensor, step: int) -> None:
        """One gradient step on ``loss``, refusing a NaN / inf loss before it reaches the weights."""
        self._check_loss(loss, step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def _check_loss(self, loss: torch.Tensor, step: int) -> None:
        if not torch.isfinite(loss):
            last = self.ckpt_dir / "last.pt"
            kept = f"the last good checkpoint (end of epoch {self.state['epoch']}) is kept at {last}" if last.exists() else "no checkpoint was written yet"
            raise FloatingPointError(
                f"training loss became {loss.item()} at epoch {self.state['epoch'] + 1}, step {step}; stopping. "
                f"{kept}. Lower lr (now {self.cfg.lr:g}) or check the images for NaN / constant values."
            )

    def _progress(self, n: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(total=n, desc=desc, leave=False, disable=not self.cfg.progress, dynamic_ncols=True)

    def _labelled_stream(self, n_needed: int, g: torch.Generator) -> torch.Tensor:
        lab = torch.as_tensor(self.idx_lab, dtype=torch.long)
        reps = -(-n_needed // len(lab))
        return torch.cat([lab[torch.randperm(len(lab), generator=g)] for _ in range(reps)])[:n_needed]

    def _epoch_ae(self) -> dict:
        g = self._generator()
        idx = torch.arange(len(self.data.split))
        batches = idx[torch.randperm(len(idx), generator=g)].split(self.cfg.batch_size)
        total, bar = 0.0, self._progress(len(batches), f"epoch {self.state['epoch'] + 1} ae")
        for step, b in enumerate(batches):
            x = self._batch(b, None)
            loss = F.mse_loss(self.model.backbone.reconstruct(x), x)
            self._optimizer_step(loss, step)
            total += loss.item()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.close()
        return {"train_loss": total / len(batches), "recon_loss": total / len(batches)}

    def _epoch_supervised(self) -> dict:
        cfg, g = self.cfg, self._generator()
        n_steps = max(-(-len(self.idx_lab) // cfg.batch_size), cfg.min_epoch_steps)
        stream = self._labelled_stream(n_steps * cfg.batch_size, g) if n_steps > 1 or len(self.idx_lab) > cfg.batch_size else None
        if stream is None:
            stream = torch.as_tensor(self.idx_lab)[torch.randperm(len(self.idx_lab), generator=g)]
        batches = stream.split(cfg.batch_size)
        targets = torch.as_tensor(self.data.targets)
        total, bar = 0.0, self._progress(len(batches), f"epoch {self.state['epoch'] + 1} supervised")
        for step, b in enumerate(batches):
            x = self._batch(b, g)
            loss = self._loss(self.model(x), targets[b].to(self.device)).mean()
            self._optimizer_step(loss, step)
            total += loss.item()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        return {"train_loss": total / len(batches), "loss_labelled": total / len(batches), "images": len(stream)}

    def _pseudo_labels(self) -> dict:
        """Features of the training images → graph → energy → pseudo-labels, certainty, weights."""
        cfg, d = self.cfg, self.data
        _, Z = self._infer(self.idx_train)
        lab_mask = d.labelled[self.idx_train]
        y = np.where(lab_mask[:, None] if d.multilabel else lab_mask, d.targets[self.idx_train], -1)
        step = graph_step(Z, y, energy=cfg.energy, energy_params=cfg.energy_params, n_neighbors=cfg.n_neighbors,
                          metric=cfg.graph_metric, n_classes=d.n_outputs, multilabel=d.multilabel)
        info = step.info
        u = ~lab_mask
        P, R, xi = step.proba[u], step.reachable[u], step.certainty[u]
        truth = d.targets[self.idx_unl]
        if d.multilabel:
            pseudo = (P > 0.5).astype(np.int64)
            n_u = len(P)
            pos = pseudo.sum(0)
            # ζ per label and value; clipped because a rare finding with 2 pseudo-positives among
            # hundreds would otherwise get a weight in the hundreds.
            zeta_pos = np.clip((n_u / 2) / np.maximum(pos, 1), 0.1, 10)
            zeta_neg = np.clip((n_u / 2) / np.maximum(n_u - pos, 1), 0.1, 10)
            zeta = np.where(pseudo == 1, zeta_pos, zeta_neg) if cfg.class_balance else np.ones_like(P)
            correct = pseudo == truth
            aucs = [multilabel_metrics(truth, P, d.names).get("auc")]
            extra = {"pseudo_auc": aucs[0]}
        else:
            pseudo = P.argmax(1)
            counts = np.bincount(pseudo[R], minlength=d.n_outputs)
            zeta_c = np.divide(R.sum() / d.n_outputs, counts, out=np.zeros(d.n_outputs), where=counts > 0)
            zeta = zeta_c[pseudo] if cfg.class_balance else np.ones(len(P))
            correct = pseudo == truth
            extra = {"pseudo_class_counts": counts.tolist()}
        if cfg.certainty_normalize and xi.max() > 0:
            xi = xi / xi.max()
        weight = xi * zeta
        wsum = weight.sum()
        row = {
            "pseudo_accuracy": float(correct[R].mean()) if R.any() else None,
            "pseudo_weighted_accuracy": float((weight * correct).sum() / wsum) if wsum > 0 else None,
            "coverage": float(R.mean()),
            "mean_certainty": float(xi[R].mean()) if R.any() else 0.0,
            **info,
            **extra,
        }
        self.state["pseudo"] = {"index": self.idx_unl.copy(), "label": pseudo, "weight": weight.astype(np.float32)}
        return row

    def _alpha(self) -> float:
        """α(t) = alpha_max · exp(−5 (1 − t/T)²) for t < T (Laine & Aila's ramp-up), t = dynamic epoch."""
        t, T = self.state["phase_epoch"] + 1, self.cfg.rampup_epochs
        if T <= 0 or t >= T:
            return self.cfg.alpha_max
        return self.cfg.alpha_max * math.exp(-5.0 * (1.0 - t / T) ** 2)

    def _epoch_dynamic(self) -> dict:
        cfg, d = self.cfg, self.data
        t0 = time.perf_counter()
        row = self._pseudo_labels()
        row["pseudo_s"] = round(time.perf_counter() - t0, 3)
        pseudo = self.state["pseudo"]
        alpha = self._alpha()
        g = self._generator()
        bl = cfg.labelled_per_batch
        bu = cfg.batch_size - bl
        n = len(pseudo["index"])
        order = torch.randperm(n, generator=g)
        ubatches = order.split(bu)
        if cfg.max_epoch_steps:
            # An "epoch" of a fixed number of steps (FixMatch-style): each one still sees a fresh
            # random subset of the unlabelled images and rebuilds the graph.
            ubatches = ubatches[: cfg.max_epoch_steps]
        lstream = self._labelled_stream(len(ubatches) * bl, g).split(bl)
        targets = torch.as_tensor(d.targets)
        p_index = torch.as_tensor(pseudo["index"])
        p_label = torch.as_tensor(pseudo["label"])
        p_weight = torch.as_tensor(pseudo["weight"])
        tot = tot_l = tot_u = 0.0
        bar = self._progress(len(ubatches), f"epoch {self.state['epoch'] + 1} dynamic")
        for step, (ub, lb) in enumerate(zip(ubatches, lstream)):
            ui = p_index[ub]
            x = self._batch(torch.cat([lb, ui]), g)
            logits = self.model(x)
            loss_l = self._loss(logits[: len(lb)], targets[lb].to(self.device)).mean()
            lu = self._loss(logits[len(lb):], p_label[ub].to(self.device))
            loss_u = (lu * p_weight[ub].to(self.device)).mean()
            loss = loss_l + alpha * loss_u
            self._optimizer_step(loss, step)
            tot += loss.item()
            tot_l += loss_l.item()
            tot_u += loss_u.item()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        bar.close()
        k = max(len(ubatches), 1)
        row.update(train_loss=tot / k, loss_labelled=tot_l / k, loss_unlabelled=tot_u / k, alpha=alpha,
                   images=sum(len(b) for b in ubatches) + len(ubatches) * bl)
        return row

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "state": self.state,
                "rng": _rng_state(), "config": self.cfg.to_dict(), "meta": self._model_meta()}

    def _save_last(self) -> None:
        save_checkpoint(self._checkpoint(), self.ckpt_dir / "last.pt")

    def _load_last(self) -> None:
        ck = load_checkpoint(self.rundir.checkpoint("last"), map_location=self.device)
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.state = ck["state"]
        _set_rng_state(ck["rng"])

    def _load_best_weights(self) -> None:
        best = self.ckpt_dir / "best.pt"
        if best.exists():
            self.model.load_state_dict(load_checkpoint(best, map_location=self.device)["model"])

    def _finish_phase(self, reason: str) -> None:
        name = self.phases[self.state["phase"]][0]
        self.state["stop_reasons"][name] = reason
        if name == "supervised":
            # Early stopping: Dynamic Pass starts from (and One Pass extracts features with) the
            # best warm-up model.
            self._load_best_weights()
        self.state["phase"] += 1
        self.state["phase_epoch"] = 0
        self.state["bad"] = 0
        # A new phase trains on a new objective (pseudo-labels): start again from the base
        # learning rate rather than the plateau-decayed one of the warm-up.
        for group in self.optimizer.param_groups:
            group["lr"] = self.cfg.lr
        self._save_last()

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict:
        """Train (or continue), evaluate, write the run folder; return the metrics dict."""
        t_start = time.perf_counter()
        self._setup()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir.mkdir(exist_ok=True)
        if self.resume:
            self._load_last()
        else:
            self.cfg.dump(self.dir / "config.yaml")
            self._write_split()
        elapsed_before = self.state.get("elapsed_s", 0.0)
        epochs_this_session = 0
        while self.state["phase"] < len(self.phases):
            name, max_epochs = self.phases[self.state["phase"]]
            if self.state["phase_epoch"] >= max_epochs:
                self._finish_phase("max_epochs")
                continue
            if self.stop_after_epochs is not None and epochs_this_session >= self.stop_after_epochs:
                return {"interrupted_after_epoch": self.state["epoch"]}
            t0 = time.perf_counter()
            row = {"epoch": self.state["epoch"] + 1, "phase": name, "lr": self.optimizer.param_groups[0]["lr"]}
            row.update(getattr(self, f"_epoch_{name}")())
            if name != "ae":
                row.update(self._validate())
            self.state["epoch"] += 1
            self.state["phase_epoch"] += 1
            epochs_this_session += 1
            stop = None
            if name != "ae":
                score = self._score(row)
                if score is not None and (self.state["best"] is None or score > self.state["best"]):
                    self.state.update(best=score, best_epoch=self.state["epoch"], bad=0)
                    row["is_best"] = True
                    save_checkpoint({"model": self.model.state_dict(), "epoch": self.state["epoch"], "meta": self._model_meta(),
                                  "config": self.cfg.to_dict()}, self.ckpt_dir / "best.pt")
                elif score is None:  # no validation images: the latest model is the best we know
                    save_checkpoint({"model": self.model.state_dict(), "epoch": self.state["epoch"], "meta": self._model_meta(),
                                  "config": self.cfg.to_dict()}, self.ckpt_dir / "best.pt")
                else:
                    self.state["bad"] += 1
                    row["is_best"] = False
                    if self.cfg.lr_patience and self.state["bad"] % self.cfg.lr_patience == 0:
                        # Plateau: decay the learning rate (kept in the optimiser state, so a
                        # resumed run continues with the decayed rate).
                        for group in self.optimizer.param_groups:
                            group["lr"] *= self.cfg.lr_decay
                if name == "supervised" and self.state["bad"] >= self.cfg.patience:
                    stop = f"early_stopping (no {self.cfg.monitor} improvement in {self.cfg.patience} epochs)"
            row["time_s"] = round(time.perf_counter() - t0, 2)
            self.state["history"].append(row)
            self.state["elapsed_s"] = elapsed_before + time.perf_counter() - t_start
            if self.state["epoch"] % self.cfg.checkpoint_every == 0 or stop:
                self._save_last()
            if stop:
                self._finish_phase(stop)
        if self._final_model() == "best":
            self._load_best_weights()
        metrics = self._evaluate()
        metrics["wall_time_s"] = round(elapsed_before + time.perf_counter() - t_start, 1)
        (self.dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        self._write_history()
        return metrics

    def _final_model(self) -> str:
        # Dynamic Pass ends with its last model (as LP-DeepSSL): a validation part cut from a 1 %
        # label budget is a few dozen images, too few to pick among pseudo-label epochs; the
        # best-by-validation model stays in checkpoints/best.pt.
        if self.cfg.final_model == "auto":
            return "last" if self.cfg.mode == "dynamic" else "best"
        return self.cfg.final_model

    # ------------------------------------------------------------------ final evaluation
    def _evaluate(self) -> dict:
        cfg, d = self.cfg, self.data
        t0 = time.perf_counter()
        all_idx = np.arange(len(d.split))
        logits, Z = self._infer(all_idx, tta=cfg.tta)
        np.save(self.dir / "features.npy", Z)  # ψ of every image, for baselines and the report (run_features)
        p_net = self._proba(logits)
        # Transductive: every image joins one graph built from the final ψ, labels of the
        # labelled training images only (validation labels stay out of it).
        y = np.where(d.graph_labels[:, None] if d.multilabel else d.graph_labels, d.targets, -1)
        step = graph_step(Z, y, energy=cfg.energy, energy_params=cfg.energy_params, n_neighbors=cfg.n_neighbors,
                          metric=cfg.graph_metric, n_classes=d.n_outputs, multilabel=d.multilabel)
        p_graph, ginfo = step.proba, step.info
        method = cfg.test_prediction
        if method == "auto":
            method = "transductive" if cfg.mode == "one-pass" else "inductive"
        p_main = p_graph if method == "transductive" else p_net
        test = self._metrics(self.idx_test, p_main[self.idx_test])
        unl = self.idx_unl
        metrics = {
            "mode": cfg.mode, "backbone": cfg.backbone, "energy": cfg.energy, "task": "multilabel" if d.multilabel else "multiclass",
            "test_prediction": method,
            **{k: test.get(k) for k in ("accuracy", "balanced_accuracy", "auc")},
            "per_class": test.get("per_class"),
            "n_images": int(len(d.split)), "n_train": int(len(self.idx_train)), "n_labelled_train": int(len(self.idx_lab)),
            "n_val_labelled": int(len(self.idx_val)), "n_test": int(len(self.idx_test)),
            "label_fraction_effective": float(len(self.idx_lab) / max(len(self.idx_train), 1)),
            "split": d.split_source,
            "test_inductive": self._metrics(self.idx_test, p_net[self.idx_test]),
            "test_transductive": self._metrics(self.idx_test, p_graph[self.idx_test]),
            "unlabelled_train_transductive": self._metrics(unl, p_graph[unl]) if len(unl) else {},
            "val": self._metrics(self.idx_val, p_net[self.idx_val]) if len(self.idx_val) else {},
            "graph": ginfo,
            "epochs": self.state["epoch"], "best_epoch": self.state["best_epoch"], "stop_reasons": self.state["stop_reasons"],
            "final_model": self._final_model(), "eval_s": round(time.perf_counter() - t0, 1),
        }
        self._write_predictions(p_net, p_graph, p_main)
        return metrics

    def _write_predictions(self, p_net, p_graph, p_main) -> None:
        d = self.data
        with open(self.dir / "predictions.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            cols = [f"prob_{n}" for n in d.names]
            if d.multilabel:
                w.writerow(["index", "filename", "split", "labelled"] + [f"true_{n}" for n in d.names] + cols + [f"graph_prob_{n}" for n in d.names])
                for i in range(len(d.split)):
                    w.writerow([i, "" if d.filenames is None else d.filenames[i], d.split[i], int(d.labelled[i])]
                               + d.targets[i].tolist() + [f"{v:.5f}" for v in p_main[i]] + [f"{v:.5f}" for v in p_graph[i]])
                return
            w.writerow(["index", "filename", "split", "labelled", "true", "pred", "pred_net", "pred_graph"] + cols)
            pm, pn, pg = p_main.argmax(1), p_net.argmax(1), p_graph.argmax(1)
            for i in range(len(d.split)):
                w.writerow([i, "" if d.filenames is None else d.filenames[i], d.split[i], int(d.labelled[i]), d.names[d.targets[i]],
                            d.names[pm[i]], d.names[pn[i]], d.names[pg[i]]] + [f"{v:.5f}" for v in p_main[i]])

    def _write_history(self) -> None:
        rows = self.state["history"]
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        with open(self.dir / "history.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys + ["stop_reason"])
            w.writeheader()
            for i, r in enumerate(rows):
                out = dict(r)
                last_of_phase = i + 1 == len(rows) or rows[i + 1]["phase"] != r["phase"]
                out["stop_reason"] = self.state["stop_reasons"].get(r["phase"], "") if last_of_phase else ""
                w.writerow(out)


def run_experiment(cfg: RunConfig, resume: bool = False, imageset=None) -> tuple[dict, Path]:
    """Run (or resume) ``cfg``; return ``(metrics, run folder)``."""
    exp = Experiment(cfg, resume=resume, imageset=imageset)
    return exp.run(), exp.dir


@dataclass
class TrainingResult:
    """What :func:`run_training` gives: the metrics (as in metrics.json), the run folder and the
    prepared data (images, split, labelled mask) the run used."""

    metrics: dict
    rundir: RunDir
    data: object  # graphzoo.data.PreparedData


def run_training(cfg: RunConfig, resume: bool = False, imageset=None) -> TrainingResult:
    """Train and evaluate one run of ``cfg`` (One Pass or Dynamic Pass), or continue it (``resume``)."""
    exp = Experiment(cfg, resume=resume, imageset=imageset)
    metrics = exp.run()
    return TrainingResult(metrics, exp.rundir, exp.data)
