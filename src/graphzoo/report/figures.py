"""The report's figures (matplotlib, Agg backend), each returned as PNG bytes.

* :func:`fraction_curves`: a metric against the label fraction, mean ± std error bars per method.
* :func:`embedding_map`: 2-D map of ψ features (t-SNE, UMAP when installed), coloured by class,
  labelled points marked (as in the paper's Fig. 2).
* :func:`embedding_pairs`: such maps side by side, one row per pair of runs (ψ from scratch vs pretrained).
* :func:`graph_map`: the kNN graph drawn on that map, edges subsampled, nodes coloured by the
  predicted class (as in the paper's Fig. 4).
* :func:`example_grid`: test images with truth and prediction, misclassifications included (the paper's Fig. 3).
* :func:`confusion_figure`, :func:`per_label_auc_figure`, :func:`dynamic_curves`.
* :func:`reliability_figure`: accuracy against confidence per bin, before and after temperature scaling.
* :func:`coverage_accuracy_figure`: accuracy on the kept images as the least confident are referred.
* :func:`evidence_grid`: test images beside the labelled images nearest to them ("why this label").
* :func:`active_curves`: simulated active labelling, test accuracy against the labels used, per strategy.
"""

from __future__ import annotations

import io

import numpy as np

__all__ = ["png", "fraction_curves", "embed_2d", "embedding_map", "embedding_pairs", "graph_map", "example_grid",
           "confusion_figure", "per_label_auc_figure", "dynamic_curves", "dynamic_figure", "reliability_figure",
           "coverage_accuracy_figure", "evidence_grid", "active_curves"]

PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display: figures are rendered to bytes
    import matplotlib.pyplot as plt

    return plt


def png(fig, dpi: int = 90) -> bytes:
    """Render and close ``fig``; PNG bytes."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def fraction_curves(summary: dict, metric_name: str, full: dict | None = None) -> bytes:
    """``summary`` as :func:`graphzoo.experiments.summarise` returns it; ``full``: methods drawn as a
    horizontal band (fully supervised, which has one column at 100 %)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    ticks: set[float] = set()
    for i, (key, m) in enumerate(summary.items()):
        fr = sorted(f for f, c in m["cells"].items() if c["mean"] is not None)
        if not fr:
            continue
        mean = np.array([m["cells"][f]["mean"] for f in fr])
        std = np.array([m["cells"][f]["std"] for f in fr])
        color = PALETTE[i % len(PALETTE)]
        if full and key in full:
            ax.axhline(mean[-1], color=color, ls="--", lw=1.2, label=f"{m['label']} ({100 * fr[-1]:g} %)")
            ax.axhspan(mean[-1] - std[-1], mean[-1] + std[-1], color=color, alpha=0.1)
            continue
        ls = "-" if m["kind"] == "method" else ":"
        ticks.update(100 * f for f in fr)
        ax.errorbar(100 * np.array(fr), mean, yerr=std, marker="o", ms=4, capsize=3, ls=ls, color=color,
                    label=m["label"])
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images (%)")
    ax.set_ylabel(metric_name)
    ax.grid(alpha=0.3, which="major")
    # ticks at the grid's label fractions only (a log axis would label 6×10⁰ etc. in between)
    ax.set_xticks(sorted(ticks))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(f"Test {metric_name} vs label fraction (mean ± std over seeds)", fontsize=10)
    return png(fig)


def embed_2d(Z: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """(n, 2) map of ``Z`` (n, d) and the method's name: UMAP when ``umap-learn`` is installed, else t-SNE
    on the first 50 principal components (t-SNE's cost grows with d; the caller subsamples n)."""
    Z = np.asarray(Z, np.float64)
    Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)  # the graph's cosine geometry
    try:
        import umap  # type: ignore

        return umap.UMAP(n_neighbors=15, random_state=seed).fit_transform(Z), "UMAP"
    except ImportError:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        k = min(50, *Z.shape)  # PCA gives at most n components
        if Z.shape[1] > k:
            Z = PCA(k, random_state=seed).fit_transform(Z)
        perplexity = float(min(30, max(5, (len(Z) - 1) / 4)))
        return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(Z), "t-SNE"


