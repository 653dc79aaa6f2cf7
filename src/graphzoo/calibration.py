"""Honest confidences for single-label predictions: temperature scaling, calibration error, conformal sets.

Everything here takes plain arrays (numpy / scipy, no torch) and is fitted on *held-out* labelled
images (in a run: the labelled validation images, whose labels never enter the graph):

* **Temperature scaling** (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017):
  one scalar T > 0 rescales the log-probabilities, ``p_T = softmax(log p / T)``, chosen to minimise
  the negative log-likelihood of the held-out labels. T > 1 softens an overconfident model, T < 1
  sharpens an underconfident one. Dividing every log-probability of a row by the same T keeps the
  row's order, so **the predicted class never changes** (nor accuracy, balanced accuracy, AUC per
  row ranking); only the confidence does.
  With few held-out labels one T follows their noise; ``prior_sigma`` shrinks it towards 1: the
  maximum a posteriori T under a log-normal prior ``log T ~ N(0, σ²)`` (regularising a calibration
  map fitted on few points, as Kull et al., "Beyond temperature scaling", NeurIPS 2019, do for
  Dirichlet calibration). The prior weighs like a fixed number of points, so it fades as n grows.
* **Expected calibration error** (Naeini et al. 2015; Guo et al. 2017): the confidences
  ``max_k p_k`` in ``n_bins`` equal-width bins of [0, 1]; ``ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)|``.
  A perfectly calibrated model (an image given confidence 0.8 is right 80 % of the time) has ECE ≈ 0.
* **Split-conformal prediction sets**, LAC score (Sadinle, Lei & Wasserman, "Least Ambiguous
  Set-Valued Classifiers with Bounded Error Levels", JASA 2019; the recipe as in Angelopoulos &
  Bates, "A Gentle Introduction to Conformal Prediction", 2021): with the scores ``s_i = 1 − p_i[y_i]``
  of n held-out images and α = 1 − coverage, ``q̂`` is the ⌈(n+1)(1−α)⌉-th smallest score, and the
  set of an image is ``{k : p_k ≥ 1 − q̂}``. When the held-out and the new images are exchangeable,
  ``P(y ∈ set) ≥ 1 − α`` (and ≤ 1 − α + 1/(n+1) without ties): a guarantee, not a score. (A run
  calibrates on its validation images, which also chose its checkpoint: there the guarantee is
  approximate, see :mod:`graphzoo.train.evaluate`.) With
  ⌈(n+1)(1−α)⌉ > n (too few held-out images for that coverage) q̂ = 1: every class is in the set.
* **Optimism check** (:func:`optimism_p_value`): a calibration set borrowed from images a model was
  fitted on (out-of-fold graph scores of the labelled training images, whose labels trained ψ) is
  only worth using if its scores look like those of images the model never saw. The one-sided
  Mann–Whitney U test asks whether the borrowed images' confidences are stochastically larger
  than those of comparable images without a label; it needs no label of the latter.
* **Refer to a human** (:func:`refer`): when the set is not exactly one class. An empty set (no
  class is plausible enough) or a set of two or more (the model cannot tell them apart at the
  chosen coverage) both mean the image needs a person.

Multi-label tasks are not handled here: each label is its own two-class problem, and one
temperature / one set per image would be the wrong object; graphzoo skips calibration for them
(and says so in ``metrics.json``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

__all__ = ["fit_temperature", "apply_temperature", "expected_calibration_error", "reliability", "reliability_bins",
           "nll", "conformal_rank", "optimism_p_value", "OPTIMISM_ALPHA", "TEMPERATURE_PRIOR_SIGMA",
           "conformal_threshold", "prediction_sets", "refer", "selective_accuracy", "MIN_CALIBRATION"]

#: Below this many held-out labels the temperature is not fitted (T = 1): one scalar fitted on a
#: handful of images would follow their noise.
MIN_CALIBRATION = 10

#: σ of the log-normal prior ``log T ~ N(0, σ²)`` a run puts on its temperature (:func:`fit_temperature`):
#: T between 0.37 and 2.7 at two σ. On malaria at 1 % labels (28 validation images) it lowered the test ECE
#: on every seed; from ~140 points on it moves T by a few per cent (docs/results.md, 2026-11-30).
TEMPERATURE_PRIOR_SIGMA = 0.5

_EPS = 1e-12  # log(0) guard: energies can give a class exactly zero probability


def _check(P, y=None, name: str = "proba") -> tuple[np.ndarray, np.ndarray | None]:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] < 2:
        raise ValueError(f"{name} must have shape (n, c) with c >= 2 classes, got {P.shape}")
    if not np.isfinite(P).all():
        raise ValueError(f"{name} holds NaN or infinite values; check the model's outputs")
    if y is None:
        return P, None
    y = np.asarray(y)
    if y.shape != (len(P),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be integer class indices of shape ({len(P)},), got {y.dtype} {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= P.shape[1]):
        raise ValueError(f"y holds class indices outside [0, {P.shape[1]}): drop the unlabelled (-1) rows first")
    return P, y


def _is_proba(P: np.ndarray) -> bool:
    return bool(P.min() >= 0 and P.max() <= 1 and np.allclose(P.sum(1), 1, atol=1e-4))


def _log_proba(P: np.ndarray, logits: bool | None) -> np.ndarray:
    """Log-probabilities (n, c): ``log_softmax`` of logits, or ``log`` of clipped probabilities."""
    if logits is None:
        logits = not _is_proba(P)
    return log_softmax(P, axis=1) if logits else np.log(np.clip(P, _EPS, 1.0))


def nll(proba, y) -> float:
    """Mean negative log-likelihood ``−mean_i log p_i[y_i]`` of probabilities (n, c)."""
    P, y = _check(proba, y)
    return float(-np.log(np.clip(P[np.arange(len(y)), y], _EPS, 1.0)).mean()) if len(y) else float("nan")


def fit_temperature(proba_or_logits, y, *, logits: bool | None = None, bounds=(0.05, 20.0),
                    prior_sigma: float | None = None) -> float:
    """The temperature T minimising the NLL of ``softmax(log p / T)`` on held-out labels ``y``.

    proba_or_logits : (n, c) probabilities (rows summing to one) or logits; ``logits`` says which
        (default: probabilities when every row is a probability vector).
    y : (n,) int class indices.
    bounds : the range searched for T. The NLL is convex in β = 1/T (a log-sum-exp of linear
        functions of β minus a linear one), so a bounded 1-D search over log β finds its minimum.
    prior_sigma : None: the maximum-likelihood T. A float σ > 0: the maximum a posteriori T under
        ``log T ~ N(0, σ²)``, i.e. the minimiser of ``Σ_i −log p_T,i[y_i] + (log T)² / (2σ²)``: the
        NLL is unimodal along log β = −log T (convex in β) and the prior term is convex in it, so the
        same bounded search serves. The prior counts like a fixed number of points: it fades as n grows.

    Returns T (float); 1.0 when fewer than :data:`MIN_CALIBRATION` labels are given.
    """
    P, y = _check(proba_or_logits, y, "proba_or_logits")
    if prior_sigma is not None and not prior_sigma > 0:
        raise ValueError(f"prior_sigma must be > 0 (or None for no prior), got {prior_sigma}")
    if len(y) < MIN_CALIBRATION:
        return 1.0
    L = _log_proba(P, logits)
    rows = np.arange(len(y))
    penalty = 0.0 if prior_sigma is None else 1.0 / (2.0 * prior_sigma ** 2 * len(y))  # per point: mean NLL scale

    def loss(log_beta: float) -> float:
        lp = log_softmax(L * math.exp(log_beta), axis=1)
        return float(-lp[rows, y].mean()) + penalty * log_beta ** 2  # log T = −log β: the same square

    lo, hi = math.log(1 / bounds[1]), math.log(1 / bounds[0])
    res = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
    # the identity wins ties: a flat NLL (e.g. every row uniform) gives no reason to move
    return 1.0 if loss(0.0) <= res.fun + 1e-12 else float(math.exp(-res.x))


def apply_temperature(proba, T: float, *, logits: bool | None = None) -> np.ndarray:
    """``softmax(log p / T)`` of shape (n, c); each row keeps its argmax (and its order of classes)."""
    if not T > 0:
        raise ValueError(f"temperature must be > 0, got {T}")
    P, _ = _check(proba)
    if len(P) == 0:
        return P
    return np.exp(log_softmax(_log_proba(P, logits) / T, axis=1))


def reliability(proba, y, n_bins: int = 15) -> dict:
    """Per equal-width confidence bin: what a reliability diagram draws.

    Returns a dict of arrays of length ``n_bins``: ``edges`` (n_bins + 1,), ``confidence`` (mean
    confidence of the bin, NaN if empty), ``accuracy`` (share correct, NaN if empty), ``count``;
    and ``ece`` (float). Bin b holds confidences in (b/n_bins, (b+1)/n_bins]; the first also holds 0.
    """
    P, y = _check(proba, y)
    return reliability_bins(P.max(1), P.argmax(1) == y, n_bins)


def reliability_bins(confidence, correct, n_bins: int = 15) -> dict:
    """:func:`reliability` from each image's confidence (n,) and whether its prediction was right (n,)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, conf, n_bins) / count
        acc = np.bincount(b, correct, n_bins) / count
    gap = np.where(count > 0, np.abs(np.nan_to_num(acc) - np.nan_to_num(mean_conf)), 0.0)
    ece = float((count * gap).sum() / max(len(conf), 1))
    return {"edges": edges, "confidence": mean_conf, "accuracy": acc, "count": count, "ece": ece}


