"""``graphzoo compare``: the seed paper's numbers beside ours, protocol by protocol, from committed files.

Three kinds of file, all committed, none typed into the output by hand:

* the seed's numbers, transcribed once from its tables (``docs/comparison/seed_results.yaml``:
  ``entries`` with ``id``, ``table``, ``method``, ``labels``, ``metric``, ``value`` [``std``], and
  the seed's ``protocol`` per data set);
* the grids' results files: the ``results.csv`` (or ``results.jsonl``) that ``graphzoo experiment``
  writes, one line per cell (method, label fraction, seed, accuracy, AUC, …), copied to
  ``docs/results/<grid>.csv``;
* the comparison spec (``docs/comparison/paper_comparison.yaml``)::

      seed: seed_results.yaml                  # relative to the spec
      results:                                 # name -> a grid's results file (relative to the spec)
        chestxray14: {file: ../results/chestxray14.csv, command: "graphzoo experiment --config ..."}
      protocol:                                # ours, per protocol key: the same keys as the seed's
        chestxray14: {data: ..., resolution: 64 x 64, colour: gray, split: patient-grouped 70/10/20}
      rows:
        - seed: cxr.ours.a2.20                 # an entry id of the seed file
          protocol: chestxray14                # our protocol key (default: the seed's, from the id)
          ours: {results: chestxray14, method: op-small_cnn-label_spreading, fraction: 0.2, metric: auc}
          differences: [backbone small_cnn (width 8) vs the seed's "A2"]
        - seed: cbis.m1.cnn.20
          ours: {none: "no CBIS-DDSM images obtainable here"}

Each row of the output: the seed's table or figure, its method and labels, its number; our method
and labels, our number (mean ± sample std over the seeds of the results file, with how many
seeds, labelled training images and test images); every difference in protocol (each key of the
seed's protocol and ours that differ, then the row's own ``differences``). A results file the spec
names that is missing, a method / fraction absent from it, or a seed id not in the seed file is an
error naming the file and the fix: the output never silently drops a number.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..experiments.aggregate import fraction_label, markdown_table

__all__ = ["comparison_rows", "render_comparison", "read_results_file", "our_number"]

_METRIC_NAMES = {"accuracy": "accuracy", "auc": "AUC", "balanced_accuracy": "balanced accuracy"}
_PREDICTIONS = {"transductive": "graph (transductive)", "inductive": "net (inductive)"}
_NUMERIC = ("label_fraction", "accuracy", "balanced_accuracy", "auc", "n_labelled_train", "n_test", "wall_s")


def _load_yaml(path: Path) -> dict:
    from ..config import load_yaml

    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. Fix: check the path (it is relative to the spec file).")
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def read_results_file(path: Path) -> list[dict]:
    """Records of a grid's ``results.csv`` (numbers parsed; empty cells None) or ``results.jsonl``."""
    if not path.is_file():
        raise FileNotFoundError(
            f"results file {path} does not exist. Fix: run the grid named in the spec's results entry and copy its "
            "runs/experiments/<name>/results.csv there (then commit it), or mark the rows ours: {none: reason}.")
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in _NUMERIC:
            if k in r:
                r[k] = float(r[k]) if r[k] not in ("", None) else None
        r["seed"] = int(r["seed"])
    return rows


def our_number(records: list[dict], method: str, fraction: float, metric: str, where: str) -> dict:
    """Mean, sample std (ddof 1), seeds and data sizes of ``metric`` over the cells of one method and fraction."""
    import numpy as np

    cells = [r for r in records if r.get("method") == method and abs(float(r["label_fraction"]) - fraction) < 1e-9]
    if not cells:
        have = sorted({(r.get("method"), float(r["label_fraction"])) for r in records})
        raise ValueError(f"{where}: no cell of method {method!r} at label fraction {fraction:g}. Fix: a method and "
                         f"fraction the file has: {', '.join(f'{m}@{f:g}' for m, f in have)}")
    values = [r.get(metric) for r in cells]
    if any(v is None for v in values):
        raise ValueError(f"{where}: method {method!r} at {fraction:g} has cells without {metric!r}")
    v = np.asarray(values, float)

    def mean_of(key: str) -> float | None:
        return float(np.mean([r[key] for r in cells])) if all(r.get(key) is not None for r in cells) else None

    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "seeds": sorted(r["seed"] for r in cells), "label": cells[0].get("label") or method,
            "prediction": _PREDICTIONS.get(cells[0].get("test_prediction") or ""),
            "n_labelled_train": mean_of("n_labelled_train"), "n_test": mean_of("n_test")}


def _seed_number(entry: dict) -> str:
    if entry.get("value") is None:
        return "— (figure)"
    text = f"{entry['value']:.3f}" + (f" ± {entry['std']:.3f}" if entry.get("std") is not None else "")
    return text + (f" ({entry['note']})" if entry.get("note") else "")


def _protocol_diff(seed_p: dict, ours_p: dict) -> list[str]:
    """``key: seed's → ours`` for every key either side states and the two differ."""
    keys = list(seed_p) + [k for k in ours_p if k not in seed_p]
    return [f"{k}: {seed_p.get(k, 'not stated')} → {ours_p.get(k, 'not stated')}"
            for k in keys if str(seed_p.get(k, "")) != str(ours_p.get(k, ""))]


