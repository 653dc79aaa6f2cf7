"""Self-supervised objectives and a check that a representation has not collapsed.

* :func:`nt_xent` — SimCLR's normalized-temperature cross-entropy (Chen et al., ICML 2020);
* :func:`vicreg` — variance-invariance-covariance regularisation (Bardes et al., ICLR 2022);
* :func:`supcon` — the supervised contrastive loss (Khosla et al., NeurIPS 2020) on labels or pseudo-labels;
* :func:`representation_health` / :func:`check_not_collapsed` — feature spread and effective rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["nt_xent", "vicreg", "supcon", "projector", "representation_health", "check_not_collapsed",
           "CollapsedRepresentationError"]


class CollapsedRepresentationError(ValueError):
    """The pretrained encoder maps every image to (almost) the same point, or onto a line."""


def projector(in_dim: int, hidden: int, out: int) -> nn.Module:
    """The 2-layer MLP head ``g`` the objective is applied to (``Linear-BN-ReLU-Linear``); discarded after
    pretraining: ψ's own output, before ``g``, is the representation kept (SimCLR §4.2)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's loss over a batch of ``B`` positive pairs ``(z1[i], z2[i])``, each of shape ``(B, d)``.

    With ``u`` the 2B rows of ``[z1; z2]`` scaled to unit length, ``s_ij = u_i·u_j / τ``, and ``p(i)``
    the other view of ``i``::

        L = 1/(2B) Σ_i  −log( exp(s_{i,p(i)}) / Σ_{j≠i} exp(s_ij) )

    Every other image of the batch (both its views) is a negative; no memory bank, so the batch
    size sets the negatives (2B − 2 of them).
    """
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    s = u @ u.T / temperature
    n = len(z1)
    s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=s.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(s.device)
    return F.cross_entropy(s, positive)


def vicreg(z1: torch.Tensor, z2: torch.Tensor, sim: float = 25.0, var: float = 25.0, cov: float = 1.0,
           eps: float = 1e-4) -> torch.Tensor:
    """VICReg over ``(B, d)`` embeddings of two views::

        L = sim · mean‖z1 − z2‖² / d  +  var · Σ_views mean_k max(0, 1 − √(Var z_k + ε))
            + cov · Σ_views Σ_{k≠l} C_kl² / d

    with ``C`` the covariance matrix of a view's embeddings. The variance term keeps every
    dimension spread (no collapse without negatives), the covariance term decorrelates them.
    """
    d = z1.shape[1]
    invariance = F.mse_loss(z1, z2)
    variance = covariance = 0.0
    for z in (z1, z2):
        z = z - z.mean(0)
        variance = variance + F.relu(1 - torch.sqrt(z.var(0) + eps)).mean()
        c = (z.T @ z) / (len(z) - 1)
        covariance = covariance + (c.pow(2).sum() - c.diagonal().pow(2).sum()) / d
    return sim * invariance + var * variance + cov * covariance


def supcon(z: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None,
           temperature: float = 0.1) -> torch.Tensor:
    """The supervised contrastive loss over one view of a batch (Khosla et al. 2020, L_out, single view).

    ``z`` (B, d) features, ``labels`` (B,) class indices (labels or pseudo-labels), ``weights`` (B,) ≥ 0 per
    anchor (default 1). With ``u`` the rows of ``z`` scaled to unit length, ``s_ij = u_i·u_j / τ``, ``P(i)`` the
    other rows of i's class and ``A(i)`` all rows but i::

        L_i = −1/|P(i)| Σ_{p∈P(i)} log( exp(s_ip) / Σ_{a∈A(i)} exp(s_ia) )
        L   = Σ_i w_i L_i / Σ_i w_i          over the anchors with |P(i)| > 0

    Same-class images of the batch are pulled together and the others pushed away on the unit sphere,
    which is where the graph's cosine kNN looks: applied to ψ itself (no projection head), it shapes the
    neighbourhoods the graph is built from. Zero (with a gradient) when no anchor has a positive.
    """
    u = F.normalize(z.float(), dim=1)
    s = u @ u.T / temperature
    eye = torch.eye(len(u), dtype=torch.bool, device=u.device)
    log_prob = s - torch.logsumexp(s.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = positive.sum(1)
    per_anchor = -(log_prob * positive).sum(1) / n_pos.clamp_min(1)
    w = torch.ones_like(per_anchor) if weights is None else weights.to(per_anchor)
    w = w * (n_pos > 0)
    return (w * per_anchor).sum() / w.sum().clamp_min(1e-12)


def representation_health(features: torch.Tensor) -> dict:
    """Spread of ``features`` (n, d): ``std`` = the mean over dimensions of the standard deviation across
    images, relative to the features' RMS norm per dimension; ``effective_rank`` = exp(entropy of the
    normalised singular values of the centred features) (Roy & Vetterli 2007): d for features spread
    evenly over d directions, 1 when they lie on a line, 0 when all are equal."""
    f = features.double()
    scale = f.pow(2).mean().sqrt().clamp_min(1e-12)
    centred = f - f.mean(0)
    std = float(centred.std(0).mean() / scale) if len(f) > 1 else 0.0
    sv = torch.linalg.svdvals(centred)
    total = sv.sum()
    if total <= 1e-9 * scale * len(f):
        return {"std": std, "effective_rank": 0.0}
    p = sv / total
    p = p[p > 0]
    return {"std": std, "effective_rank": float(torch.exp(-(p * p.log()).sum()))}


def check_not_collapsed(health: dict, what: str, min_std: float = 1e-3, min_rank: float = 1.5) -> None:
    """Raise :class:`CollapsedRepresentationError` when the features of ``what`` are (almost) all equal
    (relative std below ``min_std``) or lie on a line (effective rank below ``min_rank``): a kNN graph
    over them would join arbitrary images."""
    if health["std"] < min_std or health["effective_rank"] < min_rank:
        raise CollapsedRepresentationError(
            f"{what} collapsed: its features barely vary across images (relative std {health['std']:.2g}, "
            f"effective rank {health['effective_rank']:.2f} of the {health.get('dim', '?')} dimensions), so a "
            "graph over them would be meaningless. Lower the pretraining lr, use more or stronger views, or "
            "another method (--method), or run without --pretrain")