def embedding_map(Y: np.ndarray, classes: np.ndarray, names: list, labelled: np.ndarray, method: str) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 5.2))
    unknown = classes < 0  # images the source gives no label (a partially labelled collection)
    if unknown.any():
        ax.scatter(Y[unknown, 0], Y[unknown, 1], s=6, alpha=0.4, color="0.6", label=f"no label ({unknown.sum()})", lw=0)
    for k, name in enumerate(names):
        s = classes == k
        ax.scatter(Y[s, 0], Y[s, 1], s=6, alpha=0.55, color=PALETTE[k % len(PALETTE)], label=f"{name} ({s.sum()})",
                   lw=0)
    for k in range(len(names)):
        s = (classes == k) & labelled
        if s.any():
            ax.scatter(Y[s, 0], Y[s, 1], s=60, marker="*", color=PALETTE[k % len(PALETTE)], edgecolor="black", lw=0.7)
    ax.scatter([], [], s=60, marker="*", color="white", edgecolor="black", label=f"labelled ({int(labelled.sum())})")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, loc="best", markerscale=1.5)
    ax.set_title(f"{method} of the ψ features, coloured by true class", fontsize=10)
    return png(fig)


def embedding_pairs(rows: list, names: list, method: str, dpi: int = 80) -> bytes:
    """Maps side by side: ``rows`` is a list of pairs ``((Y, classes, title), (Y, classes, title))``.

    ``Y`` (m, 2): the 2-D map of m images, ``classes`` (m,) their true class (-1: none), coloured
    alike in every panel; ``title`` above the panel. The legend sits in the first panel only.
    """
    plt = _plt()
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 4.6 * len(rows)), squeeze=False)
    for r, pair in enumerate(rows):
        for c, (Y, classes, title) in enumerate(pair):
            ax = axes[r, c]
            unknown = classes < 0
            if unknown.any():
                ax.scatter(Y[unknown, 0], Y[unknown, 1], s=5, alpha=0.4, color="0.6", lw=0, label="no label")
            for k, name in enumerate(names):
                s = classes == k
                ax.scatter(Y[s, 0], Y[s, 1], s=5, alpha=0.55, color=PALETTE[k % len(PALETTE)], lw=0,
                           label=f"{name} ({s.sum()})")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize=9)
            if r == 0 and c == 0:
                ax.legend(fontsize=8, loc="best", markerscale=2)
    fig.suptitle(f"{method} of ψ of the same test images, coloured by true class", fontsize=10)
    fig.tight_layout()
    return png(fig, dpi=dpi)


def graph_map(Y: np.ndarray, W, pred: np.ndarray, names: list, max_edges: int = 4000, seed: int = 0) -> bytes:
    """Edges of ``W`` (sparse, on the same points as ``Y``) subsampled to ``max_edges``; nodes by predicted class."""
    import scipy.sparse as sp
    from matplotlib.collections import LineCollection

    plt = _plt()
    U = sp.triu(W, 1).tocoo()
    rng = np.random.default_rng(seed)
    keep = rng.choice(U.nnz, size=min(max_edges, U.nnz), replace=False) if U.nnz else np.zeros(0, int)
    segs = np.stack([Y[U.row[keep]], Y[U.col[keep]]], 1)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    ax.add_collection(LineCollection(segs, colors="0.55", linewidths=0.3, alpha=0.35))
    for k, name in enumerate(names):
        s = pred == k
        ax.scatter(Y[s, 0], Y[s, 1], s=7, color=PALETTE[k % len(PALETTE)], label=f"predicted {name}", lw=0, zorder=3)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=8, markerscale=2)
    ax.set_title(f"kNN graph ({len(keep)} of {U.nnz} edges shown), nodes by predicted class", fontsize=10)
    return png(fig)


def _show(ax, im) -> None:
    im = np.asarray(im)
    if im.ndim == 3:
        im = im[0] if im.shape[0] == 1 else np.moveaxis(im, 0, -1)
    ax.imshow(im, cmap="gray" if im.ndim == 2 else None)


