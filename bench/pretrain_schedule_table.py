"""The table of ``bench/pretrain_schedule.sh``: test accuracy per SimCLR schedule, mean ± sample std over seeds.

    python bench/pretrain_schedule_table.py OUTDIR

Reads ``OUTDIR/simclr{E}-s{S}`` (One Pass after E SimCLR epochs) and ``OUTDIR/dp12-{E}-s{S}`` (12 Dynamic Pass
epochs from it). "net" is the trained network's own prediction (for One Pass: the supervised-only baseline
fine-tuned from the encoder), "graph" the energy's prediction on the kNN graph of the final features. Runs that
have not finished are listed as missing, so a cut-short probe still prints what it has.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path


def test_accuracy(run: Path) -> tuple[float, float] | None:
    """(net, graph) test accuracy of a finished run, or None."""
    path = run / "metrics.json"
    if not path.exists():
        return None
    m = json.loads(path.read_text())
    return m["test_inductive"]["accuracy"], m["test_transductive"]["accuracy"]


def pretraining(run: Path) -> str:
    """Pretraining time, final SimCLR loss and feature spread of the encoder the One Pass run used."""
    path = run / "metrics.json"
    if not path.exists():
        return "–"
    pre = json.loads(path.read_text()).get("pretrain") or {}
    meta = Path(pre.get("folder", "")) / "meta.json"
    loss = "?"
    if meta.exists():
        history = json.loads(meta.read_text()).get("history")
        loss = f"{history[-1]['loss']:.2f}" if history else "?"
    return f"{pre.get('time_s', float('nan')):.0f} s, loss {loss}, rank {pre.get('effective_rank', float('nan')):.1f}"


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f} ({', '.join(f'{v:.4f}' for v in values)})"


def main(outdir: str) -> None:
    out = Path(outdir)
    names = [p.name for p in out.iterdir() if p.is_dir()]
    schedules = sorted({int(m.group(1)) for n in names if (m := re.fullmatch(r"simclr(\d+)-s\d+", n))})
    print(f"test accuracy, {out}: mean ± sample std (per seed)\n")
    print("| SimCLR epochs | stage | net | graph | pretraining per seed |")
    print("|---|---|---|---|---|")
    for E in schedules:
        seeds = sorted(int(n.rsplit("-s", 1)[1]) for n in names if re.fullmatch(rf"simclr{E}-s\d+", n))
        for stage, prefix in (("One Pass", f"simclr{E}"), ("+ Dynamic Pass 12", f"dp12-{E}")):
            got = {s: test_accuracy(out / f"{prefix}-s{s}") for s in seeds}
            done = [v for v in got.values() if v]
            missing = [str(s) for s, v in got.items() if not v]
            pre = "; ".join(pretraining(out / f"simclr{E}-s{s}") for s in seeds) if stage == "One Pass" else ""
            note = f" (seed {', '.join(missing)} not finished)" if missing else ""
            print(f"| {E} | {stage}{note} | {cell([v[0] for v in done])} | {cell([v[1] for v in done])} | {pre} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/schedule")
