"""Simulated active labelling in the experiment grid: one cell per (label fraction, seed, strategy).

An experiment file may hold an ``active:`` block::

    active: {strategies: [random, uncertainty, model_change], start_per_class: 5, rounds: 4, batch: 20}

For each (label fraction, seed) of the grid, one cell per strategy reads the One Pass run of
``baseline_backbone`` (its features ψ(x), kNN graph, energy and split, as the graph baselines do)
and runs :func:`graphzoo.acquisition.simulate`: ``start_per_class`` random training images of
each class (the same for every strategy of a seed), then ``rounds`` rounds in which the strategy
picks ``batch`` training images whose labels are revealed from the hidden truth. The record's
``curve`` holds, per round, the number of labels and the graph step's test accuracy and ROC-AUC.

Graph only: ψ is the source run's, trained once on that fraction's labelled images and **not
retrained** as labels arrive, so the curves compare the acquisition strategies on a fixed graph;
a real active-learning loop would also retrain the network (``graphzoo run --init-from``).

The cells have role "active": they are not rows of the seed's tables (their label counts are not
the grid's fractions); :func:`active_table` and the report's own section show them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..acquisition import ACQUISITION, simulate, start_labels
from .aggregate import fraction_label
from .cells import CELL_KINDS, Cell

__all__ = ["ActiveSpec", "parse_active", "active_cells", "active_curves", "active_table", "active_sentence",
           "random_labels_to_reach"]

_KEYS = {"strategies", "start_per_class", "rounds", "batch"}
DEFAULT_STRATEGIES = ["random", "uncertainty", "model_change"]
GRAPH_ONLY = "graph step only: ψ (the source run's features) is not retrained as labels are revealed"


@dataclass
class ActiveSpec:
    """The ``active:`` block of an experiment file (see the module docstring)."""

    strategies: list = field(default_factory=lambda: list(DEFAULT_STRATEGIES))
    start_per_class: int = 5
    rounds: int = 4
    batch: int = 20


def parse_active(where: str, block) -> ActiveSpec | None:
    """The checked ``active:`` block (``where`` names the file in errors); None when absent."""
    if block is None:
        return None
    if not isinstance(block, dict):
        raise ValueError(f"{where}: active must be a mapping, e.g. active: {{strategies: [random, uncertainty], "
                         "start_per_class: 5, rounds: 4, batch: 20}")
    bad = sorted(set(block) - _KEYS)
    if bad:
        raise ValueError(f"{where}: unknown key(s) {bad} in active; it takes {', '.join(sorted(_KEYS))}")
    spec = ActiveSpec(**block)
    spec.strategies = [str(s) for s in (spec.strategies if isinstance(spec.strategies, list) else [spec.strategies])]
    if not spec.strategies or len(set(spec.strategies)) != len(spec.strategies):
        raise ValueError(f"{where}: active.strategies must be a non-empty list without repeats")
    for s in spec.strategies:
        try:
            ACQUISITION.get(s)
        except ValueError as e:
            raise ValueError(f"{where}: active.strategies: {e}") from None
    for key, low in (("start_per_class", 1), ("rounds", 1), ("batch", 1)):
        v = getattr(spec, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{where}: active.{key} must be an integer ≥ {low}, got {v!r}")
    return spec


def active_cells(active: ActiveSpec, fraction: float, seed: int, src: Cell, backbone: str) -> list[Cell]:
    """One cell per strategy at one (fraction, seed), reading the One Pass run cell ``src``."""
    out = []
    for s in active.strategies:
        key = f"active-{s}-{backbone}"
        options = {"strategy": s, "start_per_class": active.start_per_class, "rounds": active.rounds,
                   "batch": active.batch}
        label = f"Active labelling · {s} · {backbone} (graph only)"
        out.append(Cell(f"{key}|lf={fraction:g}|seed={seed}", key, label, "active", "active", fraction, seed,
                        source=src.id, backbone=backbone, options=options))
    return out


@CELL_KINDS.register("active")
def _active_cell(runner, cell: Cell) -> tuple[dict, object]:
    """Run :func:`graphzoo.acquisition.simulate` on the source run's ψ, graph, energy and split."""
    src = runner.cells[cell.source]
    data = runner.data(src.id)
    if data.multilabel:
        raise ValueError("the experiment's active: block needs a single-label task (the strategies rank class "
                         "margins); remove it for a multi-label grid")
    o = cell.options
    y = np.asarray(data.targets)
    cand = (data.split == "train") & data.has_truth  # hidden truth known: the simulated oracle can answer
    test = (data.split == "test") & data.has_truth
    lab0 = start_labels(y, cand, o["start_per_class"], np.random.default_rng(cell.seed))
    curve = simulate(o["strategy"], y, lab0, cand, test, W=runner.graph(src.id), Z=runner.features(src.id),
                     rounds=o["rounds"], batch=o["batch"], energy=src.cfg.energy, energy_params=src.cfg.energy_params,
                     seed=cell.seed, cache=runner.acquisition_cache(src.id))
    last = curve[-1]
    rec = {"run_dir": runner.relative(runner.rundir(src)), "strategy": o["strategy"], "options": dict(o),
           "curve": [r._asdict() for r in curve], "accuracy": last.accuracy, "auc": last.auc,
           "test_prediction": "transductive", "graph_only": True, "note": GRAPH_ONLY,
           "graph_energy": src.cfg.energy, "n_labelled_train": last.n_labels}
    return rec, data


