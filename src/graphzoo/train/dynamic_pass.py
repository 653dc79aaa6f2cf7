"""Dynamic Pass (the seed's Listing 1.2, the LP-DeepSSL recipe): pseudo-labels from the graph, every epoch.

After the same supervised warm-up as One Pass, each ``dynamic`` epoch

1. embeds the training images with the current net, builds the kNN graph and diffuses the labels
   (:func:`graphzoo.graph_step.graph_step`);
2. pseudo-labels every unlabelled training image, ŷ_i = argmax p_i, with certainty
   ξ_i = 1 − H(p_i)/log c (0 where no label reaches the node) and class weight
   ζ_j = (n/c) / |{i : ŷ_i = j}|;
3. trains one epoch on ``Σ_L ℓ(f(x_i), y_i) + α(t) Σ_U ξ_i ζ_ŷi ℓ(f(x_i), ŷ_i)`` with a fixed number
   of labelled images in every batch and α(t) ramped up (Laine & Aila).

The graph's pseudo-labels are the targets the net distils from (SimCLRv2's third step), with hard
labels weighted by ξζ as LP-DeepSSL. Two differences from LP-DeepSSL's weights, both small at 1–20 %
labels: ζ counts the reachable pseudo-labels only (LP-DeepSSL: |L_j ∪ U_j| over all images) and
multiplies the pseudo-labelled loss only (LP-DeepSSL also the labelled one).

Stabilisers (LP-DeepSSL, LaplaceNet; all off by default, which reproduces earlier runs):

* ``dynamic_lr="cosine"``: the learning rate annealed per step over all dynamic epochs,
  :func:`cosine_lr`, so the net settles instead of jumping between pseudo-label epochs;
* ``ema_decay=d``: a mean teacher θ' ← d θ' + (1 − d) θ after every step (:func:`ema_update`; BatchNorm
  buffers copied, then recomputed by ``precise_bn``), started from the warm-up's net. Its features
  build the graph, and it is validated each epoch beside the net (``ema_val_*`` in the history);
* ``final_model="best"``: the final model is the best-validating of the dynamic epochs' nets (and
  teachers), not the last one.

``mixup_alpha=a`` mixes every batch with a shuffled copy of itself (LaplaceNet's mixup; :func:`mixup_losses`).
``supcon_weight=λ`` adds a supervised contrastive term on ψ over labels and pseudo-labels
(:func:`graphzoo.selfsup.losses.supcon`).

``pseudo_views="strong"`` noises the student: the pseudo-labelled images of each batch are random
:class:`~graphzoo.selfsup.views.ViewMaker` views (crop, blur, brightness / contrast, noise, the run's
symmetries) instead of the run's flips and turns, while the graph labels them from clean features —
Noisy Student's teacher / noised-student split, so the net cannot simply repeat the graph's errors.
``pseudo_views="exact"`` (the default) does the opposite: the pseudo-labelled images get only the run's exact
flips and quarter turns, none of the rotation, zoom and shift that resample (blur) small images, while the
labelled images keep the full augmentation (on malaria at 1 % labels: graph 0.933 against 0.902 with the same
views for both). Where the run's augmentation resamples nothing, that augmentation is already exact and is used.

Test images stay out of the graph and are classified by the net (inductive), with the
transductive alternative reported too (:mod:`.evaluate`).
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from .. import distributed
from ..graph_step import graph_step
from ..selfsup.losses import supcon
from ..selfsup.views import ViewMaker
from .metrics import multilabel_metrics
from .one_pass import supervised_epoch
from .pretrain import pretrain

__all__ = ["dynamic_pass", "dynamic_epoch", "pseudo_labels", "rampup", "cosine_lr", "ema_update", "mixup_losses"]


def pseudo_labels(trainer) -> dict:
    """Features of the training images → graph → energy → pseudo-labels, certainty ξ and weights ξζ.

    Stores ``{"index", "label", "weight"}`` of the unlabelled training images in
    ``trainer.state["pseudo"]`` (saved with the checkpoint); returns the epoch's diagnostics.
    """
    # the mean teacher's features when there is one; averaged over the test-time views with pseudo_tta, as the
    # final graph's are
    _, Z = trainer.infer(trainer.idx_train, tta=trainer.cfg.pseudo_tta, model=trainer.ema)
    # Under torchrun the graph step runs once, on rank 0, and every rank receives its pseudo-labels.
    pseudo, row = distributed.on_main(_pseudo_labels_from, trainer, Z)
    trainer.state["pseudo"] = pseudo
    return row


def _pseudo_labels_from(trainer, Z: np.ndarray) -> tuple[dict, dict]:
    """:func:`pseudo_labels` given the training images' features Z (n_train, d): (pseudo, diagnostics)."""
    cfg, d = trainer.cfg, trainer.data
    lab_mask = d.labelled[trainer.idx_train]
    y = np.where(lab_mask[:, None] if d.multilabel else lab_mask, d.targets[trainer.idx_train], -1)
    step = graph_step(Z, y, energy=cfg.energy, energy_params=cfg.energy_params, n_neighbors=cfg.n_neighbors,
                      metric=cfg.graph_metric, n_classes=d.n_outputs, multilabel=d.multilabel,
                      device=trainer.graph_device)
    u = ~lab_mask
    P, R, xi = step.proba[u], step.reachable[u], step.certainty[u]
    truth = d.targets[trainer.idx_unl]
    if d.multilabel:
        pseudo = (P > 0.5).astype(np.int64)
        n_u = len(P)
        pos = pseudo.sum(0)
        # ζ per label and value; clipped because a rare finding with 2 pseudo-positives among
        # hundreds would otherwise get a weight in the hundreds.
        zeta_pos = np.clip((n_u / 2) / np.maximum(pos, 1), 0.1, 10)
        zeta_neg = np.clip((n_u / 2) / np.maximum(n_u - pos, 1), 0.1, 10)
        zeta = np.where(pseudo == 1, zeta_pos, zeta_neg) if cfg.class_balance else np.ones_like(P)
        extra = {"pseudo_auc": multilabel_metrics(truth, P, d.names).get("auc")}
    else:
        pseudo = P.argmax(1)
        counts = np.bincount(pseudo[R], minlength=d.n_outputs)
        zeta_c = np.divide(R.sum() / d.n_outputs, counts, out=np.zeros(d.n_outputs), where=counts > 0)
        zeta = zeta_c[pseudo] if cfg.class_balance else np.ones(len(P))
        extra = {"pseudo_class_counts": counts.tolist()}
    if cfg.certainty_normalize and xi.size and xi.max() > 0:  # size 0: every training image is labelled
        xi = xi / xi.max()
    weight = xi * zeta
    state = {"index": trainer.idx_unl.copy(), "label": pseudo, "weight": weight.astype(np.float32)}
    # Diagnostics against the truth, only where the source has one (images without a label are
    # pseudo-labelled and trained on all the same).
    has = d.has_truth[trainer.idx_unl]
    correct, Rt, wt = (pseudo == truth)[has], R[has], weight[has]
    wsum = wt.sum()
    return state, {
        "pseudo_accuracy": float(correct[Rt].mean()) if Rt.any() else None,
        "pseudo_weighted_accuracy": float((wt * correct).sum() / wsum) if wsum > 0 else None,
        "coverage": float(R.mean()) if R.size else None,
        "mean_certainty": float(xi[R].mean()) if R.any() else 0.0,
        **step.info,
        **extra,
    }


