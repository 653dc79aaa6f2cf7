"""`RunDir`: the files of one run folder, named in one place.

A run of the hybrid model (``graphzoo run``, or one cell of an experiment grid) writes::

    runs/<name>/
      config.yaml        the resolved RunConfig (compared key by key on --resume)
      split.json         train / val / test split and labelled mask (graphzoo.data.load_split)
      split.csv          the same, one row per image, for people and spreadsheets
      history.csv        one row per epoch
      metrics.json       written last: its presence means the run finished
      predictions.csv    per-image predictions (net, graph and the reported one)
      features.npy       ψ(x) of every image, (n, d) float32, for baselines and the report
      suggestions.csv    images to label next (graphzoo suggest), with suggestions.png beside it
      labels.csv         labels given on the labelling page (graphzoo label), one row per image
      labels_added.csv   a --init-from run's copy of the labels it added (its config names the copy)
      checkpoints/last.pt   everything needed to resume (model, optimiser, loop state, RNG)
      checkpoints/best.pt   the best-by-validation weights and what is needed to rebuild the net

Every module that reads or writes these files goes through this object. Imports no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunDir"]


@dataclass(frozen=True)
class RunDir:
    """Paths of one run folder (see the module docstring); ``RunDir("runs/x").metrics``."""

    path: Path

    def __init__(self, path) -> None:
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def split(self) -> Path:
        return self.path / "split.json"

    @property
    def split_csv(self) -> Path:
        return self.path / "split.csv"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.path / "predictions.csv"

    @property
    def features(self) -> Path:
        return self.path / "features.npy"

    @property
    def suggestions(self) -> Path:
        """``suggestions.csv`` of ``graphzoo suggest`` (its contact sheet: the same name with ``.png``)."""
        return self.path / "suggestions.csv"

    @property
    def labels(self) -> Path:
        """``labels.csv`` of ``graphzoo label`` (``path,label,index,labelled_at``; see graphzoo.labelling)."""
        return self.path / "labels.csv"

    @property
    def added_labels(self) -> Path:
        """``labels_added.csv``: a copy of the labels a ``--init-from`` run added (its config names the copy, so the
        run stays reproducible and resumable while the labelling page goes on writing the original)."""
        return self.path / "labels_added.csv"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, which: str = "best") -> Path:
        """``checkpoints/best.pt`` or ``checkpoints/last.pt``."""
        if which not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
        return self.checkpoints / f"{which}.pt"

    @property
    def started(self) -> bool:
        """A run has written its first checkpoint here."""
        return self.checkpoint("last").is_file()

    @property
    def finished(self) -> bool:
        """The run ended and wrote its metrics (``metrics.json`` is written last)."""
        return self.metrics.is_file()

    def read_metrics(self) -> dict:
        if not self.finished:
            raise FileNotFoundError(f"{self.metrics} does not exist: {self.path} is not a finished graphzoo run "
                                    f"(rerun it, or continue it with graphzoo run --resume)")
        try:
            return json.loads(self.metrics.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{self.metrics} is damaged ({exc.msg}, line {exc.lineno}); rerun the run "
                             "with --overwrite") from None
