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
    baselines: [supervised, fully_supervised, gcn, sklearn_label_spreading]   # default: all registered
    baseline_backbone: small_cnn     # whose One Pass features / graph the baselines use
    gcn: {hidden: 64, epochs: 200}   # a baseline's options, under its name
    sklearn_label_spreading: {alpha: 0.2}
    active: {strategies: [random, uncertainty, model_change], start_per_class: 5, rounds: 4, batch: 20}
    dynamic_last: false              # true: every seed's One Pass cells and baselines first
    report: true

Every cell of one (label fraction, seed) sees the same train / val / test split and the same
labelled mask: the split and the budget are drawn by :func:`graphzoo.data.prepare_data`
from the seed alone, method settings may not touch the keys that decide them (``SPLIT_KEYS``), and
each record stores hashes of both, checked as the grid runs.

Cells and what they cost
------------------------
(:mod:`graphzoo.experiments.cells` runs them.)

* One Pass / Dynamic Pass: a full training run (:func:`graphzoo.train.run_training`) in
  ``<exp>/runs/<cell>``. One Pass trains its network on the labelled images only, so all the
  energies listed in one One Pass entry share that training: the first energy is the run, the
  others re-minimise their energy on the same features ψ(x) and graph (exactly what the run's
  evaluation does).