def expected_calibration_error(proba, y, n_bins: int = 15) -> float:
    """ECE = Σ_b |B_b|/n · |acc(B_b) − conf(B_b)| over ``n_bins`` equal-width confidence bins (see module)."""
    return reliability(proba, y, n_bins)["ece"]


def conformal_rank(n: int, coverage: float) -> int:
    """⌈(n+1)·coverage⌉: which smallest calibration score is q̂ (the finite-sample correction). Above n,
    ``n`` held-out images are too few for that coverage."""
    return math.ceil((n + 1) * coverage - 1e-9)  # 1e-9 absorbs float noise in (n+1)·coverage


def conformal_threshold(proba_cal, y_cal, coverage: float = 0.9) -> float:
    """q̂ of split-conformal LAC sets: the ⌈(n+1)·coverage⌉-th smallest score ``1 − p_i[y_i]``.

    proba_cal : (n, c) probabilities of the held-out (calibration) images; y_cal : (n,) their labels.
    Returns q̂ in [0, 1]; 1.0 (every class in every set) when n is too small for the coverage,
    i.e. ⌈(n+1)·coverage⌉ > n.
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    P, y = _check(proba_cal, y_cal, "proba_cal")
    n = len(y)
    rank = conformal_rank(n, coverage)
    if rank > n:
        return 1.0
    scores = np.sort(1.0 - P[np.arange(n), y])
    return float(scores[rank - 1])


#: Below this one-sided p-value of :func:`optimism_p_value` borrowed scores count as optimistic (the calibration set
#: keeps them out, a --no-holdout cross-validation is flagged).
OPTIMISM_ALPHA = 0.05


def optimism_p_value(confidence_borrowed, confidence_reference) -> float:
    """One-sided Mann–Whitney U p-value that ``confidence_borrowed`` (n1,) is stochastically larger than
    ``confidence_reference`` (n2,) (e.g. max-probabilities of out-of-fold labelled images vs images without a
    label scored in the same diffusions). Small: the borrowed images look more certain than the others, so
    calibrating on them would make the model look better calibrated than it is. NaN when either is empty."""
    from scipy.stats import mannwhitneyu

    a = np.asarray(confidence_borrowed, np.float64).ravel()
    b = np.asarray(confidence_reference, np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("confidences hold NaN or infinite values; check the model's outputs")
    return float(mannwhitneyu(a, b, alternative="greater").pvalue)


def prediction_sets(proba, qhat: float) -> np.ndarray:
    """Bool (n, c): class k is in image i's set when ``1 − p_i[k] ≤ q̂``, i.e. ``p_i[k] ≥ 1 − q̂``."""
    P, _ = _check(proba)
    # a hair of slack: probabilities read back from a CSV are rounded
    return (1.0 - P) <= qhat + 1e-9


def refer(sets: np.ndarray) -> np.ndarray:
    """Bool (n,): refer the image to a human when its prediction set is not exactly one class."""
    return np.asarray(sets).sum(1) != 1


def selective_accuracy(confidence, correct, fractions) -> np.ndarray:
    """Accuracy on the images kept when the least confident ``fraction`` of them are referred.

    confidence, correct : (n,) arrays; fractions : values in [0, 1). Returns (len(fractions),);
    NaN where nothing is kept. Ties in confidence are broken by position (a stable sort).
    """
    conf, ok = np.asarray(confidence, float), np.asarray(correct, float)
    order = np.argsort(-conf, kind="stable")  # most confident first
    out = []
    for f in np.atleast_1d(fractions):
        keep = len(conf) - int(math.floor(f * len(conf) + 1e-9))
        out.append(ok[order[:keep]].mean() if keep > 0 else float("nan"))
    return np.array(out)
