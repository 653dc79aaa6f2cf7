"""`GraphSSLClassifier`: graph-based semi-supervised classification on any feature matrix.

A scikit-learn estimator: ``fit(X, y)`` with ``y == -1`` marking unlabelled samples builds the
kNN graph over all rows of X, minimises the chosen energy and exposes the transductive labels;
``predict`` / ``predict_proba`` classify new rows through their neighbours among the training
nodes. Imports no torch, so it works on features from anywhere.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .energies import ENERGIES
from .graph import check_features, edge_weights, knn_search
from .graph_step import graph_step, scores_to_proba

__all__ = ["GraphSSLClassifier"]


class GraphSSLClassifier(ClassifierMixin, BaseEstimator):
    """Semi-supervised classifier: kNN graph + label-diffusion energy.

    Parameters
    ----------
    energy : str or callable, default="label_spreading"
        A name in :data:`graphzoo.energies.ENERGIES` (``label_spreading``, ``laplace``,
        ``poisson``, ...) or a callable ``(W, y, n_classes, **params) -> EnergyResult | scores``.
    n_neighbors : int, default=50
        ``k`` of the kNN graph (must be smaller than the number of samples).
    metric : {"cosine", "euclidean", "precomputed"}, default="cosine"
        With ``"precomputed"``, ``fit`` takes the (n, n) sparse symmetric weight matrix as X and
        ``predict`` takes (m, n) sparse or dense affinities from new samples to the training nodes.
    weight : {"auto", "cosine", "self_tuning", "uniform"}, default="auto"
        Edge weighting, see :func:`graphzoo.knn_graph`.
    symmetrize : {"sum", "max", "mean"}, default="sum"
    knn_method : {"exact", "approximate"}, default="exact"
    energy_params : dict, optional
        Keyword arguments for the energy (e.g. ``{"alpha": 0.99}``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Labels seen among the labelled samples.
    graph_ : csr_matrix of shape (n_samples, n_samples)
    label_distributions_ : ndarray of shape (n_samples, n_classes)
        Row-stochastic class probabilities of the training samples (:func:`scores_to_proba`).
    scores_ : ndarray of shape (n_samples, n_classes)
        Raw energy scores.
    transduction_ : ndarray of shape (n_samples,)
        Predicted label of every training sample.
    unreachable_ : ndarray of bool, shape (n_samples,)
        Samples in graph components without a labelled sample. Their distribution is the
        class frequency of the labelled set (and their label its most frequent class);
        an ``UnlabelledComponentWarning`` is raised when any exist.
    n_iter_ : int
    residual_ : float
    converged_ : bool
    energy_info_ : dict
        Energy-specific diagnostics.

    Examples
    --------
    >>> from sklearn.datasets import make_blobs
    >>> X, y = make_blobs(300, centers=3, random_state=0)
    >>> y_masked = y.copy(); y_masked[10:] = -1          # 10 labels
    >>> clf = GraphSSLClassifier("poisson", n_neighbors=10, metric="euclidean").fit(X, y_masked)
    >>> float((clf.transduction_ == y).mean()) > 0.9
    True
    """

    def __init__(
        self,
        energy: str | Callable[..., Any] = "label_spreading",
        *,
        n_neighbors: int = 50,
        metric: str = "cosine",
        weight: str = "auto",
        symmetrize: str = "sum",
        knn_method: str = "exact",
        energy_params: dict | None = None,
    ) -> None:
        self.energy = energy
        self.n_neighbors = n_neighbors
        self.metric = metric
        self.weight = weight
        self.symmetrize = symmetrize
        self.knn_method = knn_method
        self.energy_params = energy_params

    def _energy_fn(self):
        return ENERGIES.get(self.energy) if isinstance(self.energy, str) else self.energy

    def fit(self, X, y) -> "GraphSSLClassifier":
        """Build the graph over X and diffuse the labels of ``y`` (``-1`` = unlabelled).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or sparse (n, n) if precomputed
        y : array-like of shape (n_samples,)
        """
        energy_fn = self._energy_fn()  # fail fast on an unknown energy name
        if not callable(energy_fn):
            raise TypeError(f"energy must be a registered name or a callable, got {type(self.energy).__name__}")
        precomputed = self.metric == "precomputed"
        if precomputed:
            X, y = validate_data(self, X, y, accept_sparse="csr", ensure_min_samples=2)
            if X.shape[0] != X.shape[1]:
                raise ValueError(f"metric='precomputed' needs a square (n, n) graph, got {X.shape}")
            W = sp.csr_matrix(X)
        else:
            X, y = validate_data(self, X, y, dtype=np.float32, ensure_min_samples=2)
            W = None
        y = np.asarray(y)
        labelled = y != -1
        if not labelled.any():
            raise ValueError("y has no labelled sample (all entries are -1); label at least one per class")
        # Checked on the labelled entries only: string class names mixed with -1 are fine.
        check_classification_targets(y[labelled])
        self.classes_, y_idx = np.unique(y[labelled], return_inverse=True)
        if len(self.classes_) == 1:
            # As scikit-learn's estimators do: legal, but almost always a labelling mistake.
            warnings.warn(f"y has a single labelled class ({self.classes_[0]}): every sample will be predicted "
                          "as that class; label at least one sample of each class", UserWarning, stacklevel=2)
        y_int = np.full(len(y), -1, dtype=np.int64)
        y_int[labelled] = y_idx

        if W is None:
            if self.n_neighbors >= X.shape[0]:
                raise ValueError(f"n_neighbors={self.n_neighbors} must be smaller than n_samples={X.shape[0]}")
            self.X_ = X
        step = graph_step(X, y_int, energy=energy_fn, energy_params=self.energy_params, n_neighbors=self.n_neighbors,
                          metric=self.metric, n_classes=len(self.classes_), W=W, weight=self.weight,
                          symmetrize=self.symmetrize, method=self.knn_method)
        self.graph_ = step.W
        self.scores_ = step.scores
        self.unreachable_ = ~step.reachable
        self.label_distributions_ = step.proba  # unreached samples: the labelled class frequencies
        self.transduction_ = self.classes_[np.argmax(step.proba, axis=1)]
        self.n_iter_ = step.info["energy_n_iter"]
        self.residual_ = step.info["energy_residual"]
        self.converged_ = step.info["energy_converged"]
        self.energy_info_ = step.energy_info
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of new samples, shape (n_queries, n_classes).

        Each query's distribution is the weight-averaged ``label_distributions_`` of its
        ``n_neighbors`` nearest training samples, with the same edge weighting as the graph
        (the out-of-sample extension of label spreading; Zhou et al. 2004, Bengio et al. 2006).
        """
        check_is_fitted(self, "label_distributions_")
        if self.metric == "precomputed":
            X = validate_data(self, X, accept_sparse="csr", reset=False)
            A = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
            if A.shape[1] != self.label_distributions_.shape[0]:
                raise ValueError(
                    f"precomputed affinities need {self.label_distributions_.shape[0]} columns, got {A.shape[1]}"
                )
            mass = np.asarray(A @ self.label_distributions_)
        else:
            X = validate_data(self, X, dtype=np.float32, reset=False)
            X = check_features(X, "X")
            k = min(self.n_neighbors, self.X_.shape[0])
            dist, idx = knn_search(self.X_, k, queries=X, metric=self.metric, method=self.knn_method)
            w = edge_weights(dist, self.weight, metric=self.metric)
            mass = np.einsum("mk,mkc->mc", w, self.label_distributions_[idx])
        total = mass.sum(axis=1, keepdims=True)
        if (total == 0).any():
            # All neighbour weights vanished (e.g. cosine <= 0 to every neighbour): fall back to
            # the plain average of the neighbours' distributions rather than a 0/0.
            if self.metric == "precomputed":
                fallback = np.broadcast_to(self.label_distributions_.mean(0), mass.shape)
            else:
                fallback = self.label_distributions_[idx].mean(axis=1)
            zero = total[:, 0] == 0
            mass[zero] = fallback[zero]
            total = mass.sum(axis=1, keepdims=True)
        return mass / total

    def predict(self, X) -> np.ndarray:
        """Predicted labels of new samples, shape (n_queries,)."""
        proba = self.predict_proba(X)  # first, so that an unfitted model raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = self.metric == "precomputed"
        tags.input_tags.pairwise = self.metric == "precomputed"
        return tags
