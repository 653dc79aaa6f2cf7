"""GraphNet Zoo: graph-based deep semi-supervised classification of medical images.

The graph core (this namespace) depends on numpy / scipy / scikit-learn only, with faiss
optional: ``knn_graph`` builds the graph, ``diffuse`` minimises an energy on it, and
``graph_step`` chains them into probabilities and certainty, and
``GraphSSLClassifier`` wraps that as a scikit-learn estimator. Deep models live in submodules
that import torch lazily.
"""

from .classifier import GraphSSLClassifier
from .energies import (
    ENERGIES,
    ConvergenceWarning,
    DegenerateSolutionWarning,
    EnergyResult,
    PreparedGraph,
    UnlabelledComponentWarning,
    diffuse,
    diffuse_per_label,
    prepare_graph,
)
from .graph import edge_weights, knn_graph, knn_search
from .graph_step import GraphStep, certainty, graph_step, scores_to_proba
from .registry import Registry

__version__ = "0.1.0"

__all__ = [
    "ENERGIES",
    "ConvergenceWarning",
    "DegenerateSolutionWarning",
    "EnergyResult",
    "GraphSSLClassifier",
    "GraphStep",
    "PreparedGraph",
    "Registry",
    "UnlabelledComponentWarning",
    "diffuse",
    "diffuse_per_label",
    "certainty",
    "edge_weights",
    "graph_step",
    "knn_graph",
    "knn_search",
    "prepare_graph",
    "scores_to_proba",
]
