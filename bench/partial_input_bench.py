"""Partially labelled input at malaria scale (issue 13): a folder of all 27,558 cells plus a labels CSV
with 1 % of them labelled, against the simulated 1 % budget on the fully labelled npz.

For each seed:

1. **simulated**: ``graphzoo run`` on the npz with ``--label-fraction F`` (the research protocol: a
   patient-grouped 70/10/20 split of every cell, then F of the training and validation cells labelled).
2. the cells are written once as a folder of PNGs (``cells/<patient>/<file>.png``, lossless: the same
   pixels), and a CSV labels exactly the images the simulated run labelled (``path,label,patient_id``;
   every other cell has a row with an empty label) — what a hospital team with those labels would have.
3. **folder + CSV**: ``graphzoo run --data cells --labels CSV`` — evaluation is now drawn from those few
   labels (patient-grouped by the CSV's column), so fewer of them train;
4. **folder + CSV, --no-holdout**: every label trains or validates (production), quality by cross-validation.

All three are scored on the same cells against the hidden truth: the simulated run's test split (patients
whose cells none of the runs ever saw labelled). Each partial run must predict every one of the 27,558
cells. Prints one row per seed and run, then mean ± std per run.

    python bench/partial_input_bench.py --work /tmp/partial --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MALARIA = ROOT.parent / "shared" / "data" / "malaria" / "malaria_50_gray.npz"


def write_folder(images: np.ndarray, rel: dict[str, str], out: Path) -> None:
    """``images`` (N, H, W) as ``out/<rel[name]>`` PNGs, in ``rel``'s order (skipped when a previous call finished)."""
    from PIL import Image

    done = out / ".complete"
    if done.exists():
        return
    t0 = time.perf_counter()
    for img, path in zip(images, rel.values()):
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(out / path)
    done.write_text("ok\n")
    print(f"wrote {len(rel)} PNGs to {out} in {time.perf_counter() - t0:.0f} s", flush=True)


def graphzoo(command: str, args: list[str], log: Path) -> str:
    """One ``graphzoo COMMAND`` in a fresh process from ``configs/``; returns its stdout (stderr to ``log``)."""
    with open(log, "w") as fh:
        res = subprocess.run([sys.executable, "-m", "graphzoo", command, *args], stdout=subprocess.PIPE,
                             stderr=fh, text=True, cwd=ROOT / "configs")
    if res.returncode:
        raise SystemExit(f"graphzoo {command} failed (exit {res.returncode}); see {log}")
    return res.stdout


def graphzoo_run(args: list[str], log: Path) -> dict:
    """One ``graphzoo run``; its last stdout line is the metrics JSON (+ wall seconds of the whole process)."""
    t0 = time.perf_counter()
    out = json.loads(graphzoo("run", args, log).strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t0
    return out


def read_predictions(run: Path) -> list[dict]:
    with open(run / "predictions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def write_labels_csv(sim_rows: list[dict], rel: dict[str, str], pid: dict[str, str], path: Path) -> int:
    """Label exactly the images the simulated run labelled; every other cell gets a row without a label."""
    n = 0
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "patient_id"])
        for r in sim_rows:
            lab = r["true"] if r["labelled"] == "1" else ""
            n += bool(lab)
            w.writerow([rel[r["filename"]], lab, pid[r["filename"]]])
    return n


def score(rows: list[dict], cells: dict[str, str], key: str) -> tuple[float, float, int]:
    """Accuracy and balanced accuracy of ``rows``' predictions on ``cells`` {file key: true class}."""
    pred = {r[key]: r["pred"] for r in rows}
    missing = [c for c in cells if not pred.get(c)]
    if missing:
        raise SystemExit(f"{len(missing)} scored cells have no prediction, e.g. {missing[:3]}")
    truth = np.array(list(cells.values()))
    guess = np.array([pred[c] for c in cells])
    acc = float((truth == guess).mean())
    bal = float(np.mean([(guess[truth == c] == c).mean() for c in np.unique(truth)]))
    return acc, bal, len(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, default=MALARIA)
    ap.add_argument("--work", type=Path, required=True, help="folder for the PNGs, CSVs and runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=["tta=false"], help="config overrides for every run")
    a = ap.parse_args()
    if not a.npz.exists():
        raise SystemExit(f"{a.npz} not found: this benchmark needs the shared malaria npz")
    a.work.mkdir(parents=True, exist_ok=True)
    z = np.load(a.npz)
    pid = {str(f): str(p) for f, p in zip(z["filenames"], z["patient_ids"])}
    rel = {f: f"{p}/{f}" for f, p in pid.items()}  # original file name -> path in the folder
    folder = a.work / "cells"
    write_folder(z["images"], rel, folder)
    common = ["--config", "malaria.yaml", "--out", str(a.work / "runs"), "--threads", str(a.threads),
              "--no-progress", "--overwrite", "--set", *a.set]
    table = []
    for seed in a.seeds:
        sim_name = f"sim-{a.fraction}-s{seed}"
        sim = graphzoo_run([*common, "--data", str(a.npz), "--name", sim_name, "--seed", str(seed),
                            "--label-fraction", str(a.fraction)], a.work / f"{sim_name}.log")
        sim_rows = read_predictions(a.work / "runs" / sim_name)
        test = {r["filename"]: r["true"] for r in sim_rows if r["split"] == "test"}
        labels_csv = a.work / f"labels-{a.fraction}-s{seed}.csv"
        n_labels = write_labels_csv(sim_rows, rel, pid, labels_csv)
        acc, bal, n = score(sim_rows, test, "filename")
        table.append((seed, "simulated budget (npz)", n_labels, sim["n_labelled_train"], acc, bal, n,
                      len(sim_rows), sim["wall_s"]))
        for extra, what in (([], "folder + CSV"), (["--no-holdout"], "folder + CSV, --no-holdout")):
            name = f"csv{'-noholdout' if extra else ''}-{a.fraction}-s{seed}"
            res = graphzoo_run([*common, "--data", str(folder), "--labels", str(labels_csv), "--name", name,
                                "--seed", str(seed), *extra], a.work / f"{name}.log")
            rows = read_predictions(a.work / "runs" / name)
            by_rel = {rel[f]: t for f, t in test.items()}
            acc, bal, n = score(rows, by_rel, "filename")
            table.append((seed, what, n_labels, res["n_labelled_train"], acc, bal, n, len(rows), res["wall_s"]))
        print_rows(table[-3:], header=seed == a.seeds[0])
    print("\nmean ± std over seeds", a.seeds)
    for what in dict.fromkeys(r[1] for r in table):
        acc = np.array([r[4] for r in table if r[1] == what])
        bal = np.array([r[5] for r in table if r[1] == what])
        print(f"| {what} | {acc.mean():.4f} ± {acc.std(ddof=1) if len(acc) > 1 else 0:.4f} | "
              f"{bal.mean():.4f} ± {bal.std(ddof=1) if len(bal) > 1 else 0:.4f} |")


def print_rows(rows, header: bool) -> None:
    if header:
        print("| seed | input | labels in the CSV / budget | labels training the graph | accuracy on the simulated "
              "test cells | balanced accuracy | cells scored | cells predicted | wall s |")
        print("|---|---|---|---|---|---|---|---|---|")
    for seed, what, n_labels, n_train, acc, bal, n, n_pred, wall in rows:
        print(f"| {seed} | {what} | {n_labels} | {n_train} | {acc:.4f} | {bal:.4f} | {n} | {n_pred} | {wall:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
