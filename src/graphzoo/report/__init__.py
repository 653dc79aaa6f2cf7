"""Reports of runs and experiments: a self-contained ``report.html`` and a ``report.md``.

``graphzoo report runs/experiments/demo`` (or a single run folder) calls :func:`build_report`.
"""

from __future__ import annotations

from .build import build_report
from .render import Section

__all__ = ["build_report", "Section"]
