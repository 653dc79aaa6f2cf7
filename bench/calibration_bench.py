"""Calibration sets at small label budgets (issue 13): which labelled images to fit the temperature and the
conformal threshold on, scored on the test split of finished runs.

For each run folder (One Pass, single-label, with ``features.npy``), the graph step is redone on the run's
final features with the labels of the labelled training images (the run's reported prediction, to solver
tolerance), and the labelled training images are scored out of fold (5 folds, patient-grouped: each with its
own label hidden, :func:`graphzoo.train.crossval.out_of_fold_proba`). Then, per calibration option:

* ``val, ML``: the labelled validation images, maximum-likelihood T (the default before 2026-11-30);
* ``val, MAP``: the same images, T with the log-normal prior at 1 (``calibration.TEMPERATURE_PRIOR_SIGMA``);
* ``oof, ML``: the out-of-fold scores of the labelled training images alone;
* ``pooled, ML`` / ``pooled, MAP``: validation + out-of-fold, always;
* ``default``: what a run now does (:func:`graphzoo.train.evaluate.calibration_set`): pooled when the
  optimism check passes (out-of-fold confidences not larger than the unlabelled training images', one-sided
  Mann-Whitney p >= 0.05), else validation only; MAP T;
* ``default, Mondrian``: the default set with class-conditional conformal thresholds (one q̂ per true class,
  Vovk et al. 2005; coverage per class), for the coverage columns only.

Columns: T, test ECE after scaling (15 bins), empirical test coverage of the 90 % and 95 % LAC sets, mean set
size at 90 %. The test labels are only read to score; nothing is fitted on them.

    python bench/calibration_bench.py RUN [RUN ...] [--save rows.jsonl]
    python bench/calibration_bench.py --table rows.jsonl   # reprint from saved rows
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from graphzoo import calibration as cal  # noqa: E402
from graphzoo.config import load_config  # noqa: E402
from graphzoo.data import prepare_data  # noqa: E402
from graphzoo.graph_step import build_graph, graph_step  # noqa: E402
from graphzoo.rundir import RunDir  # noqa: E402
from graphzoo.train import crossval  # noqa: E402
from graphzoo.train import evaluate as ev  # noqa: E402

OPTIONS = ("val, ML", "val, MAP", "oof, ML", "pooled, ML", "pooled, MAP", "default", "default, Mondrian")


def mondrian_sets(P_cal, y_cal, P, coverage):
    """Class-conditional LAC sets: class k is in the set when 1 − p_k ≤ q̂_k, q̂_k from the class-k scores."""
    q = np.array([cal.conformal_threshold(P_cal[y_cal == k], y_cal[y_cal == k], coverage) if (y_cal == k).any()
                  else 1.0 for k in range(P.shape[1])])
    return (1.0 - P) <= q[None, :] + 1e-9


def score(P_cal, y_cal, P_test, y_test, prior, mondrian=False) -> dict:
    """T, test ECE after scaling, coverage of the 90 % / 95 % sets, mean set size at 90 %."""
    T = cal.fit_temperature(P_cal, y_cal, prior_sigma=prior)
    out = {"n_cal": int(len(y_cal)), "T": T,
           "ece": cal.expected_calibration_error(cal.apply_temperature(P_test, T), y_test)}
    rows = np.arange(len(y_test))
    for c in (0.9, 0.95):
        S = (mondrian_sets(P_cal, y_cal, P_test, c) if mondrian
             else cal.prediction_sets(P_test, cal.conformal_threshold(P_cal, y_cal, c)))
        out[f"cov{int(c * 100)}"] = float(S[rows, y_test].mean())
        if c == 0.9:
            out["size90"] = float(S.sum(1).mean())
    return out


def bench_run(path: Path) -> list[dict]:
    rd = RunDir(path)
    cfg = load_config(rd.config)
    d = prepare_data(**cfg.data_options())
    Z = np.load(rd.features)
    t = SimpleNamespace(data=d, cfg=cfg, idx_lab=d.idx("train", True), idx_unl=d.idx("train", False),
                        idx_val=d.idx("val", True), idx_test=d.idx("test"))
    W = build_graph(Z, n_neighbors=cfg.n_neighbors, metric=cfg.graph_metric)
    P = graph_step(None, np.where(d.graph_labels, d.targets, -1), W=W, energy=cfg.energy,
                   energy_params=cfg.energy_params, n_classes=d.n_outputs).proba
    lab, val = t.idx_lab, t.idx_val
    test = t.idx_test[d.targets[t.idx_test] >= 0]
    groups = None if d.patient_ids is None else np.asarray(d.patient_ids)[lab]
    oof = crossval.out_of_fold_proba(W, lab, d.targets[lab], groups, energy=cfg.energy,
                                     energy_params=cfg.energy_params, n_classes=d.n_outputs, k=ev.OOF_FOLDS,
                                     seed=cfg.seed, others=t.idx_unl)
    real = crossval.out_of_fold_proba
    crossval.out_of_fold_proba = lambda *a, **k: oof  # the default's own code path, without diffusing again
    try:
        P_def, y_def, info = ev.calibration_set(t, P, "transductive", W)
    finally:
        crossval.out_of_fold_proba = real
    sets = {"val": (P[val], d.targets[val]), "oof": (oof.proba, d.targets[lab]),
            "pooled": (np.vstack([P[val], oof.proba]), np.concatenate([d.targets[val], d.targets[lab]])),
            "default": (P_def, y_def)}
    prior = cal.TEMPERATURE_PRIOR_SIGMA
    base = {"run": rd.name, "label_fraction": cfg.label_fraction, "seed": cfg.seed,
            "accuracy": float((P[test].argmax(1) == d.targets[test]).mean()),
            "accuracy_oof": info["check"]["accuracy_out_of_fold"] if info["check"] else None,
            "p_optimism": info["check"]["p_value"] if info["check"] else None,
            "pooled_by_default": info["n_out_of_fold"] > 0}
    rows = []
    for name in OPTIONS:
        which, how = (name.split(", ") + [""])[:2]
        P_c, y_c = sets[which]
        rows.append({**base, "option": name, **score(P_c, y_c, P[test], d.targets[test],
                                                      prior if how in ("MAP", "") or which == "default" else None,
                                                      mondrian=how == "Mondrian")})
    return rows


def print_rows(rows: list[dict]) -> None:
    print(f"{'labels':>6} {'seed':>4} {'option':<18} {'n_cal':>5} {'T':>5} {'ECE':>6} {'cov90':>6} {'cov95':>6} "
          f"{'size90':>6}  p_optimism / acc_oof")
    for r in rows:
        print(f"{r['label_fraction']:>6g} {r['seed']:>4} {r['option']:<18} {r['n_cal']:>5} {r['T']:>5.2f} "
              f"{r['ece']:>6.3f} {r['cov90']:>6.3f} {r['cov95']:>6.3f} {r['size90']:>6.2f}  "
              f"{r['p_optimism'] if r['p_optimism'] is None else round(r['p_optimism'], 4)} / "
              f"{r['accuracy_oof'] if r['accuracy_oof'] is None else round(r['accuracy_oof'], 3)}")
    print("\nmean over seeds (|cov - target| averaged per seed in brackets):")
    print(f"{'labels':>6} {'option':<18} {'seeds':>5} {'ECE':>6} {'max ECE':>7} {'cov90':>6} {'[|d|]':>6} "
          f"{'cov95':>6} {'[|d|]':>6}")
    for lf in sorted({r["label_fraction"] for r in rows}):
        for name in OPTIONS:
            g = [r for r in rows if r["label_fraction"] == lf and r["option"] == name]
            if not g:
                continue
            m = lambda k: float(np.mean([r[k] for r in g]))  # noqa: E731
            dev = lambda k, c: float(np.mean([abs(r[k] - c) for r in g]))  # noqa: E731
            print(f"{lf:>6g} {name:<18} {len(g):>5} {m('ece'):>6.3f} {max(r['ece'] for r in g):>7.3f} "
                  f"{m('cov90'):>6.3f} {dev('cov90', 0.9):>6.3f} {m('cov95'):>6.3f} {dev('cov95', 0.95):>6.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*", type=Path)
    ap.add_argument("--save", type=Path, help="append each run's rows to this JSON-lines file")
    ap.add_argument("--table", type=Path, nargs="+", help="reprint the table from saved rows")
    args = ap.parse_args()
    rows = []
    for f in args.table or []:
        rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    for run in args.runs:
        new = bench_run(run)
        rows += new
        if args.save:
            with open(args.save, "a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in new)
        print(f"{run}: done", file=sys.stderr, flush=True)
    print_rows(sorted(rows, key=lambda r: (r["label_fraction"], r["seed"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
