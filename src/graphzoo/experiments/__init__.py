"""Experiment grids (label fractions × seeds × methods + baselines on identical splits) and their metrics.

``graphzoo experiment --config configs/experiments/demo.yaml`` runs :func:`run_grid` on the spec
:func:`load_grid` reads; :mod:`graphzoo.report` turns the folder into ``report.html`` / ``report.md``.
"""

from __future__ import annotations

from .aggregate import cell_metrics, format_mean_std, results_table, summarise
from .grid import BASELINES, SPLIT_KEYS, Cell, GridSpec, MethodSpec, load_grid, plan_cells, read_results, run_grid

__all__ = ["load_grid", "plan_cells", "run_grid", "read_results", "GridSpec", "MethodSpec", "Cell", "BASELINES", "SPLIT_KEYS",
           "cell_metrics", "summarise", "results_table", "format_mean_std"]
