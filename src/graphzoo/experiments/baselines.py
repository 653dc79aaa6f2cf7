"""Baselines of the experiment grid, run on the features and splits of a finished One Pass run.

Every baseline is one :class:`Baseline` entry of :data:`BASELINES`, added with
:func:`register_baseline`; the grid plans, runs and labels it from that entry alone. An entry says
how it predicts (``prediction``: "transductive", the test images are nodes of the graph it learns
on; "inductive", a network applied to the test images) and where its prediction comes from, one of

* ``predict(inputs, **options) -> proba``: computed from the One Pass run's features ψ(x) and kNN
  graph (:class:`BaselineInputs`); ``options`` is the grid file's block of the baseline's name
  (``gcn: {hidden: 64}``), keys limited to the entry's ``options``;
* ``read(inputs) -> test metrics``: read from that One Pass run's own output;
* ``own_run``: a One Pass run of its own, once per seed, with these run-config keys.

Registered here:

* ``supervised``: the network a One Pass run trained on its labelled images only, read from that
  run's ``test_inductive`` metrics.
* ``fully_supervised``: a One Pass run with every training label (``label_fraction=1``) and
  inductive prediction.
* ``supervised_pretrained``: a One Pass run of its own at each label fraction whose ψ starts from the
  self-supervised encoder (``pretrain``: the grid's method, ``simclr`` if the grid sets none;
  :mod:`graphzoo.train.pretrain_cache`, shared with the grid's runs) and is fine-tuned on the labelled
  images; its network's inductive prediction. Beside ``supervised`` it shows what the graph adds on top
  of pretraining, not only what pretraining adds.
* ``gcn``: :func:`gcn_predict`, a two-layer graph convolutional network (Kipf & Welling, ICLR 2017),
  ``softmax(Â · ReLU(Â X W₁) · W₂)`` with ``Â = D̃^{-1/2} (W + I) D̃^{-1/2}``, on the *same* kNN
  graph ``W`` the energies use (built by :func:`graphzoo.graph_step.build_graph` over the same ψ).
* ``sklearn_label_spreading``: :func:`sklearn_label_spreading`, scikit-learn's ``LabelSpreading``
  (Zhou et al. 2004) with its own ``kernel="knn"`` graph over the same features, as a user of
  scikit-learn would run it.

:func:`run_features` gives ψ(x) of every image of a run, from its checkpoint (cached as
``features.npy`` in the run folder), for the graph baselines and the report's figures.
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..registry import Registry
from ..rundir import RunDir

__all__ = ["BASELINES", "Baseline", "BaselineInputs", "register_baseline", "default_baselines", "gcn_predict",
           "sklearn_label_spreading", "run_features", "run_confusion", "final_checkpoint", "normalized_adjacency"]


PREDICTIONS = ("inductive", "transductive")


@dataclass
class BaselineInputs:
    """What a baseline sees of one (label fraction, seed) of the grid.

    Attributes
    ----------
    data : :class:`graphzoo.data.PreparedData`
        ``targets`` int (n,) or 0/1 (n, L), ``split`` (n,), ``labelled`` bool (n,), ``names``,
        ``multilabel``; ``graph_labels`` are the labels a graph method may use.
    seed : int
        The cell's seed, for baselines that draw random numbers.
    load_features : callable () -> ndarray of shape (n, d)
        ψ(x) of every image (the One Pass run's features); called on first use of :attr:`features`.
    load_graph : callable () -> sparse matrix of shape (n, n), optional
        The kNN graph of the features, the one the energies use; by default built from
        :attr:`features` with ``n_neighbors`` and ``graph_metric``.
    n_neighbors, graph_metric : the One Pass run's graph settings.
    run : RunDir, optional
        The One Pass run's folder (baselines with ``read`` take their metrics from it).
    """

    data: object  # graphzoo.data.PreparedData
    seed: int
    load_features: Callable[[], np.ndarray]
    load_graph: Callable[[], sp.spmatrix] | None = None
    n_neighbors: int = 10
    graph_metric: str = "cosine"
    run: RunDir | None = None

    # computed on first use only: a baseline that reads the run's own output needs neither
    @cached_property
    def features(self) -> np.ndarray:
        return self.load_features()

    @cached_property
    def graph(self) -> sp.spmatrix:
        if self.load_graph is not None:
            return self.load_graph()
        from ..graph_step import build_graph

        return build_graph(self.features, self.n_neighbors, self.graph_metric)


@dataclass(frozen=True)
class Baseline:
    """One baseline of the grid (see the module docstring); exactly one of ``predict``, ``read``,
    ``own_run`` is given.

    Attributes
    ----------
    name : str
        Its name in the grid file's ``baselines:`` list, its cells' ``kind`` and its option block's key.
    label : str
        Its row label in the tables (the backbone is appended).
    prediction : "inductive" or "transductive"
        What its test prediction is (the record's ``test_prediction``).
    predict : callable (BaselineInputs, **options) -> ndarray of shape (n, c) or (n, L), optional
        Probabilities of every image; the grid scores the test rows.
    read : callable (BaselineInputs) -> dict, optional
        Test ``accuracy``, ``balanced_accuracy``, ``auc``, ``per_class``, ``confusion`` read from
        ``inputs.run``.
    own_run : dict, optional
        Run-config keys of a One Pass run of its own on the baseline backbone, once per seed;
        ``label_fraction`` is required among them (``"each"``: one run at each of the grid's fractions).
    options : tuple of str
        The keys its option block may hold (passed to ``predict``).
    """

    name: str
    label: str
    prediction: str
    predict: Callable[..., np.ndarray] | None = None
    read: Callable[[BaselineInputs], dict] | None = None
    own_run: dict | None = None
    options: tuple = ()

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"baseline {self.name!r}: prediction must be one of {PREDICTIONS}, "
                             f"got {self.prediction!r}")
        if sum(x is not None for x in (self.predict, self.read, self.own_run)) != 1:
            raise ValueError(f"baseline {self.name!r}: give exactly one of predict, read, own_run")
        if self.options and self.predict is None:
            raise ValueError(f"baseline {self.name!r}: only a baseline with predict takes options")
        if self.own_run is not None and "label_fraction" not in self.own_run:
            raise ValueError(f"baseline {self.name!r}: own_run must set label_fraction")

    def check_options(self, options, where: str) -> dict:
        """The grid file's option block for this baseline (``where`` names the file), checked."""
        if not isinstance(options, dict):
            raise ValueError(f"{where}: {self.name} must be a mapping of options, e.g. {self.name}: {{key: value}}")
        bad = sorted(set(options) - set(self.options))
        if bad:
            takes = f"it takes {', '.join(self.options)}" if self.options else "it takes none"
            raise ValueError(f"{where}: unknown option(s) {bad} of baseline {self.name}; {takes}")
        return dict(options)


BASELINES: Registry[Baseline] = Registry("baseline")
_ORDER: list[str] = []  # registration order, the order a grid without a baselines: list runs them in


def register_baseline(baseline: Baseline, default: bool = True) -> Baseline:
    """Add ``baseline`` to :data:`BASELINES` under its name (a duplicate name raises ``ValueError``);
    ``default``: a grid without a ``baselines:`` list runs it."""
    BASELINES.register(baseline.name)(baseline)
    if default:
        _ORDER.append(baseline.name)
    return baseline


def default_baselines() -> list[str]:
    """The registered baselines a grid runs by default, in the order registered (not
    ``supervised_pretrained``: it pretrains an encoder, asked for by name)."""
    return list(_ORDER)


def normalized_adjacency(W: sp.spmatrix):
    """``Â = D̃^{-1/2} (W + I) D̃^{-1/2}`` as a torch sparse CSR float32 tensor (Kipf & Welling's
    renormalisation).

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
    # scipy's CSR is valid by construction: opt out of the invariant checks explicitly, and keep
    # torch's "beta" notice out of the grid's one-line-per-cell output
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(A.indptr.astype(np.int64)),
            torch.from_numpy(A.indices.astype(np.int64)),
            torch.from_numpy(A.data),
            size=A.shape,
            check_invariants=False,
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

    Long: its signature and this docstring take 43 of its 105 lines; the code is 62, kept in one piece
    so that the recipe (set-up, training loop, early stopping) reads top to bottom.

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
    groups = [{"params": [W1], "weight_decay": weight_decay}, {"params": [W2, b2], "weight_decay": 0.0}]
    opt = torch.optim.Adam(groups, lr=lr)
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
    return "last" if RunDir(run_dir).read_metrics().get("final_model") == "last" else "best"


def run_features(run_dir: str | Path, images=None, which: str | None = None, batch_size: int = 512,
                 cache: bool = True) -> np.ndarray:
    """ψ(x) of every image of a run, shape (n_images, out_dim), in the order of ``predictions.csv``.

    Read from ``features.npy`` in the run folder when present (a run writes it at its final
    evaluation, test-time averaged where the run's ``tta`` is on); otherwise computed with the run's
    checkpoint (``which``: "best" or "last"; default the one the run evaluated) on ``images`` (uint8
    tensor (N, C, H, W), as :func:`graphzoo.data.prepare_data` returns them; re-prepared from the
    run's ``config.yaml`` when omitted) and, with ``cache``, saved there (float32).
    """
    import torch

    run = RunDir(run_dir)
    if run.features.is_file():
        return np.load(run.features)
    from ..predict import load_model

    if images is None:
        from ..config import load_config
        from ..data import prepare_data

        images = prepare_data(**load_config(run.config).data_options()).images
    model, meta, norm = load_model(run.path, which or final_checkpoint(run.path))
    out = []
    with torch.no_grad():
        for b in torch.arange(len(images)).split(batch_size):
            out.append(model.infer(norm(images[b]), meta["tta_views"])[1].float())
    Z = torch.cat(out).numpy()
    if cache:
        np.save(run.features, Z)
    return Z


def run_confusion(run_dir: str | Path, names: list, column: str = "pred") -> list:
    """Confusion matrix of a run's test images from its ``predictions.csv``, as nested lists (c, c).

    Rows are the true class, columns the prediction in ``column``: "pred" (the run's reported
    prediction), "pred_net" (the network's) or "pred_graph". Single-label runs only.
    """
    from sklearn.metrics import confusion_matrix

    idx = {n: k for k, n in enumerate(names)}
    with open(RunDir(run_dir).predictions, newline="") as fh:
        test = [row for row in csv.DictReader(fh) if row["split"] == "test"]
    if not test:  # sklearn refuses empty input
        return np.zeros((len(names), len(names)), np.int64).tolist()
    true = [idx[row["true"]] for row in test]
    pred = [idx[row[column]] for row in test]
    return confusion_matrix(true, pred, labels=np.arange(len(names))).tolist()


# ----------------------------------------------------------------------------------------------
# The registered baselines (in the order a grid without a baselines: list runs them)
# ----------------------------------------------------------------------------------------------
def _supervised(inputs: BaselineInputs) -> dict:
    """The One Pass run's network, trained on the labelled images only: its inductive test metrics."""
    m = inputs.run.read_metrics()["test_inductive"]
    out = {k: m.get(k) for k in ("accuracy", "balanced_accuracy", "auc", "per_class")}
    out["confusion"] = None if inputs.data.multilabel else run_confusion(inputs.run, inputs.data.names, "pred_net")
    return out


def _gcn(inputs: BaselineInputs, **options) -> np.ndarray:
    d = inputs.data
    val = d.idx("val", labelled=True)  # early stopping on the labelled validation images
    return gcn_predict(inputs.graph, inputs.features, d.targets, np.flatnonzero(d.graph_labels),
                       val if len(val) else None, multilabel=d.multilabel, n_outputs=d.n_outputs, seed=inputs.seed,
                       **options)


def _sklearn_label_spreading(inputs: BaselineInputs, **options) -> np.ndarray:
    d = inputs.data
    params = {"n_neighbors": inputs.n_neighbors, **options}  # the run's k unless the option block sets one
    return sklearn_label_spreading(inputs.features, d.targets, d.graph_labels, multilabel=d.multilabel,
                                   n_outputs=d.n_outputs, cosine=inputs.graph_metric == "cosine", **params)


register_baseline(Baseline("supervised", "Supervised, labelled subset only", "inductive", read=_supervised))
register_baseline(Baseline("fully_supervised", "Fully supervised (all labels)", "inductive",
                           own_run={"label_fraction": 1.0, "test_prediction": "inductive"}))
register_baseline(Baseline("supervised_pretrained", "Supervised, fine-tuned from the pretrained encoder", "inductive",
                           own_run={"label_fraction": "each", "pretrain": "simclr", "test_prediction": "inductive"}),
                  default=False)
register_baseline(Baseline("gcn", "GCN (Kipf & Welling) on the ψ kNN graph", "transductive", predict=_gcn,
                           options=("hidden", "dropout", "lr", "weight_decay", "epochs", "patience")))
register_baseline(Baseline("sklearn_label_spreading", "scikit-learn LabelSpreading on ψ", "transductive",
                           predict=_sklearn_label_spreading, options=("n_neighbors", "alpha", "max_iter")))
