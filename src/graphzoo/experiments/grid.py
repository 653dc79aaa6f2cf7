"""The experiment grid: label fractions × seeds × methods, plus baselines, on identical splits.

An experiment is a YAML file (``configs/experiments/*.yaml``)::

    name: demo                       # folder <out>/<name>
    out: runs/experiments
    base: ../demo.yaml               # a run config (relative to this file); optional
    set: {epochs: 5}                 # overrides of the base config, for every cell
    label_fractions: [0.05, 0.2]
    seeds: [0, 1, 2]
    methods:
      - {mode: one-pass, backbones: [small_cnn], energies: [label_spreading, poisson],
         energy_params: {label_spreading: {alpha: 0.99}}}
      - {mode: dynamic, backbones: [small_cnn], energies: [label_spreading], set: {epochs: 3},
         warm_start: one-pass}           # optional: start from the One Pass run's trained net
    baselines: [supervised, fully_supervised, gcn, sklearn_label_spreading]
    baseline_backbone: small_cnn     # whose One Pass features / graph the baselines use
    gcn: {hidden: 64, epochs: 200}
    sklearn_label_spreading: {alpha: 0.2}
    dynamic_last: false              # true: every seed's One Pass cells and baselines first
    report: true

Every cell of one (label fraction, seed) sees the same train / val / test split and the same
labelled mask: the split and the budget are drawn by :func:`graphzoo.data.prepare_data`
from the seed alone, method settings may not touch the keys that decide them (``SPLIT_KEYS``), and
each record stores hashes of both, checked as the grid runs.

Cells and what they cost
------------------------
* One Pass / Dynamic Pass: a full :class:`graphzoo.train.Experiment` run in ``<exp>/runs/<cell>``.
  One Pass trains its network on the labelled images only, so all the energies listed in one
  One Pass entry share that training: the first energy is the run, the others re-minimise their
  energy on the same features ψ(x) and graph (exactly what the run's evaluation does).
* Dynamic Pass with ``warm_start: one-pass``: its supervised warm-up on the labelled images *is* a
  One Pass training (same data, loss, early stopping), so the cell starts from the best checkpoint
  of the same grid's One Pass run with that backbone, fraction and seed (``pretrained=<its
  best.pt>``, ``warmup_epochs=0``) instead of training it again; only the dynamic epochs run. The
  head is re-initialised and trained in the dynamic epochs. That run's settings are the warm-up's
  (an entry's own ``warmup_epochs`` etc. are then not used).
* ``supervised``: the same One Pass network's inductive test prediction (trained on the labelled
  subset only, early-stopped on the labelled validation part).
* ``fully_supervised``: a One Pass run with every training label (``label_fraction=1``), inductive
  prediction; one per seed (column "100 %").
* ``gcn``: :func:`graphzoo.experiments.baselines.gcn_predict` on the kNN graph of the One Pass
  features; ``sklearn_label_spreading``: scikit-learn's ``LabelSpreading`` on the same features.

Each finished cell is appended to ``<exp>/results.jsonl`` at once; a rerun skips the cells found
there (and refuses a cell whose config changed since), and resumes a run killed mid-training.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..config import RunConfig, apply_overrides, config_diff, load_config
from .aggregate import cell_metrics, results_table

__all__ = ["GridSpec", "MethodSpec", "Cell", "load_grid", "plan_cells", "run_grid", "read_results", "stale_cells", "SPLIT_KEYS", "BASELINES"]

# Keys that decide the split and the labelled mask: identical for every cell of a (fraction, seed).
SPLIT_KEYS = ("data", "data_format", "task", "split", "split_fractions", "label_fraction", "labels_per_class", "val_labels", "seed")
BASELINES = ("supervised", "fully_supervised", "gcn", "sklearn_label_spreading")
BASELINE_LABELS = {
    "supervised": "Supervised, labelled subset only",
    "fully_supervised": "Fully supervised (all labels)",
    "gcn": "GCN (Kipf & Welling) on the ψ kNN graph",
    "sklearn_label_spreading": "scikit-learn LabelSpreading on ψ",
}
MODE_LABELS = {"one-pass": "One Pass", "dynamic": "Dynamic Pass"}
# keys of the run config that a cell may differ in without being another experiment
_FREE_KEYS = ("progress", "threads", "device", "out", "name")


@dataclass
class MethodSpec:
    """One method of the grid: a mode, a backbone, an energy and run-config overrides."""

    key: str
    label: str
    mode: str
    backbone: str
    energy: str
    energy_params: dict
    overrides: dict
    group: str  # One Pass entries sharing one training (same YAML entry and backbone)
    warm_start: bool = False  # Dynamic Pass: start from the grid's One Pass run (module docstring)


@dataclass
class GridSpec:
    """A parsed experiment file (see the module docstring)."""

    name: str
    folder: Path
    base: RunConfig
    label_fractions: list
    seeds: list
    methods: list
    baselines: list
    baseline_backbone: str
    gcn: dict = field(default_factory=dict)
    sklearn_label_spreading: dict = field(default_factory=dict)
    report: bool = True
    source: str = ""
    dynamic_last: bool = False

    @property
    def results_path(self) -> Path:
        return self.folder / "results.jsonl"


@dataclass
class Cell:
    """One unit of work: ``kind`` is "run" (a training run), "energy" (another energy on a One Pass
    run's features), "supervised", "gcn", "sklearn_label_spreading" (from a source run)."""

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


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------
def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def load_grid(path: str | Path, overrides: dict | None = None, out: str | None = None) -> GridSpec:
    """Read an experiment YAML; ``overrides`` (``--set``) apply to the base run config of every cell.

    Raises ``ValueError`` naming the key for unknown keys, empty grids, method settings that would
    change the split, and unknown baselines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {str(path)!r} does not exist")
    spec = yaml.safe_load(path.read_text()) or {}
    known = {"name", "out", "base", "set", "label_fractions", "seeds", "methods", "baselines", "baseline_backbone", "gcn",
             "sklearn_label_spreading", "report", "dynamic_last"}
    unknown = set(spec) - known
    if unknown:
        import difflib

        k = sorted(unknown)[0]
        close = difflib.get_close_matches(k, known, n=1)
        raise ValueError(f"{path}: unknown experiment key {k!r}." + (f" Did you mean {close[0]!r}?" if close else f" Known: {', '.join(sorted(known))}"))
    base = load_config(path.parent / spec["base"]) if spec.get("base") else RunConfig()
    inline = dict(spec.get("set") or {})
    if "data" in inline and not str(inline["data"]).startswith("/"):
        inline["data"] = str((path.parent / inline["data"]).resolve())  # relative to the experiment file
    base = apply_overrides(base, inline, source=f"{path}: set")
    if overrides:
        base = apply_overrides(base, overrides)
    base = dataclasses.replace(base, progress=base.progress and False)  # one line per cell, not bars
    fractions = [float(f) for f in _as_list(spec.get("label_fractions", [base.label_fraction]))]
    seeds = [int(s) for s in _as_list(spec.get("seeds", [0, 1, 2]))]
    if not fractions or not seeds:
        raise ValueError(f"{path}: label_fractions and seeds must be non-empty lists")
    if any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"{path}: label_fractions must lie in (0, 1], got {fractions}")
    methods: list[MethodSpec] = []
    for i, entry in enumerate(spec.get("methods") or []):
        if not isinstance(entry, dict) or "mode" not in entry:
            raise ValueError(f"{path}: methods[{i}] must be a mapping with a mode (one-pass or dynamic)")
        extra = set(entry) - {"mode", "backbones", "backbone", "energies", "energy", "energy_params", "set", "name", "warm_start"}
        if extra:
            raise ValueError(f"{path}: methods[{i}] has unknown key(s) {sorted(extra)}; use set: {{key: value}} for run-config keys")
        mode = entry["mode"]
        if mode not in MODE_LABELS:
            raise ValueError(f"{path}: methods[{i}].mode={mode!r} is not one of 'one-pass', 'dynamic'")
        sets = dict(entry.get("set") or {})
        bad = sorted(set(sets) & set(SPLIT_KEYS))
        if bad:
            raise ValueError(f"{path}: methods[{i}].set changes {bad}, which decide the split and label mask; "
                             "every method of a grid must see the same split (set them at the top level instead)")
        warm = entry.get("warm_start")
        if warm not in (None, False, "one-pass"):
            raise ValueError(f"{path}: methods[{i}].warm_start={warm!r}: the only warm start is 'one-pass'")
        if warm and mode != "dynamic":
            raise ValueError(f"{path}: methods[{i}].warm_start applies to mode: dynamic only")
        eparams = dict(entry.get("energy_params") or {})
        for b in _as_list(entry.get("backbones", entry.get("backbone", base.backbone))):
            for energy in _as_list(entry.get("energies", entry.get("energy", base.energy))):
                tag = f"-{entry['name']}" if entry.get("name") else ""
                key = f"{'op' if mode == 'one-pass' else 'dp'}-{b}-{energy}{tag}"
                if any(m.key == key for m in methods):
                    raise ValueError(f"{path}: method {key!r} appears twice; give one entry a name: to tell them apart")
                params = eparams.get(energy, base.energy_params if energy == base.energy else {})
                label = f"{MODE_LABELS[mode]} · {b} · {energy}" + (f" ({entry['name']})" if entry.get("name") else "")
                if warm and not any(m.mode == "one-pass" and m.backbone == b for m in methods):
                    raise ValueError(f"{path}: methods[{i}] (dynamic, {b}) has warm_start: one-pass, but no One Pass "
                                     f"method with backbone {b} is listed before it to start from")
                methods.append(MethodSpec(key, label, mode, b, energy, dict(params), sets, group=f"{i}:{b}", warm_start=bool(warm)))
    baselines = [str(b) for b in _as_list(spec.get("baselines", list(BASELINES)) or [])]
    for b in baselines:
        if b not in BASELINES:
            import difflib

            close = difflib.get_close_matches(b, BASELINES, n=1)
            raise ValueError(f"{path}: unknown baseline {b!r}." + (f" Did you mean {close[0]!r}?" if close else f" Known: {', '.join(BASELINES)}"))
    if not methods and not baselines:
        raise ValueError(f"{path}: no methods and no baselines: nothing to run")
    op = [m for m in methods if m.mode == "one-pass"]
    bb = spec.get("baseline_backbone") or (op[0].backbone if op else base.backbone)
    name = spec.get("name") or path.stem
    folder = Path(out or spec.get("out") or "runs/experiments") / name
    for f in fractions:  # every value checked before anything trains
        for m in methods:
            _method_cfg(base, m, f, 0, folder).validate()
    return GridSpec(name, folder, base, fractions, seeds, methods, baselines, bb, dict(spec.get("gcn") or {}),
                    dict(spec.get("sklearn_label_spreading") or {}), bool(spec.get("report", True)), str(path),
                    bool(spec.get("dynamic_last", False)))


def _fs(f: float) -> str:
    return f"{f:g}"


def _method_cfg(base: RunConfig, m: MethodSpec, fraction: float, seed: int, folder: Path) -> RunConfig:
    cfg = apply_overrides(base, m.overrides, source=f"method {m.key}")
    return dataclasses.replace(cfg, mode=m.mode, backbone=m.backbone, energy=m.energy, energy_params=dict(m.energy_params),
                               label_fraction=fraction, seed=seed, out=str(folder / "runs"), name=f"{m.key}-lf{_fs(fraction)}-s{seed}")


def plan_cells(spec: GridSpec) -> list[Cell]:
    """All cells in running order: seed by seed (so that a table with one seed exists early), then
    label fraction, methods before the baselines that read their runs. With ``dynamic_last`` the
    Dynamic Pass cells (the costly ones: a graph per epoch) move after all the others, so that the
    One Pass and baseline table over every seed exists first; they only read One Pass runs, which
    then still come before them."""
    cells: list[Cell] = []
    for seed in spec.seeds:
        for f in spec.label_fractions:
            first_of_group: dict[str, str] = {}
            op_run: dict[str, Cell] = {}  # backbone -> this (fraction, seed)'s first One Pass run
            for m in spec.methods:
                cid = f"{m.key}|lf={_fs(f)}|seed={seed}"
                common = dict(method=m.key, label=m.label, role="method", label_fraction=f, seed=seed, energy=m.energy,
                              energy_params=m.energy_params, backbone=m.backbone, mode=m.mode)
                if m.mode == "one-pass" and m.group in first_of_group:
                    cells.append(Cell(cid, kind="energy", source=first_of_group[m.group], **common))
                    continue
                cfg = _method_cfg(spec.base, m, f, seed, spec.folder)
                source = None
                if m.warm_start:
                    src = op_run[m.backbone]
                    best = Path(src.cfg.out) / src.cfg.name / "checkpoints" / "best.pt"
                    cfg = dataclasses.replace(cfg, pretrained=str(best), warmup_epochs=0)
                    source = src.id
                cells.append(Cell(cid, kind="run", cfg=cfg, source=source, **common))
                if m.mode == "one-pass":
                    first_of_group[m.group] = cid
                    op_run.setdefault(m.backbone, cells[-1])
            graph_bl = [b for b in spec.baselines if b in ("supervised", "gcn", "sklearn_label_spreading")]
            if graph_bl:
                src = op_run.get(spec.baseline_backbone)
                if src is None:  # no One Pass method with that backbone: run one for the baselines
                    m = MethodSpec(f"source-{spec.baseline_backbone}", "One Pass (baseline features)", "one-pass",
                                   spec.baseline_backbone, spec.base.energy, spec.base.energy_params, {}, "source")
                    src = Cell(f"{m.key}|lf={_fs(f)}|seed={seed}", m.key, m.label, "run", "source", f, seed,
                               cfg=_method_cfg(spec.base, m, f, seed, spec.folder), backbone=m.backbone, mode="one-pass", energy=m.energy)
                    cells.append(src)
                for b in graph_bl:
                    key = f"{b}-{spec.baseline_backbone}"
                    cells.append(Cell(f"{key}|lf={_fs(f)}|seed={seed}", key, f"{BASELINE_LABELS[b]} · {spec.baseline_backbone}",
                                      b, "baseline", f, seed, source=src.id, backbone=spec.baseline_backbone))
        if "fully_supervised" in spec.baselines:
            m = MethodSpec(f"fully_supervised-{spec.baseline_backbone}", "", "one-pass", spec.baseline_backbone, spec.base.energy,
                           spec.base.energy_params, {"test_prediction": "inductive"}, "full")
            cfg = _method_cfg(spec.base, m, 1.0, seed, spec.folder)
            cells.append(Cell(f"{m.key}|lf=1|seed={seed}", m.key, f"{BASELINE_LABELS['fully_supervised']} · {spec.baseline_backbone}",
                              "run", "baseline", 1.0, seed, cfg=cfg, backbone=m.backbone, mode="one-pass", energy=m.energy))
    if spec.dynamic_last:
        cells = [c for c in cells if c.mode != "dynamic"] + [c for c in cells if c.mode == "dynamic"]
    return cells


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
def read_results(path: str | Path) -> list[dict]:
    """Records of ``results.jsonl`` (a torn last line, from a kill mid-write, is ignored)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.jsonl"
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _hashes(data) -> tuple[str, str]:
    """(partition hash, labelled-mask hash) of a PreparedData."""
    h = hashlib.sha1(("|".join(map(str, data.split))).encode()).hexdigest()[:16]
    lab = hashlib.sha1(np.asarray(data.labelled, bool).tobytes()).hexdigest()[:16]
    return h, lab


def stale_cells(cells: list[Cell], done: dict[str, dict]) -> dict[str, list[str]]:
    """Finished cells (records in ``done`` by cell id) whose run config differs from the planned
    one, or that were computed from such a run: cell id -> the differences, worded as
    :func:`graphzoo.config.config_diff` does."""
    out: dict[str, list[str]] = {}
    for c in cells:  # in plan order: a source run comes before the cells that read it
        r = done.get(c.id)
        if r is None:
            continue
        if c.cfg is not None and r.get("config") is not None:
            diff = config_diff(r["config"], _cfg_fingerprint(c.cfg), ignore=_FREE_KEYS)
            if diff:
                out[c.id] = diff
        if c.id not in out and c.source in out:  # computed from (or warm-started by) a run that changed
            out[c.id] = [f"its source run {c.source} changed"]
    return out


def _cfg_fingerprint(cfg: RunConfig) -> dict:
    d = cfg.to_dict()
    for k in _FREE_KEYS:
        d.pop(k, None)
    return d


class _Runner:
    def __init__(self, spec: GridSpec, log=sys.stderr):
        self.spec = spec
        self.log = log
        self.data_cache: dict[str, object] = {}  # run cell id -> PreparedData
        self.feat_cache: dict[str, np.ndarray] = {}
        self.graph_cache: dict[tuple, object] = {}  # (run cell id, k, metric) -> kNN graph of its features
        self.cells = {c.id: c for c in plan_cells(spec)}

    # -- helpers --------------------------------------------------------------------------------
    def _run_dir(self, cell: Cell) -> Path:
        return Path(cell.cfg.out) / cell.cfg.name

    def _data(self, cid: str):
        if cid not in self.data_cache:
            from ..data import prepare_data

            self.data_cache = {}  # one (fraction, seed) at a time: the images can be large
            self.data_cache[cid] = prepare_data(**self.cells[cid].cfg.data_options())
        return self.data_cache[cid]

    def _features(self, cid: str) -> np.ndarray:
        if cid not in self.feat_cache:
            from .baselines import run_features

            src = self.cells[cid]
            self.feat_cache = {cid: run_features(self._run_dir(src), self._data(cid).images)}
            self.graph_cache = {}
        return self.feat_cache[cid]

    def _graph(self, cid: str, cfg):
        """kNN graph of a run's features, built once for all the energies and the GCN on them."""
        key = (cid, cfg.n_neighbors, cfg.graph_metric)
        if key not in self.graph_cache:
            from ..graph_step import build_graph

            self.graph_cache[key] = build_graph(self._features(cid), cfg.n_neighbors, cfg.graph_metric)
        return self.graph_cache[key]

    # -- cells ----------------------------------------------------------------------------------
    def run_cell(self, cell: Cell) -> dict:
        rec: dict = {}
        if cell.kind == "run":
            from ..rundir import RunDir
            from ..train import run_training

            run_dir = self._run_dir(cell)
            result = run_training(cell.cfg, resume=RunDir(run_dir).started)
            metrics, data = result.metrics, result.data
            self.data_cache = {cell.id: data}
            self.feat_cache = {}
            rec.update({k: metrics.get(k) for k in ("accuracy", "balanced_accuracy", "auc", "per_class", "test_prediction")})
            rec["confusion"] = _confusion_from_predictions(run_dir / "predictions.csv", data.names, "pred") if not data.multilabel else None
            rec.update(run_dir=str(run_dir.relative_to(self.spec.folder)), epochs=metrics.get("epochs"), best_epoch=metrics.get("best_epoch"),
                       run_wall_s=metrics.get("wall_time_s"), test_inductive_accuracy=metrics["test_inductive"].get("accuracy"),
                       test_transductive_accuracy=metrics["test_transductive"].get("accuracy"),
                       test_inductive_auc=metrics["test_inductive"].get("auc"), test_transductive_auc=metrics["test_transductive"].get("auc"))
            rec["config"] = _cfg_fingerprint(cell.cfg)
            if cell.mode == "one-pass" and cell.role != "baseline":
                self._features(cell.id)  # cached in the run folder for the energies / baselines that follow
        else:
            src = self.cells[cell.source]
            data = self._data(src.id)
            test = data.split == "test"
            run_dir = self._run_dir(src)
            rec["run_dir"] = str(run_dir.relative_to(self.spec.folder))
            if cell.kind == "supervised":
                m = json.loads((run_dir / "metrics.json").read_text())["test_inductive"]
                rec.update({k: m.get(k) for k in ("accuracy", "balanced_accuracy", "auc", "per_class")})
                rec["confusion"] = None if data.multilabel else _confusion_from_predictions(run_dir / "predictions.csv", data.names, "pred_net")
                rec["test_prediction"] = "inductive"
            else:
                Z = self._features(src.id)
                graph_lab = data.labelled & (data.split == "train")
                if cell.kind == "energy":
                    from ..graph_step import graph_step

                    cfg = dataclasses.replace(src.cfg, energy=cell.energy, energy_params=dict(cell.energy_params))
                    cfg.validate()
                    y = np.where(graph_lab[:, None] if data.multilabel else graph_lab, data.targets, -1)
                    step = graph_step(Z, y, energy=cfg.energy, energy_params=cfg.energy_params, n_classes=data.n_outputs,
                                      multilabel=data.multilabel, W=self._graph(src.id, cfg))
                    P = step.proba
                    rec["graph"] = step.info
                    rec["config"] = _cfg_fingerprint(cfg)
                elif cell.kind == "gcn":
                    from .baselines import gcn_predict

                    W = self._graph(src.id, src.cfg)
                    val_lab = np.flatnonzero(data.labelled & (data.split == "val"))
                    P = gcn_predict(W, Z, data.targets, np.flatnonzero(graph_lab), val_lab if len(val_lab) else None,
                                    multilabel=data.multilabel, n_outputs=data.n_outputs, seed=cell.seed, **self.spec.gcn)
                elif cell.kind == "sklearn_label_spreading":
                    from .baselines import sklearn_label_spreading

                    params = {"n_neighbors": src.cfg.n_neighbors, **self.spec.sklearn_label_spreading}
                    P = sklearn_label_spreading(Z, data.targets, graph_lab, multilabel=data.multilabel, n_outputs=data.n_outputs,
                                                cosine=src.cfg.graph_metric == "cosine", **params)
                else:  # pragma: no cover
                    raise AssertionError(cell.kind)
                m = cell_metrics(data.targets[test], P[test], data.names, data.multilabel)
                rec.update({k: m.get(k) for k in ("accuracy", "balanced_accuracy", "auc", "per_class", "confusion")})
                rec["test_prediction"] = "transductive"
        rec["split_hash"], rec["label_hash"] = _hashes(data)
        rec["multilabel"] = bool(data.multilabel)
        rec["names"] = list(data.names)
        rec["n_test"] = int((data.split == "test").sum())
        rec["n_labelled_train"] = int((data.labelled & (data.split == "train")).sum())
        return rec

    # -- loop -----------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        spec = self.spec
        spec.folder.mkdir(parents=True, exist_ok=True)
        done = {r["cell"]: r for r in read_results(spec.results_path)}
        cells = list(self.cells.values())
        stale = stale_cells(cells, done)  # a cell whose config changed since it ran is not silently reused
        if stale:
            cid, diff = next(iter(stale.items()))
            raise ValueError(f"{len(stale)} finished cell(s) of {spec.results_path} were run with another config, e.g. {cid} "
                             f"({'; '.join(diff[:4])}); use a new experiment name, or delete their lines from results.jsonl "
                             "and their run folders")
        t_grid = time.perf_counter()
        n = len(cells)
        for i, c in enumerate(cells, 1):
            tag = f"[{i}/{n}] {c.method} lf={_fs(c.label_fraction)} seed={c.seed}"
            if c.id in done:
                print(f"{tag}: done, skipped", file=self.log, flush=True)
                continue
            t0 = time.perf_counter()
            rec = self.run_cell(c)
            rec = {"cell": c.id, "method": c.method, "label": c.label, "kind": c.kind, "role": c.role, "mode": c.mode,
                   "backbone": c.backbone, "energy": c.energy if c.kind in ("run", "energy") else "",
                   "label_fraction": c.label_fraction, "seed": c.seed, **rec,
                   "wall_s": round(time.perf_counter() - t0, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
            self._check_split(rec, done)
            with open(spec.results_path, "a") as fh:  # appended as it finishes: a kill loses one cell at most
                fh.write(json.dumps(rec) + "\n")
            done[c.id] = rec
            auc = f" auc {rec['auc']:.3f}" if rec.get("auc") is not None else ""
            acc = f"accuracy {rec['accuracy']:.3f}" if rec.get("accuracy") is not None else "accuracy -"
            print(f"{tag}: {acc}{auc} ({rec['wall_s']:.1f} s, grid {time.perf_counter() - t_grid:.0f} s)", file=self.log, flush=True)
        records = [done[c.id] for c in cells if c.id in done]
        write_summary(spec.folder, records)
        return records

    def _check_split(self, rec: dict, done: dict) -> None:
        for r in done.values():
            if r["seed"] != rec["seed"]:
                continue
            if r["split_hash"] != rec["split_hash"]:
                raise RuntimeError(f"cell {rec['cell']} drew another train/val/test split than {r['cell']} (same seed): "
                                   "the grid's cells would not be comparable")
            if r["label_fraction"] == rec["label_fraction"] and r["label_hash"] != rec["label_hash"]:
                raise RuntimeError(f"cell {rec['cell']} drew another labelled mask than {r['cell']}: the grid's cells would not be comparable")


def _confusion_from_predictions(path: Path, names: list, column: str) -> list | None:
    import csv

    idx = {n: k for k, n in enumerate(names)}
    cm = np.zeros((len(names), len(names)), np.int64)
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["split"] == "test":
                cm[idx[row["true"]], idx[row[column]]] += 1
    return cm.tolist()


def write_summary(folder: Path, records: list[dict]) -> Path:
    """``summary.md`` and ``results.csv`` in the experiment folder (rewritten from all records)."""
    import csv

    shown = [r for r in records if r.get("role") != "source"]
    lines = [f"# Experiment {folder.name}", ""]
    metrics = ["auc"] if shown and shown[0].get("multilabel") else ["accuracy", "balanced_accuracy", "auc"]
    for metric in metrics:
        header, rows, _ = results_table(shown, metric)
        lines += [f"## Test {metric.replace('_', ' ')} (mean ± std over seeds)", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows] + [""]
    (folder / "summary.md").write_text("\n".join(lines))
    cols = ["cell", "method", "label", "role", "label_fraction", "seed", "accuracy", "balanced_accuracy", "auc", "n_labelled_train", "n_test", "wall_s"]
    with open(folder / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow(r)
    return folder / "summary.md"


def run_grid(spec: GridSpec, log=sys.stderr) -> list[dict]:
    """Run every cell of ``spec`` not yet in its ``results.jsonl``; return all records."""
    spec.folder.mkdir(parents=True, exist_ok=True)
    (spec.folder / "experiment.yaml").write_text(yaml.safe_dump({
        "source": spec.source, "label_fractions": spec.label_fractions, "seeds": spec.seeds,
        "methods": [dataclasses.asdict(m) for m in spec.methods], "baselines": spec.baselines,
        "baseline_backbone": spec.baseline_backbone, "gcn": spec.gcn, "sklearn_label_spreading": spec.sklearn_label_spreading,
        "base": spec.base.to_dict()}, sort_keys=False))
    return _Runner(spec, log).run()
