"""The cells of an experiment grid and how each kind is run into a result record.

A :class:`Cell` is one unit of work of :func:`graphzoo.experiments.grid.plan_cells`. Its ``kind``
is a key of :data:`CELL_KINDS` (the methods' cells) or the name of a baseline of
:data:`graphzoo.experiments.baselines.BASELINES` that reads a source run:

* ``run``: a training run (:func:`graphzoo.train.run_training`) in ``<exp>/runs/<name>``, resumed
  where it was killed;
* ``energy``: another energy minimised on a One Pass run's features ψ(x) and kNN graph, exactly as
  that run's evaluation does (:func:`graphzoo.graph_step.graph_step`);
* a baseline name: the baseline's ``predict`` (scored on the test images) or ``read`` on the
  source run's features, graph and folder;
* ``active``: a simulated active-labelling curve on the source run's features and graph
  (registered by :mod:`graphzoo.experiments.active`).

:class:`CellRunner` runs cells one after the other, keeping the prepared data, the features and
the graph of the latest source run in memory (one (fraction, seed) at a time: images can be large).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..config import RunConfig
from ..registry import Registry
from ..rundir import RunDir
from .aggregate import cell_metrics
from .baselines import BASELINES, BaselineInputs, run_confusion, run_features

__all__ = ["Cell", "CELL_KINDS", "CellRunner", "FREE_KEYS", "cfg_fingerprint"]

# keys of the run config that a cell may differ in without being another experiment
# (threads changes results: float sums in another order; pretrain_dir only says where encoders are cached;
# data_in_memory reads the same pixels either way)
FREE_KEYS = ("progress", "device", "out", "name", "pretrain_dir", "data_in_memory")
_TEST_METRICS = ("accuracy", "balanced_accuracy", "auc", "per_class")


@dataclass
class Cell:
    """One unit of work: ``kind`` is "run" (a training run), "energy" (another energy on a One Pass
    run's features) or the name of a baseline that reads a source run ("supervised", "gcn", ...)."""

    id: str
    method: str
    label: str
    kind: str
    role: str  # "method", "baseline" or "source" (a run the baselines need, not itself in the tables)
    label_fraction: float
    seed: int
    cfg: RunConfig | None = None
    source: str | None = None  # id of the run cell this cell reads
    energy: str = ""
    energy_params: dict = field(default_factory=dict)
    backbone: str = ""
    mode: str = ""
    options: dict = field(default_factory=dict)  # settings of a cell without a run config (an active cell's)


def cfg_fingerprint(cfg: RunConfig) -> dict:
    """The run config as stored in a record's ``config`` (without the :data:`FREE_KEYS`)."""
    d = cfg.to_dict()
    for k in FREE_KEYS:
        d.pop(k, None)
    return d


def _hashes(data) -> tuple[str, str]:
    """(partition hash, labelled-mask hash) of a PreparedData."""
    h = hashlib.sha1(("|".join(map(str, data.split))).encode()).hexdigest()[:16]
    lab = hashlib.sha1(np.asarray(data.labelled, bool).tobytes()).hexdigest()[:16]
    return h, lab


#: Cell kinds of the methods: ``kind(runner, cell) -> (record fields, the PreparedData it used)``.
CELL_KINDS: Registry[Callable] = Registry("cell kind")


class CellRunner:
    """Runs cells of one plan into result records (see the module docstring).

    Parameters
    ----------
    cells : list of Cell
        The whole plan: a cell's ``source`` is looked up here.
    folder : Path
        The experiment folder (records store run folders relative to it).
    baseline_options : dict
        Baseline name -> its option block of the grid file.
    """

    def __init__(self, cells: list[Cell], folder: Path, baseline_options: dict) -> None:
        self.cells = {c.id: c for c in cells}
        self.folder = Path(folder)
        self.baseline_options = baseline_options
        self.data_cache: dict[str, object] = {}  # run cell id -> PreparedData
        self.feat_cache: dict[str, np.ndarray] = {}
        self.graph_cache: dict[str, object] = {}  # run cell id -> kNN graph of its features
        self.acq_cache: dict[str, dict] = {}  # run cell id -> the acquisition strategies' cache of its graph

    def acquisition_cache(self, cid: str) -> dict:
        """The strategies' per-graph cache (model_change's spectrum) for run cell ``cid``'s graph."""
        if cid not in self.acq_cache:
            self.acq_cache = {cid: {}}  # one graph at a time, as the graph cache
        return self.acq_cache[cid]

    def rundir(self, cell: Cell) -> RunDir:
        return RunDir(Path(cell.cfg.out) / cell.cfg.name)

    def relative(self, run: RunDir) -> str:
        return str(run.path.relative_to(self.folder))

    def data(self, cid: str):
        """The PreparedData of run cell ``cid`` (prepared again when not the one in memory)."""
        if cid not in self.data_cache:
            from ..data import prepare_data

            self.data_cache = {cid: prepare_data(**self.cells[cid].cfg.data_options())}
        return self.data_cache[cid]

    def features(self, cid: str) -> np.ndarray:
        """ψ(x) of every image of run cell ``cid`` (its ``features.npy``)."""
        if cid not in self.feat_cache:
            self.feat_cache = {cid: run_features(self.rundir(self.cells[cid]), self.data(cid).images)}
            self.graph_cache, self.acq_cache = {}, {}
        return self.feat_cache[cid]

    def graph(self, cid: str):
        """kNN graph of a run's features, built once for all the energies and baselines on them."""
        if cid not in self.graph_cache:
            from ..graph_step import build_graph

            cfg = self.cells[cid].cfg
            self.graph_cache[cid] = build_graph(self.features(cid), cfg.n_neighbors, cfg.graph_metric)
        return self.graph_cache[cid]

    def run_cell(self, cell: Cell) -> dict:
        """The record fields of ``cell`` (the grid adds the cell's identity and timing)."""
        kind = CELL_KINDS.get(cell.kind) if cell.kind in CELL_KINDS else _baseline_cell
        rec, data = kind(self, cell)
        rec["split_hash"], rec["label_hash"] = _hashes(data)
        rec["multilabel"] = bool(data.multilabel)
        rec["names"] = list(data.names)
        rec["n_test"] = int((data.split == "test").sum())
        rec.setdefault("n_labelled_train", int(data.graph_labels.sum()))  # an active cell says its own
        return rec


@CELL_KINDS.register("run")
def _run_cell(runner: CellRunner, cell: Cell) -> tuple[dict, object]:
    from ..train import run_training

    run = runner.rundir(cell)
    result = run_training(cell.cfg, resume=run.started)  # a run killed mid-training continues
    metrics, data = result.metrics, result.data
    runner.data_cache = {cell.id: data}
    runner.feat_cache = {}
    rec = {k: metrics.get(k) for k in (*_TEST_METRICS, "test_prediction")}
    rec["confusion"] = None if data.multilabel else run_confusion(run, data.names, "pred")
    ind, trans = metrics["test_inductive"], metrics["test_transductive"]
    rec.update(run_dir=runner.relative(run), epochs=metrics.get("epochs"), best_epoch=metrics.get("best_epoch"),
               run_wall_s=metrics.get("wall_time_s"), test_inductive_accuracy=ind.get("accuracy"),
               test_transductive_accuracy=trans.get("accuracy"), test_inductive_auc=ind.get("auc"),
               test_transductive_auc=trans.get("auc"))
    rec["config"] = cfg_fingerprint(cell.cfg)
    rec["pretrain_used"] = (metrics.get("pretrain") or {}).get("method", "")  # what pretrain="auto" chose
    if cell.mode == "one-pass" and cell.role != "baseline":
        runner.features(cell.id)  # cached in the run folder for the energies / baselines that follow
    return rec, data


@CELL_KINDS.register("energy")
def _energy_cell(runner: CellRunner, cell: Cell) -> tuple[dict, object]:
    from ..graph_step import graph_step

    src = runner.cells[cell.source]
    data = runner.data(src.id)
    rec = {"run_dir": runner.relative(runner.rundir(src))}
    Z = runner.features(src.id)
    cfg = dataclasses.replace(src.cfg, energy=cell.energy, energy_params=dict(cell.energy_params))
    cfg.validate()
    lab = data.graph_labels
    y = np.where(lab[:, None] if data.multilabel else lab, data.targets, -1)
    step = graph_step(Z, y, energy=cfg.energy, energy_params=cfg.energy_params, n_classes=data.n_outputs,
                      multilabel=data.multilabel, W=runner.graph(src.id))
    rec.update(_test_scores(data, step.proba), test_prediction="transductive", graph=step.info)
    rec["config"] = cfg_fingerprint(cfg)
    return rec, data


def _baseline_cell(runner: CellRunner, cell: Cell) -> tuple[dict, object]:
    """A baseline that reads the source run: its ``predict`` scored on the test images, or its ``read``."""
    baseline = BASELINES.get(cell.kind)
    src = runner.cells[cell.source]
    data = runner.data(src.id)
    run = runner.rundir(src)
    inputs = BaselineInputs(data, seed=cell.seed, load_features=lambda: runner.features(src.id),
                            load_graph=lambda: runner.graph(src.id), n_neighbors=src.cfg.n_neighbors,
                            graph_metric=src.cfg.graph_metric, run=run)
    rec = {"run_dir": runner.relative(run)}
    if cell.options:
        rec["options"] = dict(cell.options)  # so that a changed option block is seen as a change (stale_cells)
    if baseline.predict is not None:
        rec.update(_test_scores(data, baseline.predict(inputs, **runner.baseline_options.get(cell.kind, {}))))
    else:
        rec.update(baseline.read(inputs))
    rec["test_prediction"] = baseline.prediction
    return rec, data


def _test_scores(data, proba: np.ndarray) -> dict:
    """Test metrics and confusion matrix of probabilities ``proba`` (n, c) or (n, L) of every image."""
    test = data.split == "test"
    m = cell_metrics(data.targets[test], proba[test], data.names, data.multilabel)
    return {k: m.get(k) for k in (*_TEST_METRICS, "confusion")}
