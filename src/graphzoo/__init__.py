"""GraphNet Zoo: graph-based deep semi-supervised classification of medical images.

The graph core (this namespace) depends on numpy / scipy / scikit-learn only, with faiss
optional: ``knn_graph`` builds the graph, ``diffuse`` minimises an energy on it, and
``GraphSSLClassifier`` wraps both as a scikit-learn estimator. Deep models live in submodules
that import torch lazily.
"""

from .classifier import GraphSSLClassifier, scores_to_proba
from .energies import ENERGIES, ConvergenceWarning, EnergyResult, UnlabelledComponentWarning, diffuse, diffuse_per_label
from .graph import edge_weights, knn_graph, knn_search
from .registry import Registry

__version__ = "0.1.0"

__all__ = [
    "ENERGIES",
    "ConvergenceWarning",
    "EnergyResult",
    "GraphSSLClassifier",
    "Registry",
    "UnlabelledComponentWarning",
    "diffuse",
    "diffuse_per_label",
    "edge_weights",
    "knn_graph",
    "knn_search",
    "scores_to_proba",
]