def evidence_grid(rows: list, titles: list) -> bytes:
    """One row per test image: the image, then its nearest labelled images; ``titles`` per cell (same shape)."""
    plt = _plt()
    ncols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.6 * ncols, 1.9 * len(rows)), squeeze=False)
    for r, (row, tt) in enumerate(zip(rows, titles)):
        for c in range(ncols):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(row):
                _show(ax, row[c])
                ax.set_title(tt[c], fontsize=6.5, color="black" if c else "#00008b")
    fig.suptitle("Why this label: test image (left) and its nearest labelled training images in ψ", fontsize=9)
    return png(fig)


def example_grid(images: np.ndarray, truth: list[str], pred: list[str], wrong: np.ndarray, ncols: int = 8) -> bytes:
    """``images`` (m, H, W) or (m, C, H, W) uint8; titles "true → predicted", red where wrong."""
    plt = _plt()
    m = len(images)
    nrows = max(1, -(-m // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.45 * ncols, 1.75 * nrows))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for i, ax in enumerate(np.atleast_1d(axes).ravel()[:m]):
        im = np.asarray(images[i])
        if im.ndim == 3:
            im = im[0] if im.shape[0] == 1 else np.moveaxis(im, 0, -1)
        ax.imshow(im, cmap="gray" if im.ndim == 2 else None)
        ax.set_title(f"T: {truth[i]}\nP: {pred[i]}", fontsize=6.5, color="#c00000" if wrong[i] else "#006400")
    fig.suptitle("Test images: T = ground truth, P = prediction (red: misclassified)", fontsize=9)
    return png(fig)


def confusion_figure(cm: np.ndarray, names: list, title: str) -> bytes:
    plt = _plt()
    cm = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 1.0 + 0.8 * len(names)))
    ax.imshow(cm, cmap="Blues")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=9,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    return png(fig)


def per_label_auc_figure(aucs: dict, title: str) -> bytes:
    plt = _plt()
    names = [k for k, v in aucs.items() if v is not None]
    vals = [aucs[k] for k in names]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(range(len(names)), vals, color=PALETTE[0])
    ax.axhline(0.5, color="0.4", ls=":", lw=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test ROC-AUC")
    ax.set_title(title, fontsize=9)
    return png(fig)


def dynamic_curves(history: list[dict]) -> bytes:
    """:func:`dynamic_figure` as PNG bytes."""
    return png(dynamic_figure(history))


def dynamic_figure(history: list[dict]):
    """A Dynamic Pass per epoch (a matplotlib figure): pseudo-labels of the unlabelled images; losses; validation.

    ``history``: the rows of a run's ``history.csv`` (``epoch``, ``phase``, metric columns; empty
    strings for metrics an epoch did not have). Epochs of another phase than "dynamic" (the
    supervised warm-up) are shaded grey, and said so, only when there are any; epoch ticks are
    integers.
    """
    plt = _plt()
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    def col(key):
        return np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in history])

    ep = col("epoch")
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    warm = np.flatnonzero([r.get("phase") != "dynamic" for r in history])
    for ax in axes:
        if len(warm):
            ax.axvspan(ep[warm[0]] - 0.5, ep[warm[-1]] + 0.5, color="0.85", zorder=0, lw=0)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch" + (" (grey: supervised warm-up)" if len(warm) else ""))
    curves = (("pseudo_accuracy", "pseudo-label accuracy"),
              ("pseudo_weighted_accuracy", "pseudo-label accuracy, weighted by certainty × class balance"),
              ("coverage", "coverage"), ("mean_certainty", "mean certainty"), ("pseudo_auc", "pseudo-label mean AUC"))
    for key, label in curves:
        if key in history[0]:
            axes[0].plot(ep, col(key), marker="o", ms=3, label=label)
    axes[0].set_title("pseudo-labels of the unlabelled images", fontsize=9)
    for key in ("train_loss", "loss_labelled", "loss_unlabelled"):
        if key in history[0]:
            axes[1].plot(ep, col(key), marker="o", ms=3, label=key.replace("_", " "))
    axes[1].set_title("training loss", fontsize=9)
    for key in ("val_accuracy", "val_auc", "val_loss"):
        if key in history[0]:
            axes[2].plot(ep, col(key), marker="o", ms=3, label=key.replace("_", " "))
    axes[2].set_title("validation (labelled validation images)", fontsize=9)
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        if len(warm):
            handles, labels = handles + [Patch(color="0.85")], labels + ["supervised warm-up"]
        if handles:  # below the panel: inside, the long labels would hide the curves
            ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    fig.tight_layout()
    return fig


