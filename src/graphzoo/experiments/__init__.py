"""Experiment grids (label fractions × seeds × methods + baselines on identical splits) and their metrics.

``graphzoo experiment --config configs/experiments/demo.yaml`` runs :func:`run_grid` on the spec
:func:`load_grid` reads; :mod:`graphzoo.report` turns the folder into ``report.html`` / ``report.md``.
A new baseline is one :class:`Baseline` given to :func:`register_baseline` (see
:mod:`graphzoo.experiments.baselines`).
"""

from __future__ import annotations

from .aggregate import cell_metrics, format_mean_std, results_table, summarise
from .baselines import BASELINES, Baseline, BaselineInputs, register_baseline
from .cells import CELL_KINDS, Cell
from .grid import SPLIT_KEYS, GridSpec, MethodSpec, load_grid, plan_cells, read_results, run_grid

__all__ = ["load_grid", "plan_cells", "run_grid", "read_results", "GridSpec", "MethodSpec", "Cell", "CELL_KINDS",
           "BASELINES", "Baseline", "BaselineInputs", "register_baseline", "SPLIT_KEYS", "cell_metrics", "summarise",
           "results_table", "format_mean_std"]
