"""Active labelling with retraining, the user's own loop (issue 13), on all 27,558 malaria cells.

Where ``active_bench.py`` ranks images on one fixed embedding, this runs the loop a user runs, through the
command line, with the labels revealed from the hidden truth:

1. **start**: ``graphzoo run --set labels_per_class=S`` (S random labels per class, the patient-grouped split
   of the npz; validation labels as the config says);
2. each round: ``graphzoo suggest --run PREV -n B --strategy NAME`` (unlabelled *training* images only), a labels
   CSV of those B images with their true classes (``#index,label``), then ``graphzoo run --init-from PREV
   --labels CSV``: ψ is fine-tuned from PREV's network on every label so far, the graph rebuilt, the same split
   and test images kept;
3. **reference**: one fresh run with ``labels_per_class=R`` random labels (the issue: 240 suggested labels against
   480 random ones), and the ``random`` strategy through the same loop (so that the longer training of a
   fine-tuned chain is not mistaken for the choice of images);
4. **fresh on the same labels**: per strategy, one run from scratch on the start labels plus every label its
   rounds revealed (``--labels`` with the rounds' CSVs joined): is the chain of fine-tunings, or the choice of
   images, what separates the loop from the fresh reference? ``--fresh-only`` runs just this part from the
   CSVs a previous call left in ``--work``.

Accuracy is each run's own test accuracy (the graph step's transductive prediction, ``metrics.json``), on the
same test cells in every run of a seed. Prints one row per run as it finishes, then the mean ± std per
(strategy, labels) over seeds; ``--save`` appends every row as a JSON line.

    python bench/active_loop_bench.py --work /tmp/active_loop --seeds 0 1 --strategies uncertainty_diverse random \
        --threads 1 --set tta=false
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np

from partial_input_bench import MALARIA, graphzoo, read_predictions
from partial_input_bench import graphzoo_run as run  # bench/ is on sys.path when run as a script


def reveal(run_dir: Path, n: int, strategy: str, seed: int, csv_path: Path, log: Path) -> int:
    """Ask ``graphzoo suggest`` for ``n`` images of ``run_dir`` and write their true classes to ``csv_path``."""
    graphzoo("suggest", ["--run", str(run_dir), "-n", str(n), "--strategy", strategy, "--seed", str(seed),
                         "--no-sheet"], log)
    with open(run_dir / "suggestions.csv", newline="") as fh:
        picked = [int(r["index"]) for r in csv.DictReader(fh)]
    rows = read_predictions(run_dir)
    if len(picked) != n or any(rows[i]["labelled"] == "1" or rows[i]["split"] != "train" for i in picked):
        raise SystemExit(f"{run_dir}: suggest returned labelled or non-training images (or not {n}); see {log}")
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for i in picked:
            w.writerow([f"#{i}", rows[i]["true"]])  # the hidden truth, revealed
    return len(picked)


def fresh_on_same_labels(a, seed: int, fresh: list[str], record) -> None:
    """Part 4: per strategy, a run from scratch on the start labels + every label its rounds revealed."""
    for strategy in a.strategies:
        csvs = [a.work / f"{strategy}-s{seed}-r{k}.csv" for k in range(1, a.rounds + 1)]
        if not all(c.is_file() for c in csvs):
            raise SystemExit(f"missing round CSVs of {strategy}, seed {seed} in {a.work}: run the loop first")
        joined = a.work / f"{strategy}-s{seed}-all.csv"
        rows = [line for c in csvs for line in c.read_text().splitlines()[1:]]
        joined.write_text("path,label\n" + "\n".join(rows) + "\n")
        name = f"fresh-{strategy}-s{seed}"
        mf = run([*fresh, "--name", name, "--labels", str(joined), "--set", f"labels_per_class={a.start}", *a.set],
                 a.work / f"{name}.log")
        record(row(seed, f"fresh run on {strategy}'s labels", mf["n_labelled_train"], mf, name))


def _sd(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else 0.0


def row(seed: int, strategy: str, labels: int, metrics: dict, name: str) -> dict:
    return {"seed": seed, "strategy": strategy, "labels": labels, "n_labelled_train": metrics["n_labelled_train"],
            "accuracy": metrics["accuracy"], "inductive_accuracy": metrics.get("inductive_accuracy"),
            "n_test": metrics["n_test"], "wall_s": round(metrics["wall_s"], 1), "run": name}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", type=Path, default=MALARIA)
    ap.add_argument("--work", type=Path, help="folder for the runs, CSVs and logs (required unless --table)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--strategies", nargs="+", default=["uncertainty_diverse", "random"])
    ap.add_argument("--start", type=int, default=20, help="random labels per class to start from")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=40, help="labels revealed per round")
    ap.add_argument("--reference", type=int, default=240, help="random labels per class of the fresh reference run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=["tta=false"], help="config overrides for the start and reference")
    ap.add_argument("--save", type=Path, help="append every row as a JSON line to this file")
    ap.add_argument("--fresh-only", action="store_true",
                    help="only part 4, from the rounds' CSVs already in --work (a previous call's)")
    ap.add_argument("--table", nargs="+", type=Path, metavar="ROWS",
                    help="only print the mean table of rows saved by --save (e.g. one file per seed run in parallel)")
    a = ap.parse_args()
    if a.table:
        rows = [json.loads(line) for path in a.table for line in path.read_text().splitlines() if line.strip()]
        rows.sort(key=lambda r: r["seed"])  # stable: each seed's rows keep their order
        print(mean_table(rows))
        return
    if not a.npz.exists():
        raise SystemExit(f"{a.npz} not found: this benchmark needs the shared malaria npz")
    if a.work is None:
        raise SystemExit("--work FOLDER is required (where the runs, CSVs and logs go)")
    a.work.mkdir(parents=True, exist_ok=True)
    runs = a.work / "runs"
    common = ["--out", str(runs), "--threads", str(a.threads), "--no-progress"]
    table: list[dict] = []

    def record(r: dict) -> None:
        table.append(r)
        print(f"| {r['seed']} | {r['strategy']} | {r['labels']} | {r['n_labelled_train']} | {r['accuracy']:.4f} | "
              f"{r['inductive_accuracy']:.4f} | {r['wall_s']:.0f} | {r['run']} |", flush=True)
        if a.save:
            with open(a.save, "a") as fh:
                fh.write(json.dumps(r) + "\n")

    print("| seed | strategy | labels | labels training | graph accuracy | net accuracy | wall s | run |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for seed in a.seeds:
        fresh = ["--config", "malaria.yaml", "--data", str(a.npz), "--seed", str(seed), "--overwrite", *common]
        if a.fresh_only:
            fresh_on_same_labels(a, seed, fresh, record)
            continue
        start = f"start-s{seed}"
        m = run([*fresh, "--name", start, "--set", f"labels_per_class={a.start}", *a.set], a.work / f"{start}.log")
        for strategy in a.strategies:
            record(row(seed, strategy, m["n_labelled_train"], m, start))
        for strategy in a.strategies:
            prev, labels = start, m["n_labelled_train"]
            for k in range(1, a.rounds + 1):
                name = f"{strategy}-s{seed}-r{k}"
                csv_path = a.work / f"{name}.csv"
                labels += reveal(runs / prev, a.batch, strategy, seed, csv_path, a.work / f"{name}-suggest.log")
                if (runs / name).exists():  # a rerun of the bench: --init-from never overwrites
                    shutil.rmtree(runs / name)
                mk = run(["--init-from", str(runs / prev), "--labels", str(csv_path), "--name", name, *common],
                         a.work / f"{name}.log")
                record(row(seed, strategy, labels, mk, name))
                prev = name
        ref = f"random{2 * a.reference}-s{seed}"
        mr = run([*fresh, "--name", ref, "--set", f"labels_per_class={a.reference}", *a.set], a.work / f"{ref}.log")
        record(row(seed, f"fresh run, {mr['n_labelled_train']} random labels", mr["n_labelled_train"], mr, ref))
        fresh_on_same_labels(a, seed, fresh, record)

    print(mean_table(table))


def mean_table(table: list[dict]) -> str:
    """Mean ± std over seeds per (strategy, labels), in the order the rows came; per-seed values in brackets."""
    seeds = sorted({r["seed"] for r in table})
    lines = [f"\nmean ± std over seeds {seeds} (graph accuracy on each seed's test cells)",
             "| strategy | labels | graph accuracy | net accuracy | seeds |", "|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in table:
        groups.setdefault((r["strategy"], r["labels"]), []).append(r)
    for (strategy, labels), rows in groups.items():
        acc = np.array([r["accuracy"] for r in rows])
        net = np.array([r["inductive_accuracy"] for r in rows])
        each = ", ".join(f"{x:.4f}" for x in acc)
        lines.append(f"| {strategy} | {labels} | {acc.mean():.4f} ± {_sd(acc):.4f} ({each}) | "
                     f"{net.mean():.4f} ± {_sd(net):.4f} | {len(acc)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
