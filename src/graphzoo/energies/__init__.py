"""Graph energies: label diffusion as the minimisation of a graph Dirichlet-type energy.

Every energy is a plain function registered by name in :data:`ENERGIES`,

    energy(W, y, n_classes, **params) -> EnergyResult

and :func:`diffuse` is the front door that validates inputs, handles components without a label,
and warns when a solver hits its iteration cap or returns a degenerate (all one class) answer.
:func:`prepare_graph` does the graph's share of that (check, components, locality order) once, for
callers that diffuse on one graph many times.

=====================  ====================================================================
name                   energy
=====================  ====================================================================
``label_spreading``    p = 2, ``H = (I - αS)⁻¹ Y`` (Zhou et al. 2004)
``laplace``            harmonic extension, labels clamped (Zhu et al. 2003)
``poisson``            Poisson learning, optional class priors (Calder et al. 2020)
``tv_ratio``           p = 1, ``Σ_r TV(u_r)/B(u_r)`` on the simplex (Bresson et al. 2013)
``poisson_mbo``        Poisson learning, then volume-constrained graph MBO (Calder et al. 2020)
=====================  ====================================================================
"""

from ._base import (
    ENERGIES,
    ConvergenceWarning,
    DegenerateSolutionWarning,
    EnergyResult,
    UnlabelledComponentWarning,
    check_labels,
    diffuse,
    diffuse_per_label,
    one_hot,
)
from ._graph import PreparedGraph, check_graph, induced_subgraph, locality_order, prepare_graph
from ._solvers import block_cg
from .quadratic import fit_class_offsets, label_spreading, laplace, poisson
from .mbo import poisson_mbo, volume_weights
from .tv_ratio import tv_ratio

__all__ = [
    "ENERGIES",
    "ConvergenceWarning",
    "DegenerateSolutionWarning",
    "EnergyResult",
    "PreparedGraph",
    "UnlabelledComponentWarning",
    "block_cg",
    "check_graph",
    "check_labels",
    "diffuse",
    "diffuse_per_label",
    "fit_class_offsets",
    "induced_subgraph",
    "label_spreading",
    "laplace",
    "locality_order",
    "one_hot",
    "poisson",
    "poisson_mbo",
    "prepare_graph",
    "tv_ratio",
    "volume_weights",
]
