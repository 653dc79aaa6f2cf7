"""Which images to label next: graph-based acquisition strategies (torch-free).

Each strategy in :data:`ACQUISITION` ranks the *candidate* nodes (the unlabelled training
images) of a kNN graph by how much a label there would help, given the graph step's class
probabilities::

    strategy(proba, *, W, Z, labelled, candidates, n, rng, cache) -> Picks(index (n,), score (n,))

proba : (N, c) class probabilities of the graph step (rows sum to one).
W : (N, N) sparse symmetric kNN graph the probabilities were diffused on.
Z : (N, d) features (unused by the strategies here; there for feature-space strategies).
labelled : (N,) bool, the nodes whose labels the graph step used.
candidates : (N,) bool, the nodes that may be picked (never labelled ones).
n : how many to pick, 1 ≤ n ≤ candidates.sum().
rng : ``np.random.Generator`` (all randomness, ties included, goes through it).
cache : a dict the caller keeps for one graph, so that work that depends on W only (the
    spectrum of ``model_change``) is done once over many rounds; may be None.

The picks come in rank order (rank 1 first) with a score where larger means "label this
sooner". :func:`acquire` is the front door: it checks the arguments and the strategy's answer
(n distinct candidates), so a strategy registered by a user cannot pick a test or labelled image.

:func:`simulate` measures a strategy on a fully labelled set: labels are revealed from the hidden
truth round by round and the graph step's test accuracy is recorded after each round (graph
only: the features stay fixed, no network is retrained). ``bench/active_bench.py`` and the
experiment grid's ``active:`` cells (:mod:`graphzoo.experiments.active`) both run it.

============================ =============================================================
``random``                   uniform among the candidates (the baseline every strategy must beat)
``uncertainty``              smallest margin p₍₁₎ − p₍₂₎ (Settles 2012)
``uncertainty_diverse``      smallest margin, no two picks graph neighbours (Brinker 2003)
``model_change``             Laplace-learning model change, spectral truncation
                             (Miller & Bertozzi 2021/2024)
============================ =============================================================
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from .registry import Registry

__all__ = ["ACQUISITION", "Picks", "Round", "acquire", "margin_uncertainty", "simulate", "start_labels"]

#: name -> strategy function (see the module docstring for the signature).
ACQUISITION: Registry = Registry("acquisition strategy")


class Picks(NamedTuple):
    """Nodes to label next, best first: ``index`` int64 (n,), ``score`` float64 (n,) (larger = sooner)."""

    index: np.ndarray
    score: np.ndarray


def margin_uncertainty(proba: np.ndarray) -> np.ndarray:
    """Smallest-margin uncertainty ``u = 1 − (p₍₁₎ − p₍₂₎)`` of each row of ``proba`` (n, c) → (n,),
    in [0, 1].

    p₍₁₎ ≥ p₍₂₎ are the two largest class probabilities; u = 1 on the decision boundary, 0 where one
    class has all the mass. A one-class problem has no boundary: u = 0.
    """
    P = np.asarray(proba, dtype=np.float64)
    if P.shape[1] < 2:
        return np.zeros(len(P))
    top2 = np.partition(P, P.shape[1] - 2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def _top(score: np.ndarray, cand: np.ndarray, n: int, rng: np.random.Generator) -> Picks:
    """The n candidates of largest score; ties broken at random (through ``rng``), not by index order."""
    idx = np.flatnonzero(cand)
    tie = rng.random(len(idx))
    order = np.lexsort((tie, -score[idx]))[:n]  # last key is primary: score descending, then the random tie
    return Picks(idx[order].astype(np.int64), score[idx][order].astype(np.float64))


@ACQUISITION.register("random")
def random_sampling(proba, *, W=None, Z=None, labelled=None, candidates, n, rng, cache=None) -> Picks:
    """Uniform sampling without replacement among the candidates; score = 0.

    The passive baseline: the label budget drawn at random, as a study without active learning does.
    """
    idx = rng.choice(np.flatnonzero(candidates), size=n, replace=False)
    return Picks(idx.astype(np.int64), np.zeros(n))


@ACQUISITION.register("uncertainty")
def uncertainty(proba, *, W=None, Z=None, labelled=None, candidates, n, rng, cache=None) -> Picks:
    """Margin uncertainty sampling: the n candidates of smallest margin between the two top classes.

    score_i = 1 − (p₍₁₎ − p₍₂₎)_i (:func:`margin_uncertainty`) on the graph step's probabilities.

    Reference: B. Settles, *Active Learning*, Morgan & Claypool (2012), §2.3 "margin sampling";
    GraphLearning's ``unc_sampling(unc_method='smallest_margin')``. Known weakness: a batch of the
    most uncertain nodes tends to sit in one stretch of the boundary (see ``uncertainty_diverse``).
    """
    return _top(margin_uncertainty(proba), np.asarray(candidates, bool), n, rng)


@ACQUISITION.register("uncertainty_diverse")
def uncertainty_diverse(proba, *, W, Z=None, labelled=None, candidates, n, rng, cache=None) -> Picks:
    """Margin uncertainty with a graph diversity constraint: no two picks are kNN-graph neighbours.

    Go down the candidates in order of decreasing margin uncertainty 1 − (p₍₁₎ − p₍₂₎) and take a
    node unless it is adjacent in W (W_ij > 0) to a node already taken, so one batch spreads along
    the decision boundary instead of labelling n near-duplicates. When fewer than n candidates are
    pairwise non-adjacent, the rest are filled in uncertainty order (then neighbours can occur).

    Reference: K. Brinker, "Incorporating diversity in active learning with support vector
    machines", ICML 2003 (a batch chosen for uncertainty *and* mutual dissimilarity); here the
    dissimilarity is "not joined by an edge of the graph the labels diffuse on".
    """
    cand = np.asarray(candidates, bool)
    ranked = _top(margin_uncertainty(proba), cand, int(cand.sum()), rng)
    W = sp.csr_matrix(W)
    blocked = np.zeros(W.shape[0], bool)
    taken: list[int] = []
    for i in ranked.index:
        if blocked[i]:
            continue
        taken.append(int(i))
        blocked[W.indices[W.indptr[i]:W.indptr[i + 1]]] = True
        if len(taken) == n:
            break
    if len(taken) < n:  # not enough mutually non-adjacent nodes: fill in uncertainty order
        chosen = set(taken)
        taken += [int(i) for i in ranked.index if int(i) not in chosen][: n - len(taken)]
    order = np.asarray(taken, np.int64)
    return Picks(order, margin_uncertainty(proba)[order])


@ACQUISITION.register("model_change")
def model_change(proba, *, W, Z=None, labelled, candidates, n, rng, cache=None,
                 n_eigs: int = 50, gamma: float = 0.5, tau: float = 1e-3) -> Picks:
    """Model-change (MC) acquisition of Miller & Bertozzi on the graph's spectral truncation.

    Gaussian-regression view of Laplace learning: prior covariance C₀ = (L + τI)⁻¹ with
    L = I − D^{-1/2} W D^{-1/2}, truncated to its m = ``n_eigs`` smoothest eigenpairs (λ_j, v_j),
    so that C₀ ≈ V diag(1/(λ+τ)) Vᵀ. Conditioning on the labelled nodes ℒ with noise γ² gives, in
    the m-dimensional basis, C = (diag(λ+τ) + V_ℒᵀ V_ℒ / γ²)⁻¹. Labelling node k would move the
    posterior mean by an amount proportional to

        MC(k) = u_k · ‖C v_k‖₂ / (γ² + v_kᵀ C v_k),

    where v_k is row k of V and u_k = 1 − (p₍₁₎ − p₍₂₎)_k the margin uncertainty (the size of the
    label's surprise). Picks are made one at a time: after each pick C is updated as if that node
    were labelled (C ← C − C v_k v_kᵀ C / (γ² + v_kᵀ C v_k), independent of the label), so a batch
    does not repeat one region. u stays that of the current graph step (the labels are unknown).

    γ = 0.5, not GraphLearning's 0.1: with posterior variance c along v_k the ratio is about
    c‖v_k‖/(γ² + c‖v_k‖²), largest at ‖v_k‖ = γ/√c, so a small γ favours nodes the m smooth
    eigenvectors represent poorly (low-degree outliers). On the two-moons bench (bench/README.md)
    γ = 0.1 picked such outliers and fell below random; γ = 0.5 was chosen there, then checked
    on the malaria features without further tuning.

    Differences from the paper, said plainly: u comes from the run's own graph step (its energy),
    where the paper uses the Gaussian-regression posterior mean; the spectrum is of the symmetric
    normalised Laplacian, as in GraphLearning's ``model_change`` examples.

    References: K. Miller and A. L. Bertozzi, "Model-change active learning in graph-based
    semi-supervised learning", arXiv:2110.07739 (2021), Communications on Applied Mathematics and
    Computation (2024); J. Calder et al., GraphLearning ``active_learning.model_change``.
    """
    cand = np.asarray(candidates, bool)
    lam, V = _spectrum(W, n_eigs, cache)
    g2 = gamma ** 2
    VL = V[np.asarray(labelled, bool)]
    C = np.linalg.inv(np.diag(lam + tau) + VL.T @ VL / g2)
    unc = margin_uncertainty(proba)
    idx = np.flatnonzero(cand)
    # Candidates with no uncertainty cannot change the model; keeping them only costs time.
    pool = idx[unc[idx] > 0] if (unc[idx] > 0).sum() >= n else idx
    Vp = V[pool]
    tie = rng.random(len(pool)) * 1e-12  # random tie-break, far below any real score difference
    alive = np.ones(len(pool), bool)
    order, scores = [], []
    for _ in range(n):
        CV = Vp @ C  # (p, m): row i is (C v_i)ᵀ (C symmetric)
        mc = unc[pool] * np.linalg.norm(CV, axis=1) / (g2 + np.einsum("ij,ij->i", CV, Vp))
        mc = np.where(alive, mc + tie, -np.inf)
        j = int(np.argmax(mc))
        order.append(int(pool[j]))
        scores.append(float(mc[j]))
        alive[j] = False
        cv = CV[j]
        C = C - np.outer(cv, cv) / (g2 + cv @ Vp[j])
    return Picks(np.asarray(order, np.int64), np.asarray(scores))


def _spectrum(W, m: int, cache: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """The m smallest eigenpairs (λ (m,), V (N, m)) of L = I − D^{-1/2} W D^{-1/2}, cached per graph.

    Computed as the largest eigenpairs of S = D^{-1/2} W D^{-1/2} (λ = 1 − μ): Lanczos converges on
    the largest end of the spectrum quickly, without the shift-invert factorisation of L.
    """
    key = ("spectrum", m)
    if cache is not None and key in cache:
        return cache[key]
    W = sp.csr_matrix(W, dtype=np.float64)
    N = W.shape[0]
    deg = np.asarray(W.sum(1)).ravel()
    dinv = np.where(deg > 0, 1.0 / np.sqrt(np.maximum(deg, 1e-300)), 0.0)
    S = sp.diags(dinv) @ W @ sp.diags(dinv)
    m = max(1, min(m, N - 2))
    # A fixed start vector: ARPACK's own default is random, which would make the picks vary by run.
    v0 = np.ones(N) / np.sqrt(N)
    mu, V = eigsh(S, k=m, which="LA", v0=v0, tol=1e-6, maxiter=max(1000, 20 * N))
    lam = np.clip(1.0 - mu, 0.0, None)
    out = (lam, V)
    if cache is not None:
        cache[key] = out
    return out


def acquire(strategy, proba, *, W, candidates, n: int, labelled=None, Z=None, seed: int = 0,
            rng: np.random.Generator | None = None, cache: dict | None = None) -> Picks:
    """Check the inputs, run ``strategy`` (a name in :data:`ACQUISITION` or a callable), check its picks.

    Parameters
    ----------
    proba : (N, c) class probabilities; W : (N, N) sparse graph; Z : (N, d) features or None.
    candidates : (N,) bool, the nodes that may be picked; labelled : (N,) bool (default: none).
    n : number of picks; refused (ValueError) when < 1 or more than the candidates.
    seed / rng : the randomness (``rng`` wins when given).

    Returns
    -------
    Picks
        ``index`` (n,) distinct candidate nodes, best first, and their ``score`` (n,).
    """
    fn = ACQUISITION.get(strategy) if isinstance(strategy, str) else strategy
    proba = np.asarray(proba, dtype=np.float64)
    N = len(proba)
    cand = np.asarray(candidates, bool)
    lab = np.zeros(N, bool) if labelled is None else np.asarray(labelled, bool)
    if cand.shape != (N,) or lab.shape != (N,):
        raise ValueError(f"candidates and labelled must be boolean masks of shape ({N},) like proba's rows")
    cand = cand & ~lab  # a labelled node is never a candidate
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the number of suggestions must be a positive integer, got {n!r}")
    if n > cand.sum():
        raise ValueError(f"{n} suggestions asked but only {int(cand.sum())} unlabelled candidate images remain; "
                         f"ask for at most {int(cand.sum())}")
    rng = rng if rng is not None else np.random.default_rng(seed)
    picks = fn(proba, W=W, Z=Z, labelled=lab, candidates=cand, n=int(n), rng=rng, cache=cache)
    index = np.asarray(picks.index, np.int64)
    if len(index) != n or len(np.unique(index)) != n or not cand[index].all():
        raise RuntimeError(f"acquisition strategy {strategy!r} returned {len(index)} picks, not {n} distinct "
                           "candidates: a bug in the strategy")
    return Picks(index, np.asarray(picks.score, np.float64))


class Round(NamedTuple):
    """One point of a simulated labelling curve: labels used, and the graph step's test accuracy and
    ROC-AUC (binary: of class 1; more classes: macro one-vs-rest; None when the test images hold one
    class)."""

    n_labels: int
    accuracy: float
    auc: float | None


def start_labels(y: np.ndarray, pool: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """(N,) bool: ``per_class`` random nodes of ``pool`` (N,) bool in each class of ``y[pool]``.

    Raises ValueError naming the class when the pool holds fewer than ``per_class`` of it.
    """
    y, pool = np.asarray(y), np.asarray(pool, bool)
    lab = np.zeros(len(y), bool)
    for k in np.unique(y[pool & (y >= 0)]):
        members = np.flatnonzero(pool & (y == k))
        if len(members) < per_class:
            raise ValueError(f"class {int(k)} has {len(members)} candidate images, fewer than the {per_class} "
                             "start labels per class asked; lower start_per_class")
        lab[rng.choice(members, per_class, replace=False)] = True
    return lab


def _test_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    present = np.unique(y)
    if len(present) < 2:
        return None
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    if len(present) < proba.shape[1]:  # a class absent from the test images: AUC over the present ones
        P = proba[:, present] / np.maximum(proba[:, present].sum(1, keepdims=True), 1e-300)
        return float(roc_auc_score(np.searchsorted(present, y), P, multi_class="ovr", average="macro"))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro"))


def simulate(strategy, y_true, labelled0, candidates, test, *, W=None, Z=None, rounds: int, batch: int,
             energy="label_spreading", energy_params: dict | None = None, n_neighbors: int = 10,
             metric: str = "cosine", seed: int = 0, cache: dict | None = None) -> list[Round]:
    """Simulated active labelling on fixed features: reveal ``batch`` labels a round, score the graph step.

    Round r = 0..rounds: run the graph step (``energy``) on the labels revealed so far and score
    its prediction of the ``test`` nodes against ``y_true``; then (r < rounds) let ``strategy``
    pick ``batch`` nodes among ``candidates`` not yet labelled and reveal their truth. Only the
    graph step is re-run: ψ (``Z`` or ``W``) is never retrained, so the curve measures the
    acquisition strategy on a fixed graph, not a full active-learning loop.

    Parameters
    ----------
    strategy : a name in :data:`ACQUISITION` or a callable (see the module docstring).
    y_true : (N,) int, the hidden truth (≥ 0 on the candidates and the test nodes; -1 elsewhere allowed).
    labelled0 : (N,) bool, the start labels (a subset of ``candidates``, every class present).
    candidates : (N,) bool, nodes whose label may be revealed; never overlaps ``test``.
    test : (N,) bool, nodes scored; never labelled, never a candidate.
    W : (N, N) sparse kNN graph, or None to build it from ``Z`` (N, d) with ``n_neighbors``, ``metric``.
    rounds, batch : number of rounds (≥ 0) and labels revealed per round (≥ 1).
    seed : round r's picks use ``np.random.default_rng([seed, r])``.
    cache : per-graph cache of the strategies (see :func:`acquire`); share it across calls on one W.

    Returns
    -------
    list of :class:`Round`, ``rounds + 1`` entries; ``n_labels`` grows by ``batch`` each round.
    """
    from .energies import prepare_graph
    from .graph_step import build_graph, graph_step

    y = np.asarray(y_true)
    lab = np.asarray(labelled0, bool).copy()
    cand, test = np.asarray(candidates, bool), np.asarray(test, bool)
    if not (y.shape == lab.shape == cand.shape == test.shape) or y.ndim != 1:
        raise ValueError(f"y_true, labelled0, candidates and test must be 1-D of one length; got shapes "
                         f"{y.shape}, {lab.shape}, {cand.shape}, {test.shape}")
    if (cand & test).any() or (lab & ~cand).any():
        raise ValueError("test nodes may not be candidates, and the start labels must be candidates: "
                         "pass disjoint masks")
    if (y[cand | test] < 0).any():
        raise ValueError("every candidate and test node needs a hidden truth (y_true ≥ 0) to simulate labelling")
    if rounds < 0 or batch < 1 or lab.sum() + rounds * batch > cand.sum():
        raise ValueError(f"{rounds} rounds of {batch} labels from {int(lab.sum())} start labels need "
                         f"{int(lab.sum()) + rounds * batch} candidates, {int(cand.sum())} given; ask for fewer")
    if W is None:
        W = build_graph(Z, n_neighbors, metric)
    G = prepare_graph(W)  # checked, components and renumbering once for all rounds
    W = G.W
    c = int(y.max()) + 1
    curve: list[Round] = []
    for r in range(rounds + 1):
        step = graph_step(None, np.where(lab, y, -1), energy=energy, energy_params=energy_params, W=G, n_classes=c)
        pred = step.predictions[test]
        curve.append(Round(int(lab.sum()), float((pred == y[test]).mean()), _test_auc(y[test], step.proba[test])))
        if r == rounds:
            break
        picks = acquire(strategy, step.proba, W=W, Z=Z, candidates=cand & ~lab, labelled=lab, n=batch,
                        rng=np.random.default_rng([seed, r]), cache=cache)
        lab[picks.index] = True  # the oracle: the hidden truth of the picked nodes is revealed
    return curve
