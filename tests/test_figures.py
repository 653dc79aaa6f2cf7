"""report.figures: every figure renders to PNG; the Dynamic Pass figure has integer epoch ticks, a grey
warm-up band exactly where the warm-up epochs are (and says so only then), and plain-word legends."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from graphzoo.report import figures as F

PNG = b"\x89PNG\r\n\x1a\n"


def history(n_warm: int = 2, n_dyn: int = 3) -> list[dict]:
    """Rows as history.csv holds them (strings; empty where a phase has no value)."""
    rows = []
    for e in range(1, n_warm + n_dyn + 1):
        dyn = e > n_warm
        rows.append({"epoch": str(e), "phase": "dynamic" if dyn else "supervised", "train_loss": str(1 / e),
                     "val_accuracy": str(0.5 + e / 20), "pseudo_accuracy": str(0.6 + e / 50) if dyn else "",
                     "pseudo_weighted_accuracy": str(0.7) if dyn else "", "coverage": "1.0" if dyn else "",
                     "mean_certainty": "0.4" if dyn else ""})
    return rows


def test_every_figure_is_a_png(rng):
    summary = {"a": {"label": "A", "kind": "method", "prediction": "inductive",
                     "cells": {0.01: {"mean": 0.6, "std": 0.1}, 0.2: {"mean": 0.8, "std": 0.05}}},
               "full": {"label": "Full", "kind": "baseline", "prediction": "inductive",
                        "cells": {1.0: {"mean": 0.9, "std": 0.01}}}}
    Y = rng.normal(size=(30, 2))
    classes = np.arange(30) % 3
    W = sp.random(30, 30, density=0.2, random_state=0, format="csr")
    pngs = [F.fraction_curves(summary, "accuracy", {"full"}),
            F.embedding_map(Y, classes, ["a", "b", "c"], classes == 0, "t-SNE"),
            F.graph_map(Y, W, classes, ["a", "b", "c"]),
            F.example_grid(rng.integers(0, 255, (5, 1, 8, 8), dtype=np.uint8), list("abcde"), list("abcdd"),
                           np.array([0, 0, 0, 0, 1], bool), ncols=3),
            F.confusion_figure(np.array([[3, 1], [0, 4]]), ["a", "b"], "cm"),
            F.per_label_auc_figure({"x": 0.7, "y": None, "z": 0.9}, "auc"),
            F.dynamic_curves(history())]
    for data in pngs:
        assert data.startswith(PNG) and len(data) > 1000


def _band_x(ax) -> list[tuple[float, float]]:
    """Data-x extent of each shaded span (axvspan) on ``ax``."""
    out = []
    for p in ax.patches:
        x = p.get_path().transformed(p.get_patch_transform()).vertices[:, 0]
        out.append((float(x.min()), float(x.max())))
    return out


@pytest.mark.parametrize("n_warm", [2, 0])
def test_dynamic_figure_ticks_band_and_legend(n_warm):
    import matplotlib.pyplot as plt

    fig = F.dynamic_figure(history(n_warm=n_warm, n_dyn=3))
    try:
        fig.canvas.draw()
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks  # whole epochs only
            if n_warm:
                assert _band_x(ax) == [(0.5, n_warm + 0.5)]  # grey over the warm-up epochs, not beyond
                assert "grey: supervised warm-up" in ax.get_xlabel()
            else:
                assert _band_x(ax) == [] and "grey" not in ax.get_xlabel()  # no band, no promise of one
        labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert "pseudo-label accuracy, weighted by certainty × class balance" in labels
        assert not any(c in "".join(labels) for c in "ξζ")  # plain words, no symbols
        assert ("supervised warm-up" in labels) == bool(n_warm)
    finally:
        plt.close(fig)


def test_embed_2d_with_fewer_points_than_pca_dimensions(rng):
    """t-SNE runs on at most 50 principal components, and on fewer when there are fewer points."""
    Y, how = F.embed_2d(rng.normal(size=(12, 64)))
    assert Y.shape == (12, 2) and np.isfinite(Y).all() and how in ("t-SNE", "UMAP")