def rampup(t: int, T: int, alpha_max: float) -> float:
    """α(t) = alpha_max · exp(−5 (1 − t/T)²) for t < T, else alpha_max (Laine & Aila).

    t counts the dynamic epochs from 1; T = ``rampup_epochs``.
    """
    if T <= 0 or t >= T:
        return alpha_max
    return alpha_max * math.exp(-5.0 * (1.0 - t / T) ** 2)


def cosine_lr(base: float, step: int, total: int) -> float:
    """lr of step ``step`` (from 0) of ``total``: base · ½(1 + cos(π step / total)).

    base at the first step, base / 2 half-way, base · ½(1 + cos(π (S−1)/S)) ≈ 0 at the last one.
    """
    return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Mean teacher: θ' ← d θ' + (1 − d) θ for every parameter; buffers (BatchNorm statistics) copied."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(decay).add_(pm.detach(), alpha=1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def mixup_losses(own: torch.Tensor, other: torch.Tensor, n_labelled: int, weight_u: torch.Tensor, lam: float,
                 perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The labelled and pseudo-labelled losses of a mixed batch, ``(loss_l, loss_u)``.

    Rows ``[0, n_labelled)`` carry labels, the rest pseudo-labels with weights ``weight_u`` (ξζ). Row i saw
    x̃_i = λ x_i + (1 − λ) x_π(i); ``own`` (B,) is its loss against y_i, ``other`` (B,) against y_π(i). Each target
    keeps its coefficient c_j (1 / n_l for a label, ξζ_j / n_u for a pseudo-label), so

        loss_l = Σ_i λ c_i ℓ(x̃_i, y_i) [i labelled] + (1 − λ) c_π(i) ℓ(x̃_i, y_π(i)) [π(i) labelled]

    and loss_u alike over the pseudo-labelled targets; with λ = 1 they are the unmixed batch's mean labelled
    loss and ξζ-weighted mean pseudo-labelled loss.
    """
    b = own.shape[0]
    n_u = b - n_labelled
    c_l = torch.zeros(b, device=own.device, dtype=own.dtype)
    c_l[:n_labelled] = 1.0 / max(n_labelled, 1)
    c_u = torch.zeros(b, device=own.device, dtype=own.dtype)
    c_u[n_labelled:] = weight_u.to(own.device, own.dtype) / max(n_u, 1)
    loss_l = (lam * c_l * own + (1 - lam) * c_l[perm] * other).sum()
    loss_u = (lam * c_u * own + (1 - lam) * c_u[perm] * other).sum()
    return loss_l, loss_u


def dynamic_epoch(trainer) -> dict:
    """New pseudo-labels, then one epoch on labelled + certainty-weighted pseudo-labelled batches."""
    cfg, d = trainer.cfg, trainer.data
    if cfg.ema_decay and trainer.ema is None:
        # The first dynamic epoch (a resumed run restores its teacher from the checkpoint).
        trainer.ema = copy.deepcopy(trainer.model).requires_grad_(False)
    t0 = time.perf_counter()
    row = pseudo_labels(trainer)
    row["pseudo_s"] = round(time.perf_counter() - t0, 3)
    pseudo = trainer.state["pseudo"]
    alpha = rampup(trainer.state["phase_epoch"] + 1, cfg.rampup_epochs, cfg.alpha_max)
    g = trainer.generator()
    bl = cfg.labelled_per_batch
    order = torch.randperm(len(pseudo["index"]), generator=g)
    ubatches = order.split(cfg.batch_size - bl)
    if cfg.max_epoch_steps:
        # An "epoch" of a fixed number of steps (FixMatch-style): each one still sees a fresh
        # random subset of the unlabelled images and rebuilds the graph.
        ubatches = ubatches[: cfg.max_epoch_steps]
    lstream = trainer.labelled_stream(len(ubatches) * bl, g).split(bl)
    g = trainer.augment_generator(g)  # the batch order above is the same on every rank, the augmentations not
    targets = torch.as_tensor(d.targets)
    p_index, p_label, p_weight = (torch.as_tensor(pseudo[k]) for k in ("index", "label", "weight"))
    # The pseudo-labelled rows' views, when not the labelled rows' own. "exact" where the run's augmentation
    # resamples nothing anyway is the run's own (one call, the same random draws as before the option).
    aug = trainer.augment  # None when augment=false
    pseudo_aug = (ViewMaker(hflip=cfg.hflip, vflip=cfg.vflip, rot90=cfg.rot90) if cfg.pseudo_views == "strong"
                  else aug.exact() if cfg.pseudo_views == "exact" and aug is not None and aug.resamples else None)
    mix = None
    if cfg.mixup_alpha > 0:
        if d.multilabel:
            raise ValueError("mixup_alpha needs a single-label task (a mixed multi-label target is not defined "
                             "here). Fix: set mixup_alpha=0 for multi-label data")
        # λ and π from their own stream, seeded by the epoch's (and rank's) generator seed: reproducible, the
        # same after a resume, and the batches' order and augmentations stay those of an unmixed run
        mix = np.random.default_rng([g.initial_seed(), 0x6D6978])
    if cfg.supcon_weight > 0 and d.multilabel:
        raise ValueError("supcon_weight needs a single-label task (a row of several classes has no one class to "
                         "be pulled towards). Fix: set supcon_weight=0 for multi-label data")
    tot = tot_l = tot_u = tot_c = 0.0
    # The cosine runs over the steps of all dynamic epochs; every epoch has the same number of steps.
    first, total = trainer.state["phase_epoch"] * len(ubatches), cfg.epochs * len(ubatches)
    if cfg.dynamic_lr == "cosine":
        row["lr"] = cosine_lr(cfg.lr, first, total)
    bar = trainer.bar(len(ubatches), "dynamic")
    # this process's rows (all of them without torchrun): labelled first, then pseudo-labelled
    pairs = [(trainer.local(lb), trainer.local(ub)) for ub, lb in zip(ubatches, lstream)]
    images = trainer.read_ahead([torch.cat([lb, p_index[ub]]) for lb, ub in pairs])
    for step, ((lb, ub), (idx, raw)) in enumerate(zip(pairs, images)):
        if cfg.dynamic_lr == "cosine":
            for group in trainer.optimizer.param_groups:
                group["lr"] = cosine_lr(cfg.lr, first + step, total)
        if pseudo_aug is None:
            x = trainer.batch(idx, g, raw)
        else:
            x = torch.cat([trainer.batch(idx[: len(lb)], g, raw[: len(lb)]),
                           trainer.batch(idx[len(lb):], g, raw[len(lb):], augment=pseudo_aug)])
        loss_c = None
        if mix is None:
            if cfg.supcon_weight > 0:
                logits, z = trainer.forward(x, with_features=True)
            else:
                logits = trainer.forward(x)
            loss_l = trainer.loss(logits[: len(lb)], targets[lb].to(trainer.device)).mean()
            lu = trainer.loss(logits[len(lb):], p_label[ub].to(trainer.device))
            # no unlabelled image (every training image labelled): the mean of nothing would be NaN
            loss_u = (lu * p_weight[ub].to(trainer.device)).mean() if len(ub) else logits.new_zeros(())
            if cfg.supcon_weight > 0:
                # each anchor as much as its cross-entropy term: 1 for a label, α(t) ξζ for a pseudo-label
                anchor_w = torch.cat([torch.ones(len(lb)), alpha * p_weight[ub].float()]).to(trainer.device)
                y = torch.cat([targets[lb], p_label[ub]]).to(trainer.device)
                loss_c = supcon(z, y, anchor_w, cfg.supcon_temperature)
        else:
            lam = float(mix.beta(cfg.mixup_alpha, cfg.mixup_alpha))
            perm = torch.as_tensor(mix.permutation(len(x)), device=x.device)
            logits = trainer.forward(lam * x + (1 - lam) * x[perm])
            y = torch.cat([targets[lb], p_label[ub]]).to(trainer.device)
            loss_l, loss_u = mixup_losses(trainer.loss(logits, y), trainer.loss(logits, y[perm]), len(lb),
                                          p_weight[ub], lam, perm)
        loss = loss_l + alpha * loss_u
        if loss_c is not None:
            loss = loss + cfg.supcon_weight * loss_c
            tot_c += loss_c.item()
        trainer.optimizer_step(loss, step)
        if trainer.ema is not None:
            ema_update(trainer.ema, trainer.model, cfg.ema_decay)
        tot += loss.item()
        tot_l += loss_l.item()
        tot_u += loss_u.item()
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    k = max(len(ubatches), 1)
    row.update(train_loss=tot / k, loss_labelled=tot_l / k, loss_unlabelled=tot_u / k, alpha=alpha,
               images=sum(len(b) for b in ubatches) + len(ubatches) * bl)
    if cfg.supcon_weight > 0:
        row["loss_contrastive"] = tot_c / k
    if trainer.ema is not None:
        # The teacher's own BatchNorm statistics, then its validation: Trainer._track_best keeps it
        # as best.pt when it beats the net.
        trainer.recalibrate_batchnorm(model=trainer.ema)
        row.update({f"ema_{key}": v for key, v in trainer.validate(trainer.ema).items()})
    return row


def dynamic_pass(trainer) -> None:
    """Pretraining (if any), the supervised warm-up with early stopping, then the dynamic epochs."""
    cfg = trainer.cfg
    pretrain(trainer)
    trainer.phase("supervised", cfg.warmup_epochs, supervised_epoch, early_stopping=True)
    st = trainer.state
    if trainer.final_model() == "best" and st["phase"] != "dynamic" and "dynamic" not in st["finished_phases"]:
        # Choose among the dynamic epochs: the warm-up's best score, the maximum of many noisy
        # validations of a few dozen images, would otherwise outbid every pseudo-label epoch.
        st.update(best=None, best_epoch=-1)
    trainer.phase("dynamic", cfg.epochs, dynamic_epoch)