def active_curves(records: list[dict], metric: str = "accuracy") -> dict:
    """Mean ± std over seeds of the active cells' curves.

    Returns {label_fraction: {strategy: {"n_labels": (R+1,), "mean": (R+1,), "std": (R+1,), "n": seeds}}},
    fractions ascending, strategies in first-seen order; std is the sample std (0 for one seed).
    """
    groups: dict = {}
    for r in records:
        if r.get("kind") == "active" and r.get("curve"):
            groups.setdefault(float(r["label_fraction"]), {}).setdefault(r["strategy"], []).append(r["curve"])
    out: dict = {}
    for fr in sorted(groups):
        out[fr] = {}
        for s, curves in groups[fr].items():
            R = min(len(c) for c in curves)  # a shorter curve (another setting) would not align
            vals = np.array([[np.nan if c[i][metric] is None else c[i][metric] for i in range(R)] for c in curves])
            out[fr][s] = {"n_labels": np.array([curves[0][i]["n_labels"] for i in range(R)]),
                          "mean": np.nanmean(vals, 0),
                          "std": np.nanstd(vals, 0, ddof=1) if len(curves) > 1 else np.zeros(R), "n": len(curves)}
    return out


def random_labels_to_reach(target: float, n_labels: np.ndarray, mean: np.ndarray) -> float | None:
    """Labels the random curve needs to reach ``target``: linear interpolation between the two rounds
    around its first crossing; None when the curve never reaches it."""
    hit = np.flatnonzero(mean >= target)
    if not len(hit):
        return None
    i = int(hit[0])
    if i == 0:
        return float(n_labels[0])
    x0, x1, y0, y1 = n_labels[i - 1], n_labels[i], mean[i - 1], mean[i]
    return float(x0 + (x1 - x0) * (target - y0) / (y1 - y0))


def active_sentence(fraction: float, curves: dict) -> str:
    """What one fraction's curves mean: the best strategy at the last round, and (when a random curve
    exists) how many random labels reach its accuracy. A strategy only tied with random did not beat it."""
    rnd = curves.get("random")
    others = [s for s in curves if s != "random"] or list(curves)
    best = max(others, key=lambda s: curves[s]["mean"][-1])
    b = curves[best]
    n, acc, sd = int(b["n_labels"][-1]), b["mean"][-1], b["std"][-1]
    on = f"On the ψ of the {fraction_label(fraction)} One Pass runs (not retrained)"
    if rnd is not None and best != "random" and acc <= rnd["mean"][-1]:
        return (f"{on}, no acquisition strategy beats random labelling after the last round: random reaches "
                f"{rnd['mean'][-1]:.3f} ± {rnd['std'][-1]:.3f} with {int(rnd['n_labels'][-1])} labels, the best "
                f"other strategy, {best}, {acc:.3f} ± {sd:.3f}.")
    text = f"{on}, {best} reaches the best test accuracy after the last round, {acc:.3f} ± {sd:.3f} with {n} labels"
    if best == "random":
        return text + "; it is the only strategy run."
    if rnd is None:
        return text + "; no random curve was run to compare with."
    need = random_labels_to_reach(acc, rnd["n_labels"], rnd["mean"])
    text += f"; random labelling reaches {rnd['mean'][-1]:.3f} with as many"
    if need is None:
        text += f", and its curve stays below {acc:.3f} up to {n} labels, so it would need more than {n}"
    else:
        text += f", and about {need:.0f} random labels reach {acc:.3f} (interpolated on the random curve)"
    diff, spread = acc - rnd["mean"][-1], sd + rnd["std"][-1]
    if min(b["n"], rnd["n"]) < 2:
        return text + f". The margin, {diff:+.3f}, is from one seed: no spread to compare with."
    where = "outside" if diff > spread else "within"
    return text + (f". The margin over random, {diff:+.3f}, is {where} the seed spread (the two standard "
                   f"deviations add to {spread:.3f}).")


def active_table(records: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Rows (label fraction, labels) × columns strategies, cells test accuracy ``mean ± std``."""
    curves = active_curves(records)
    strategies = list(dict.fromkeys(s for c in curves.values() for s in c))
    rows = []
    for fr, c in curves.items():
        first = next(iter(c.values()))
        for i, n in enumerate(first["n_labels"]):
            cells = [f"{c[s]['mean'][i]:.3f} ± {c[s]['std'][i]:.3f}" if s in c and i < len(c[s]["mean"]) else "—"
                     for s in strategies]
            rows.append([fraction_label(fr), str(int(n))] + cells)
    return ["ψ of the One Pass run at", "labels"] + strategies, rows
