"""`run_training`: one run of the hybrid model, end to end.

    data → split → [pretraining] → ψ training (the mode) → graph step → metrics → run folder

:data:`MODES` maps ``cfg.mode`` to the function that trains: ``one-pass`` (:mod:`.one_pass`) or
``dynamic`` (:mod:`.dynamic_pass`). Both are short functions over the shared :class:`.Trainer`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .. import distributed
from ..config import RunConfig
from ..registry import Registry
from ..rundir import RunDir
from .dynamic_pass import dynamic_pass
from .evaluate import evaluate, write_history, write_metrics
from .one_pass import one_pass
from .trainer import Trainer, TrainingInterrupted

__all__ = ["MODES", "TrainingResult", "run_training"]

MODES: Registry = Registry("mode")
MODES.register("one-pass")(one_pass)
MODES.register("dynamic")(dynamic_pass)


@dataclass
class TrainingResult:
    """What :func:`run_training` gives: the metrics (as in metrics.json; ``{"interrupted_after_epoch": n}``
    when the test hook stopped it), the run folder and the prepared data (images, split, labelled mask)."""

    metrics: dict
    rundir: RunDir
    data: object  # graphzoo.data.PreparedData


def run_training(cfg: RunConfig, resume: bool = False, imageset=None, *,
                 stop_after_epochs: int | None = None) -> TrainingResult:
    """Train and evaluate one run of ``cfg``, or continue a killed one (``resume``).

    ``imageset`` replaces reading ``cfg.data`` (tests, notebooks); ``stop_after_epochs`` is a test
    hook that stops the run after that many epochs of this session, as a kill would.
    """
    trainer = Trainer(cfg, resume=resume, imageset=imageset, stop_after_epochs=stop_after_epochs)
    trainer.start()
    try:
        MODES.get(cfg.mode)(trainer)
    except TrainingInterrupted as stop:
        return TrainingResult({"interrupted_after_epoch": stop.args[0]}, trainer.rundir, trainer.data)
    if trainer.final_model() == "best":
        trainer.load_best_weights()
    metrics = evaluate(trainer)
    if trainer.state.get("pretrain"):
        metrics["pretrain"] = trainer.state["pretrain"]
    metrics["world_size"] = distributed.world_size()  # processes that trained (torchrun --nproc-per-node)
    metrics["wall_time_s"] = round(trainer.elapsed_before + time.perf_counter() - trainer.t_start, 1)
    if distributed.is_main():
        write_history(trainer)
        write_metrics(trainer, metrics)
    distributed.barrier()  # no rank returns before the run is finished on disk
    return TrainingResult(metrics, trainer.rundir, trainer.data)
