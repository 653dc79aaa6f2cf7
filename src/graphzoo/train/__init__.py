"""Training the hybrid model: One Pass and Dynamic Pass runs, metrics (imports torch)."""

from __future__ import annotations

from .experiment import Experiment, prepare_data, run_experiment
from .metrics import classification_metrics, multilabel_metrics

__all__ = ["Experiment", "prepare_data", "run_experiment", "classification_metrics", "multilabel_metrics"]