def reliability_figure(bins: dict, title: str) -> bytes:
    """A reliability diagram: per confidence bin, the share correct against the mean confidence.

    ``bins``: {curve label: :func:`graphzoo.calibration.reliability` of it}; a marker's area grows
    with the bin's image count; the diagonal is perfect calibration (below it: overconfident).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.plot([0, 1], [0, 1], color="0.5", ls=":", lw=1, label="perfect calibration")
    for i, (label, r) in enumerate(bins.items()):
        full = r["count"] > 0
        size = 12 + 200 * r["count"][full] / max(r["count"].sum(), 1)
        color = PALETTE[i % len(PALETTE)]
        ax.plot(r["confidence"][full], r["accuracy"][full], color=color, lw=1.2,
                label=f"{label} (ECE {r['ece']:.3f})")
        ax.scatter(r["confidence"][full], r["accuracy"][full], s=size, color=color, alpha=0.7, lw=0)
    lo = min([0.5] + [float(np.nanmin(r["confidence"])) for r in bins.values() if (r["count"] > 0).any()])
    ax.set_xlim(max(0.0, lo - 0.05), 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("confidence (mean of the bin)")
    ax.set_ylabel("accuracy (share correct in the bin)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")  # the empty corner: overconfident bins sit below the diagonal
    ax.set_title(title, fontsize=9)
    return png(fig)


def coverage_accuracy_figure(referred: np.ndarray, accuracy: np.ndarray, title: str,
                             conformal: tuple[float, float] | None = None) -> bytes:
    """Accuracy on the kept images (y) against the share referred (x), least confident first.

    ``conformal``: ``(refer rate, accuracy on the rest)`` of the conformal refer rule, drawn as a star.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    ax.plot(100 * np.asarray(referred), accuracy, color=PALETTE[0], lw=1.5, label="refer the least confident")
    if conformal is not None and conformal[1] is not None:
        ax.scatter([100 * conformal[0]], [conformal[1]], marker="*", s=160, color=PALETTE[1], zorder=3,
                   edgecolor="black", lw=0.6, label="the run's refer rule (prediction set ≠ one class)")
    ax.axhline(accuracy[0], color="0.5", ls=":", lw=1, label="no image referred")
    ax.set_xlabel("test images referred to a person (%)")
    ax.set_ylabel("accuracy on the images kept")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=9)
    return png(fig)


def active_curves(panels: dict, metric_name: str = "test accuracy") -> bytes:
    """One panel per entry of ``panels`` {title: {strategy: {"n_labels", "mean", "std", "n"}}} (as
    :func:`graphzoo.experiments.active.active_curves` gives per fraction): mean ± std over seeds against
    the number of labels; ``random`` drawn dotted grey, the passive baseline the others are measured against."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False, sharey=True)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        span = max(float(np.ptp(c["n_labels"])) for c in curves.values()) or 1.0
        for i, (s, c) in enumerate(curves.items()):
            style = dict(color="0.35", ls=":") if s == "random" else dict(color=PALETTE[i % len(PALETTE)], ls="-")
            dx = 0.012 * span * (i - (len(curves) - 1) / 2)  # side by side: the error bars do not hide each other
            ax.errorbar(np.asarray(c["n_labels"]) + dx, c["mean"], yerr=c["std"], marker="o", ms=3.5, capsize=3,
                        label=f"{s} ({c['n']} seed{'s' if c['n'] != 1 else ''})", **style)
        ax.set_xticks(next(iter(curves.values()))["n_labels"])  # one tick per round
        ax.set_xlabel("labels revealed (start + rounds)")
        ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel(metric_name)
    fig.tight_layout()
    return png(fig)