* Dynamic Pass with ``warm_start: one-pass``: its supervised warm-up on the labelled images *is* a
  One Pass training (same data, loss, early stopping), so the cell starts from the best checkpoint
  of the same grid's One Pass run with that backbone, fraction and seed (``pretrained=<its
  best.pt>``, ``warmup_epochs=0``) instead of training it again; only the dynamic epochs run. The
  head is re-initialised and trained in the dynamic epochs. That run's settings are the warm-up's
  (an entry's own ``warmup_epochs`` etc. are then not used).
* Baselines are the entries of :data:`graphzoo.experiments.baselines.BASELINES`. Most read the
  One Pass run of ``baseline_backbone`` at the same fraction and seed (its network's inductive
  prediction, or its features and kNN graph); one is run for them (role "source") when no method
  has that backbone. A baseline with a run of its own (``fully_supervised``: every training label,
  column "100 %") runs once per seed.
* With an ``active:`` block, one cell per acquisition strategy at each (fraction, seed) reads that
  same One Pass run and records a simulated labels-vs-accuracy curve, graph only (ψ not
  retrained): :mod:`graphzoo.experiments.active`. A file without the block plans no such cell.

Each finished cell is appended to ``<exp>/results.jsonl`` at once; a rerun skips the cells found
there (and refuses a cell whose config changed since), and resumes a run killed mid-training.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import RunConfig, apply_overrides, config_diff, load_config, load_yaml
from ..registry import did_you_mean
from ..rundir import RunDir
from .active import ActiveSpec, active_cells, active_table, parse_active
from .aggregate import markdown_table, results_table
from .baselines import BASELINES, default_baselines
from .cells import FREE_KEYS, Cell, CellRunner, cfg_fingerprint

__all__ = ["GridSpec", "MethodSpec", "Cell", "load_grid", "plan_cells", "run_grid", "read_results", "stale_cells",
           "write_summary", "SPLIT_KEYS", "BASELINES"]

# Keys that decide the split and the labelled mask: identical for every cell of a (fraction, seed).
SPLIT_KEYS = ("data", "data_format", "reader_options", "task", "split", "split_fractions", "label_fraction",
              "labels_per_class", "val_labels", "seed")
MODE_LABELS = {"one-pass": "One Pass", "dynamic": "Dynamic Pass"}
_GRID_KEYS = {"name", "out", "base", "set", "label_fractions", "seeds", "methods", "baselines", "baseline_backbone",
              "report", "dynamic_last", "active"}
_METHOD_KEYS = {"mode", "backbones", "backbone", "energies", "energy", "energy_params", "set", "name", "warm_start"}


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
    baseline_options: dict = field(default_factory=dict)  # baseline name -> its option block
    report: bool = True
    source: str = ""
    dynamic_last: bool = False
    active: ActiveSpec | None = None  # the simulated active-labelling cells (graphzoo.experiments.active)

    @property
    def results_path(self) -> Path:
        return self.folder / "results.jsonl"


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------
def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def load_grid(path: str | Path, overrides: dict | None = None, out: str | None = None) -> GridSpec:
    """Read an experiment YAML; ``overrides`` (``--set``) apply to the base run config of every cell.

    Raises ``ValueError`` naming the key for unknown keys, empty grids, method settings that would
    change the split, unknown baselines and unknown baseline options.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {str(path)!r} does not exist")
    spec = load_yaml(path) or {}  # refuses duplicate keys, names file and line on a syntax error
    known = _GRID_KEYS | set(BASELINES)  # a baseline's name is the key of its option block
    unknown = set(spec) - known
    if unknown:
        k = sorted(unknown)[0]
        hint = did_you_mean(k, known) or f" Known: {', '.join(sorted(known))}"
        raise ValueError(f"{path}: unknown experiment key {k!r}.{hint}")
    base = load_config(path.parent / spec["base"]) if spec.get("base") else RunConfig()
    inline = dict(spec.get("set") or {})
    if "data" in inline and not str(inline["data"]).startswith("/"):
        inline["data"] = str((path.parent / inline["data"]).resolve())  # relative to the experiment file
    base = apply_overrides(base, inline, source=f"{path}: set")
    if overrides:
        fixed = sorted({"label_fraction", "labels_per_class", "seed"} & set(overrides))
        if fixed:
            raise ValueError(f"--set {', '.join(fixed)}: an experiment takes its label fractions and seeds from "
                             f"{path} (label_fractions:, seeds:); edit the file instead")
        base = apply_overrides(base, overrides)
    base = dataclasses.replace(base, progress=False)  # one line per cell, not bars (experiment --progress: bars)
    fractions = [float(f) for f in _as_list(spec.get("label_fractions", [base.label_fraction]))]
    seeds = [int(s) for s in _as_list(spec.get("seeds", [0, 1, 2]))]
    if not fractions or not seeds:
        raise ValueError(f"{path}: label_fractions and seeds must be non-empty lists")
    if any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"{path}: label_fractions must lie in (0, 1], got {fractions}")
    methods = _parse_methods(path, spec.get("methods") or [], base)
    baselines = [str(b) for b in _as_list(spec.get("baselines", default_baselines()) or [])]
    for b in baselines:
        try:
            BASELINES.get(b)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    options = {b: BASELINES.get(b).check_options(spec[b] or {}, str(path)) for b in BASELINES if b in spec}
    active = parse_active(str(path), spec.get("active"))
    if active is not None and base.task == "multilabel":
        raise ValueError(f"{path}: the active: block needs a single-label task (the strategies rank class "
                         "margins); remove it for a multi-label grid")
    if not methods and not baselines and active is None:
        raise ValueError(f"{path}: no methods and no baselines: nothing to run")
    op = [m for m in methods if m.mode == "one-pass"]
    bb = spec.get("baseline_backbone") or (op[0].backbone if op else base.backbone)
    name = spec.get("name") or path.stem
    folder = Path(out or spec.get("out") or "runs/experiments") / name
    for f in fractions:  # every value checked before anything trains
        for m in methods:
            _method_cfg(base, m, f, 0, folder).validate()
    return GridSpec(name, folder, base, fractions, seeds, methods, baselines, bb, options,
                    bool(spec.get("report", True)), str(path), bool(spec.get("dynamic_last", False)), active)


def _parse_methods(path: Path, entries: list, base: RunConfig) -> list[MethodSpec]:
    """The ``methods:`` list, one MethodSpec per (entry, backbone, energy), checked."""
    methods: list[MethodSpec] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "mode" not in entry:
            raise ValueError(f"{path}: methods[{i}] must be a mapping with a mode (one-pass or dynamic)")
        extra = set(entry) - _METHOD_KEYS
        if extra:
            raise ValueError(f"{path}: methods[{i}] has unknown key(s) {sorted(extra)}; "
                             "use set: {key: value} for run-config keys")
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
        tag = f"-{entry['name']}" if entry.get("name") else ""
        for b in _as_list(entry.get("backbones", entry.get("backbone", base.backbone))):
            if warm and not any(m.mode == "one-pass" and m.backbone == b for m in methods):
                raise ValueError(f"{path}: methods[{i}] (dynamic, {b}) has warm_start: one-pass, but no One Pass "
                                 f"method with backbone {b} is listed before it to start from")
            for energy in _as_list(entry.get("energies", entry.get("energy", base.energy))):
                key = f"{'op' if mode == 'one-pass' else 'dp'}-{b}-{energy}{tag}"
                if any(m.key == key for m in methods):
                    raise ValueError(f"{path}: method {key!r} appears twice; give one entry a name: to tell them apart")
                params = eparams.get(energy, base.energy_params if energy == base.energy else {})
                label = f"{MODE_LABELS[mode]} · {b} · {energy}" + (f" ({entry['name']})" if entry.get("name") else "")
                methods.append(MethodSpec(key, label, mode, b, energy, dict(params), sets, group=f"{i}:{b}",
                                          warm_start=bool(warm)))
    return methods


def _fs(f: float) -> str:
    return f"{f:g}"


def _method_cfg(base: RunConfig, m: MethodSpec, fraction: float, seed: int, folder: Path) -> RunConfig:
    cfg = apply_overrides(base, m.overrides, source=f"method {m.key}")
    return dataclasses.replace(cfg, mode=m.mode, backbone=m.backbone, energy=m.energy,
                               energy_params=dict(m.energy_params), label_fraction=fraction, seed=seed,
                               out=str(folder / "runs"), name=f"{m.key}-lf{_fs(fraction)}-s{seed}")


def _run_cell_of(spec: GridSpec, m: MethodSpec, fraction: float, seed: int, role: str, label: str) -> Cell:
    """The "run" cell of method ``m`` at one (fraction, seed)."""
    return Cell(f"{m.key}|lf={_fs(fraction)}|seed={seed}", m.key, label, "run", role, fraction, seed,
                cfg=_method_cfg(spec.base, m, fraction, seed, spec.folder), energy=m.energy,
                energy_params=m.energy_params, backbone=m.backbone, mode=m.mode)


def plan_cells(spec: GridSpec) -> list[Cell]:
    """All cells in running order: seed by seed (so that a table with one seed exists early), then
    label fraction, methods before the baselines that read their runs; the baselines with a run of
    their own after the fractions of their seed. With ``dynamic_last`` the Dynamic Pass cells (the
    costly ones: a graph per epoch) move after all the others, so that the One Pass and baseline
    table over every seed exists first; they only read One Pass runs, which then still come before
    them."""
    bb = spec.baseline_backbone
    reading = [b for b in spec.baselines if BASELINES.get(b).own_run is None]  # read the One Pass run
    cells: list[Cell] = []
    for seed in spec.seeds:
        for f in spec.label_fractions:
            op_run = _plan_methods(spec, f, seed, cells)
            if reading or spec.active:
                src = op_run.get(bb)
                if src is None:  # no One Pass method with that backbone: run one for the baselines
                    m = MethodSpec(f"source-{bb}", "One Pass (baseline features)", "one-pass", bb, spec.base.energy,
                                   spec.base.energy_params, {}, "source")
                    src = _run_cell_of(spec, m, f, seed, "source", m.label)
                    cells.append(src)
                for b in reading:
                    key = f"{b}-{bb}"
                    cells.append(Cell(f"{key}|lf={_fs(f)}|seed={seed}", key, f"{BASELINES.get(b).label} · {bb}",
                                      b, "baseline", f, seed, source=src.id, backbone=bb,
                                      options=dict(spec.baseline_options.get(b, {}))))
                if spec.active:
                    cells += active_cells(spec.active, f, seed, src, bb)
        for b in spec.baselines:
            own = BASELINES.get(b).own_run
            if own is not None:
                sets = {k: v for k, v in own.items() if k != "label_fraction"}
                # the grid's own encoder, not another one ("auto" may choose none: the baseline names its method)
                if "pretrain" in sets and spec.base.pretrain not in ("", "auto"):
                    sets["pretrain"] = spec.base.pretrain
                m = MethodSpec(f"{b}-{bb}", "", "one-pass", bb, spec.base.energy, spec.base.energy_params, sets, b)
                each = own["label_fraction"] == "each"
                for f in spec.label_fractions if each else [float(own["label_fraction"])]:
                    cells.append(_run_cell_of(spec, m, f, seed, "baseline", f"{BASELINES.get(b).label} · {bb}"))
    if spec.dynamic_last:
        cells = [c for c in cells if c.mode != "dynamic"] + [c for c in cells if c.mode == "dynamic"]
    return cells


def _plan_methods(spec: GridSpec, fraction: float, seed: int, cells: list[Cell]) -> dict[str, Cell]:
    """Append the method cells of one (fraction, seed) to ``cells``; return backbone -> its first One
    Pass run (the runs that warm starts and baselines read)."""
    first_of_group: dict[str, str] = {}
    op_run: dict[str, Cell] = {}
    for m in spec.methods:
        if m.mode == "one-pass" and m.group in first_of_group:
            cells.append(Cell(f"{m.key}|lf={_fs(fraction)}|seed={seed}", m.key, m.label, "energy", "method", fraction,
                              seed, source=first_of_group[m.group], energy=m.energy, energy_params=m.energy_params,
                              backbone=m.backbone, mode=m.mode))
            continue
        cell = _run_cell_of(spec, m, fraction, seed, "method", m.label)
        if m.warm_start:
            src = op_run[m.backbone]
            best = RunDir(Path(src.cfg.out) / src.cfg.name).checkpoint("best")
            cell.cfg = dataclasses.replace(cell.cfg, pretrained=str(best), warmup_epochs=0)
            cell.source = src.id
        cells.append(cell)
        if m.mode == "one-pass":
            first_of_group[m.group] = cell.id
            op_run.setdefault(m.backbone, cell)
    return op_run


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


def _append_record(path: Path, rec: dict) -> None:
    """Append one record as it finishes (a kill loses one cell at most). A line a kill left half-written is
    closed first, so that it does not swallow this record (read_results skips the broken line)."""
    with open(path, "a+b") as fh:
        fh.seek(0, 2)
        if fh.tell():
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
        fh.write((json.dumps(rec) + "\n").encode())


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
            # A warm start's pretrained path follows the experiment folder (moved, or reached by another
            # path); the link to its source cell below is what matters.
            ignore = FREE_KEYS + (("pretrained",) if c.source is not None else ())
            diff = config_diff(r["config"], cfg_fingerprint(c.cfg), ignore=ignore)
            if diff:
                out[c.id] = diff
        if c.kind == "energy" and (r.get("config") or {}).get("energy_params", c.energy_params) != c.energy_params:
            out[c.id] = [f"energy_params: {r['config'].get('energy_params')!r} -> {c.energy_params!r}"]
        if c.options and r.get("options") is not None and r["options"] != c.options:  # an active cell's settings
            out[c.id] = [f"{k}: {r['options'].get(k)!r} -> {v!r}" for k, v in c.options.items()
                         if r["options"].get(k) != v]
        if c.id not in out and c.source in out:  # computed from (or warm-started by) a run that changed
            out[c.id] = [f"its source run {c.source} changed"]
    return out


def run_grid(spec: GridSpec, log=sys.stderr) -> list[dict]:
    """Run every cell of ``spec`` not yet in its ``results.jsonl``; return all records.

    One line per cell goes to ``log``; ``summary.md`` and ``results.csv`` are rewritten at the end.

    Under torchrun every rank trains each run cell together (DistributedDataParallel,
    :mod:`graphzoo.distributed`); the cells that only read a run (energies, baselines on its features)
    run on rank 0, which alone writes the experiment's files and log lines.
    """
    from .. import distributed

    if distributed.launched():
        distributed.init(spec.base.device)
    main = distributed.is_main()
    if not main:
        log = io.StringIO()  # rank 0 alone says how the cells went
    spec.folder.mkdir(parents=True, exist_ok=True)
    options = {b: spec.baseline_options.get(b, {}) for b in BASELINES if BASELINES.get(b).options}
    if main:
        _write_plan(spec, options)
    cells = plan_cells(spec)
    done = {r["cell"]: r for r in read_results(spec.results_path)}
    stale = stale_cells(cells, done)  # a cell whose config changed since it ran is not silently reused
    if stale:
        cid, diff = next(iter(stale.items()))
        raise ValueError(f"{len(stale)} finished cell(s) of {spec.results_path} were run with another config, "
                         f"e.g. {cid} ({'; '.join(diff[:4])}); use a new experiment name, or delete their lines "
                         "from results.jsonl and their run folders")
    runner = CellRunner(cells, spec.folder, spec.baseline_options)
    t_grid = time.perf_counter()
    for i, c in enumerate(cells, 1):
        tag = f"[{i}/{len(cells)}] {c.method} lf={_fs(c.label_fraction)} seed={c.seed}"
        if c.id in done:
            print(f"{tag}: done, skipped", file=log, flush=True)
            continue
        t0 = time.perf_counter()
        fields = runner.run_cell(c) if c.kind == "run" else distributed.on_main(runner.run_cell, c)
        rec = {"cell": c.id, "method": c.method, "label": c.label, "kind": c.kind, "role": c.role, "mode": c.mode,
               "backbone": c.backbone, "energy": c.energy if c.kind in ("run", "energy") else "",
               "label_fraction": c.label_fraction, "seed": c.seed, **fields,
               "wall_s": round(time.perf_counter() - t0, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _check_split(rec, done)
        if main:
            _append_record(spec.results_path, rec)
        done[c.id] = rec
        auc = f" auc {rec['auc']:.3f}" if rec.get("auc") is not None else ""
        acc = f"accuracy {rec['accuracy']:.3f}" if rec.get("accuracy") is not None else "accuracy -"
        print(f"{tag}: {acc}{auc} ({rec['wall_s']:.1f} s, grid {time.perf_counter() - t_grid:.0f} s)", file=log,
              flush=True)
    records = [done[c.id] for c in cells if c.id in done]
    if main:
        write_summary(spec.folder, records)
    distributed.barrier()
    return records


def _write_plan(spec: GridSpec, options: dict) -> None:
    """``experiment.yaml``: the grid as run (its source, fractions, seeds, methods, baselines, base config)."""
    (spec.folder / "experiment.yaml").write_text(yaml.safe_dump({
        "source": spec.source, "label_fractions": spec.label_fractions, "seeds": spec.seeds,
        "methods": [dataclasses.asdict(m) for m in spec.methods], "baselines": spec.baselines,
        "baseline_backbone": spec.baseline_backbone, **options,
        **({"active": dataclasses.asdict(spec.active)} if spec.active else {}), "base": spec.base.to_dict()},
        sort_keys=False))


def _check_split(rec: dict, done: dict) -> None:
    """Refuse a record whose split (same seed) or labelled mask (same seed and fraction) differs."""
    for r in done.values():
        if r["seed"] != rec["seed"]:
            continue
        if r["split_hash"] != rec["split_hash"]:
            raise RuntimeError(f"cell {rec['cell']} drew another train/val/test split than {r['cell']} (same seed): "
                               "the grid's cells would not be comparable")
        if r["label_fraction"] == rec["label_fraction"] and r["label_hash"] != rec["label_hash"]:
            raise RuntimeError(f"cell {rec['cell']} drew another labelled mask than {r['cell']}: the grid's cells "
                               "would not be comparable")


def write_summary(folder: Path, records: list[dict]) -> Path:
    """``summary.md`` and ``results.csv`` in the experiment folder (rewritten from all records)."""
    import csv

    shown = [r for r in records if r.get("role") not in ("source", "active")]
    lines = [f"# Experiment {folder.name}", ""]
    metrics = ["auc"] if shown and shown[0].get("multilabel") else ["accuracy", "balanced_accuracy", "auc"]
    for metric in metrics:
        header, rows, _ = results_table(shown, metric)
        lines += [f"## Test {metric.replace('_', ' ')} (mean ± std over seeds)", "", markdown_table(header, rows), ""]
    if any(r.get("kind") == "active" for r in records):
        header, rows = active_table(records)
        lines += ["## Simulated active labelling: test accuracy vs labels (mean ± std over seeds)", "",
                  "Graph only: the labels are revealed from the hidden truth round by round and the graph step is "
                  "re-run on the One Pass run's ψ, which is not retrained.", "", markdown_table(header, rows), ""]
    (folder / "summary.md").write_text("\n".join(lines))
    cols = ["cell", "method", "label", "role", "mode", "backbone", "energy", "test_prediction", "label_fraction",
            "seed", "accuracy", "balanced_accuracy", "auc", "n_labelled_train", "n_test", "wall_s"]
    with open(folder / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow(r)
    return folder / "summary.md"
