"""Training the hybrid model: One Pass and Dynamic Pass runs, metrics (imports torch)."""

from __future__ import annotations

from .experiment import Experiment, TrainingResult, run_experiment, run_training
from .metrics import classification_metrics, multilabel_metrics

__all__ = ["Experiment", "TrainingResult", "run_training", "run_experiment", "classification_metrics", "multilabel_metrics"]