def _ours_cell(row: dict, results: dict, spec_dir: Path, cache: dict, where: str) -> tuple[str, str, list[str]]:
    """(our method and labels, our number, extra protocol items) of one row."""
    ours = row.get("ours")
    if not isinstance(ours, dict):
        raise ValueError(f"{where}: ours must be a mapping ({{results, method, fraction, metric}} or {{none: reason}})")
    if "none" in ours:
        return "—", f"no number: {ours['none']}", []
    missing = [k for k in ("results", "method", "fraction", "metric") if k not in ours]
    if missing:
        raise ValueError(f"{where}: ours lacks {missing}")
    name = ours["results"]
    if name not in results:
        raise ValueError(f"{where}: results {name!r} is not in the spec's results: ({', '.join(results)})")
    path = (spec_dir / results[name]["file"]).resolve()
    if path not in cache:
        cache[path] = read_results_file(path)
    n = our_number(cache[path], ours["method"], float(ours["fraction"]), ours["metric"], f"{where} ({path.name})")
    value = (f"{n['mean']:.3f} ± {n['std']:.3f} ({_METRIC_NAMES.get(ours['metric'], ours['metric'])}, "
             f"{len(n['seeds'])} seed{'s' if len(n['seeds']) != 1 else ''})")
    what = f"{n['label']}, {fraction_label(float(ours['fraction']))} labels" + (
        f", {n['prediction']}" if n["prediction"] else "")
    sizes = []
    if n["n_labelled_train"] is not None and n["n_test"] is not None:
        sizes = [f"ours: {n['n_labelled_train']:.0f} labelled training images, {n['n_test']:.0f} test images "
                 f"(means over seeds; {Path(results[name]['file']).name})"]
    return what, value, sizes


def comparison_rows(spec_path: str | Path) -> tuple[list[dict], dict]:
    """The rows of the comparison (dicts: section, seed_what, seed_value, ours_what, ours_value,
    differences) and the parsed spec, from the spec file and the files it names."""
    spec_path = Path(spec_path)
    spec = _load_yaml(spec_path)
    for key in ("seed", "rows"):
        if key not in spec:
            raise ValueError(f"{spec_path}: the spec needs a {key!r} key (see graphzoo.report.paper_comparison)")
    seed = _load_yaml(spec_path.parent / spec["seed"])
    entries = {e["id"]: e for e in seed.get("entries") or []}
    results = spec.get("results") or {}
    for name, r in results.items():
        if not isinstance(r, dict) or "file" not in r:
            raise ValueError(f"{spec_path}: results.{name} must be a mapping with a file (and a command)")
    cache: dict = {}
    out = []
    for i, row in enumerate(spec["rows"]):
        where = f"{spec_path}: rows[{i}]"
        if row.get("seed") not in entries:
            raise ValueError(f"{where}: seed id {row.get('seed')!r} is not in {spec['seed']}")
        e = entries[row["seed"]]
        seed_key = row.get("seed_protocol", e["id"].split(".")[0])
        seed_key = {"cxr": "chestxray14", "cbis": "cbis_ddsm"}.get(seed_key, seed_key)
        ours_key = row.get("protocol", seed_key)
        what, value, sizes = _ours_cell(row, results, spec_path.parent, cache, where)
        diffs = []
        if e.get("value") is not None and "none" not in row["ours"]:
            diffs = _protocol_diff((seed.get("protocol") or {}).get(seed_key, {}),
                                   (spec.get("protocol") or {}).get(ours_key, {}))
        diffs += [str(d) for d in row.get("differences") or []] + sizes
        labels = f", {fraction_label(float(e['labels']))} labels" if e.get("labels") is not None else ""
        out.append({"section": e["table"], "seed_what": f"{e['method']}{labels}", "seed_value": _seed_number(e),
                    "ours_what": what, "ours_value": value, "differences": "; ".join(diffs) or "—"})
    return out, spec


def _shown(path: Path) -> str:
    """A file as the page names it: relative to the working directory (the repository root) when inside it."""
    path = path.resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def render_comparison(spec_path: str | Path) -> str:
    """The Markdown page: a header naming the files, then one table per seed table or figure."""
    spec_path = Path(spec_path)
    rows, spec = comparison_rows(spec_path)
    seed = _load_yaml(spec_path.parent / spec["seed"])
    lines = [f"# {spec.get('title', 'The seed paper beside ours')}", "",
             f"Generated by `graphzoo compare {spec_path.as_posix()}`; do not edit by hand. The seed's numbers come "
             f"from `{spec['seed']}` ({seed.get('source', 'source not stated')}); ours from the grids' results files:",
             ""]
    for name, r in (spec.get("results") or {}).items():
        lines.append(f"- `{_shown(spec_path.parent / r['file'])}` ({name}): `{r.get('command', 'command not stated')}`")
    lines += [""] + [str(p) for p in spec.get("notes") or []] + ([""] if spec.get("notes") else [])
    header = ["Seed: method, labels", "Seed's number", "Ours: method, labels", "Our number", "Differences in protocol"]
    sections: dict[str, list] = {}
    for r in rows:
        sections.setdefault(r["section"], []).append(
            [r["seed_what"], r["seed_value"], r["ours_what"], r["ours_value"], r["differences"]])
    for title, table in sections.items():
        lines += [f"## {title}", "", markdown_table(header, table), ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", default="docs/comparison/paper_comparison.yaml",
                        help="the comparison spec (default docs/comparison/paper_comparison.yaml)")
    parser.add_argument("-o", "--out", default="docs/paper_comparison.md",
                        help="the Markdown page to write (default docs/paper_comparison.md; - for stdout)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when the page differs from what the files give (stale)")


def main(args: argparse.Namespace) -> int:
    text = render_comparison(args.spec)
    if args.out == "-":
        print(text)
        return 0
    out = Path(args.out)
    if args.check:
        same = out.is_file() and out.read_text() == text
        print(f"{out}: {'up to date' if same else 'stale: run graphzoo compare to regenerate it'}", file=sys.stderr)
        return 0 if same else 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"comparison: {out} ({text.count(chr(10)) + 1} lines)", file=sys.stderr)
    return 0
