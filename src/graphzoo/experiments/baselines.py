"""Baselines of the experiment grid, run on the features and splits of a finished One Pass run.

* :func:`gcn_predict`: a two-layer graph convolutional network (Kipf & Welling, ICLR 2017),
  ``softmax(Â · ReLU(Â X W₁) · W₂)`` with ``Â = D̃^{-1/2} (W + I) D̃^{-1/2}``, on the *same* kNN
  graph ``W`` the energies use (built by :func:`graphzoo.knn_graph` over the same ψ features).
* :func:`sklearn_label_spreading`: scikit-learn's ``LabelSpreading`` (Zhou et al. 2004) with its
  own ``kernel="knn"`` graph over the same features, as a user of scikit-learn would run it.
* :func:`run_features`: ψ(x) of every image of a run, from its checkpoint (cached as
  ``features.npy`` in the run folder), for the graph baselines and the report's figures.

The "supervised on the labelled subset" baseline needs no code here: it is the network a One Pass
run trained on its labelled images only, read from that run's ``test_inductive`` metrics; "fully
supervised" is a One Pass run with ``label_fraction=1`` and inductive prediction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

__all__ = ["gcn_predict", "sklearn_label_spreading", "run_features", "final_checkpoint", "normalized_adjacency"]


def normalized_adjacency(W: sp.spmatrix):
    """``Â = D̃^{-1/2} (W + I) D̃^{-1/2}`` as a torch sparse CSR float32 tensor (Kipf & Welling's renormalisation).

    Parameters
    ----------
    W : sparse matrix of shape (n, n)
        Symmetric, non-negative, zero diagonal (a :func:`graphzoo.knn_graph`).
    """
    import torch

    A = sp.csr_matrix(W, dtype=np.float64) + sp.identity(W.shape[0], format="csr")
    d = np.asarray(A.sum(1)).ravel()
    dinv = 1.0 / np.sqrt(d)
    A = sp.diags(dinv) @ A @ sp.diags(dinv)
    A = A.tocsr().astype(np.float32)
    return torch.sparse_csr_tensor(
        torch.from_numpy(A.indptr.astype(np.int64)),
        torch.from_numpy(A.indices.astype(np.int64)),
        torch.from_numpy(A.data),
        size=A.shape,
    )


def gcn_predict(
    W: sp.spmatrix,
    X: np.ndarray,
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None = None,
    *,
    multilabel: bool = False,
    n_outputs: int | None = None,
    hidden: int = 64,
    dropout: float = 0.5,
    lr: float = 0.01,
    weight_decay: float = 5e-4,
    epochs: int = 200,
    patience: int = 50,
    seed: int = 0,
) -> np.ndarray:
    """Train a two-layer GCN on the labelled nodes of one graph; return probabilities of all nodes.

    Parameters
    ----------
    W : sparse matrix of shape (n, n)
        The kNN graph (symmetric, zero diagonal).
    X : ndarray of shape (n, d)
        Node features (standardised here).
    y : ndarray of int, shape (n,), or of 0/1, shape (n, L) for multi-label
        Targets; only rows in ``train_idx`` and ``val_idx`` are read.
    train_idx, val_idx : ndarray of int
        Labelled training nodes (the loss) and labelled validation nodes (early stopping on their
        loss; the weights of the best epoch are returned). Without ``val_idx`` the last epoch's.
    multilabel : bool
        Sigmoid outputs and binary cross-entropy per label instead of softmax / cross-entropy.
    hidden, dropout, lr, weight_decay, epochs, patience : Kipf & Welling's defaults
        (16 hidden units in the paper; 64 here for 2-class medical features). Weight decay is
        applied to the first layer only, as in the paper.

    Returns
    -------
    proba : ndarray of shape (n, c) or (n, L)
    """
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    A = normalized_adjacency(W)
    X = np.asarray(X, np.float64)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)  # the features' scale varies with the backbone
    Xt = torch.from_numpy(X.astype(np.float32))
    y = np.asarray(y)
    c = n_outputs or (y.shape[1] if multilabel else int(y[train_idx].max()) + 1)
    W1 = torch.nn.Parameter(torch.empty(X.shape[1], hidden))
    W2 = torch.nn.Parameter(torch.empty(hidden, c))
    b2 = torch.nn.Parameter(torch.zeros(c))
    for p in (W1, W2):
        bound = (6.0 / sum(p.shape)) ** 0.5  # Glorot uniform, as in the paper
        with torch.no_grad():
            p.uniform_(-bound, bound, generator=g)
    opt = torch.optim.Adam([{"params": [W1], "weight_decay": weight_decay}, {"params": [W2, b2], "weight_decay": 0.0}], lr=lr)
    AX = A @ Xt  # Â X is fixed: precompute once (the first layer is linear before ReLU)
    tr = torch.as_tensor(train_idx, dtype=torch.long)
    va = torch.as_tensor(val_idx if val_idx is not None else [], dtype=torch.long)
    yt = torch.as_tensor(y, dtype=torch.float32 if multilabel else torch.long)

    def forward(train: bool):
        h = torch.relu(AX @ W1)
        if train and dropout:
            mask = (torch.rand(h.shape, generator=g) >= dropout).float() / (1 - dropout)
            h = h * mask
        return A @ (h @ W2) + b2

    def loss_of(out, idx):
        if multilabel:
            return F.binary_cross_entropy_with_logits(out[idx], yt[idx])
        return F.cross_entropy(out[idx], yt[idx])

    best, best_state, bad = np.inf, None, 0
    for _ in range(epochs):
        opt.zero_grad()
        loss = loss_of(forward(True), tr)
        loss.backward()
        opt.step()
        if len(va):
            with torch.no_grad():
                v = float(loss_of(forward(False), va))
            if v < best - 1e-6:
                best, bad = v, 0
                best_state = (W1.detach().clone(), W2.detach().clone(), b2.detach().clone())
            else:
                bad += 1
                if bad >= patience:
                    break
    if best_state is not None:
        with torch.no_grad():
            W1.copy_(best_state[0])
            W2.copy_(best_state[1])
            b2.copy_(best_state[2])
    with torch.no_grad():
        out = forward(False).double()
        proba = torch.sigmoid(out) if multilabel else torch.softmax(out, 1)
    return proba.numpy()


def sklearn_label_spreading(
    X: np.ndarray,
    y: np.ndarray,
    labelled: np.ndarray,
    *,
    multilabel: bool = False,
    n_outputs: int | None = None,
    n_neighbors: int = 10,
    alpha: float = 0.2,
    max_iter: int = 100,
    cosine: bool = True,
) -> np.ndarray:
    """scikit-learn ``LabelSpreading(kernel="knn")`` over ``X``; probabilities of all rows.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of int (n,) or 0/1 (n, L)
    labelled : ndarray of bool, shape (n,)
        Rows whose label is given to the estimator (the others get ``-1``).
    multilabel : bool
        One two-class spreading per label (a label with a single value among the labelled rows
        gets that value's frequency everywhere).
    n_neighbors, alpha, max_iter : passed to ``LabelSpreading`` (its defaults except ``n_neighbors``).
    cosine : bool
        L2-normalise the rows first, so that sklearn's Euclidean kNN is the cosine kNN our graph uses.

    Returns
    -------
    proba : ndarray of shape (n, c) or (n, L). Rows no label reached (sklearn leaves them NaN)
    become uniform.
    """
    import warnings

    from sklearn.semi_supervised import LabelSpreading

    X = np.asarray(X, np.float64)
    if cosine:
        X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    k = min(n_neighbors, len(X) - 1)

    def spread(t: np.ndarray, c: int) -> np.ndarray:
        yy = np.where(labelled, t, -1)
        est = LabelSpreading(kernel="knn", n_neighbors=k, alpha=alpha, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning / 0-division on unreached rows
            est.fit(X, yy)
        P = np.full((len(X), c), 1.0 / c)
        D = est.label_distributions_
        ok = np.all(np.isfinite(D), 1)
        P[np.ix_(ok, est.classes_.astype(int))] = D[ok]  # classes_ excludes -1
        s = P.sum(1, keepdims=True)
        return P / np.where(s > 0, s, 1)

    y = np.asarray(y)
    if not multilabel:
        return spread(y, n_outputs or int(y.max()) + 1)
    out = np.zeros(y.shape, np.float64)
    for j in range(y.shape[1]):
        lab = y[labelled, j]
        if lab.min() == lab.max():
            out[:, j] = lab.mean()
            continue
        out[:, j] = spread(y[:, j], 2)[:, 1]
    return out


def final_checkpoint(run_dir: str | Path) -> str:
    """"best" or "last": the checkpoint a finished run evaluated (``final_model`` in its metrics.json)."""
    import json

    m = json.loads((Path(run_dir) / "metrics.json").read_text())
    return "last" if m.get("final_model") == "last" else "best"


def run_features(run_dir: str | Path, images=None, which: str | None = None, batch_size: int = 512, cache: bool = True) -> np.ndarray:
    """ψ(x) of every image of a run, shape (n_images, out_dim), in the order of ``predictions.csv``.

    Read from ``features.npy`` in the run folder when present (a run writes it at its final
    evaluation, test-time averaged where the run's ``tta`` is on); otherwise computed with the run's
    checkpoint (``which``: "best" or "last"; default the one the run evaluated) on ``images`` (uint8 tensor (N, C, H, W), as
    :func:`graphzoo.data.prepare_data` returns them; re-prepared from the run's
    ``config.yaml`` when omitted) and, with ``cache``, saved there (float32).
    """
    import torch

    run_dir = Path(run_dir)
    cached = run_dir / "features.npy"
    if cached.is_file():
        return np.load(cached)
    from ..predict import load_model

    if images is None:
        from ..config import load_config
        from ..data import prepare_data

        images = prepare_data(**load_config(run_dir / "config.yaml").data_options()).images
    model, meta, norm = load_model(run_dir, which or final_checkpoint(run_dir))
    out = []
    with torch.no_grad():
        for b in torch.arange(len(images)).split(batch_size):
            out.append(model.infer(norm(images[b]), meta["tta_views"])[1].float())
    Z = torch.cat(out).numpy()
    if cache:
        np.save(cached, Z)
    return Z
