"""``graphzoo suggest``: which unlabelled training images to label next, for a finished run.

::

    graphzoo suggest --run runs/<name> -n 50 [--strategy uncertainty_diverse] [--seed 0]

Reads the run folder (:class:`graphzoo.rundir.RunDir`): ``features.npy`` (ψ of every image),
``split.json``, ``config.yaml`` and ``predictions.csv``; rebuilds the run's kNN graph over the
features (its ``n_neighbors`` and ``graph_metric``), runs the graph step with its energy on the
labels of the labelled *training* images (as the run's final evaluation does), and ranks the
unlabelled training images with an acquisition strategy (:data:`graphzoo.acquisition.ACQUISITION`).

Never suggested: labelled images, validation images (they choose the model) and **test images**:
the test split stays unlabelled by the loop so that its accuracy remains an honest estimate.

Writes, in the run folder, ``suggestions.csv`` (rank, index, filename, score, strategy,
predicted_class, graph_probability) and ``suggestions.png`` (a contact sheet: each thumbnail
with its rank and predicted class; ``--no-sheet`` skips it and the dataset read it needs), and
prints a header line and one tab-separated line per suggestion.

Asking for more suggestions than there are unlabelled training images is refused (nothing is
written) with the number that remain: a silently shorter list would read as "this is all the
tool recommends".
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from pathlib import Path

import numpy as np

from .acquisition import ACQUISITION, acquire
from .predict import positive_int
from .rundir import RunDir

__all__ = ["add_arguments", "main", "suggest", "contact_sheet", "read_predictions", "write_csv", "images_named"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="a finished run folder (with features.npy)")
    parser.add_argument("-n", type=positive_int, default=50, help="number of images to suggest (default 50)")
    parser.add_argument("--strategy", default="uncertainty_diverse",
                        help=f"acquisition strategy: {', '.join(ACQUISITION.names())} (default uncertainty_diverse)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the strategy's randomness (ties, random)")
    parser.add_argument("--no-sheet", action="store_true", help="do not write suggestions.png (no dataset read)")


def read_predictions(rd: RunDir) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(class names, filenames (N,), true class index (N,), -1 where empty) from predictions.csv."""
    with open(rd.predictions, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    if any(h.startswith("true_") for h in header):
        raise ValueError(f"{rd} is a multi-label run: graphzoo suggest ranks images of multiclass runs only")
    names = [h[len("prob_"):] for h in header if h.startswith("prob_")]
    col = {h: j for j, h in enumerate(header)}
    lookup = {name: k for k, name in enumerate(names)}
    files = np.array([r[col["filename"]] for r in body], dtype=object)
    true = np.array([lookup.get(r[col["true"]], -1) for r in body], dtype=np.int64)
    return names, files, true


def _load_run(rd: RunDir):
    """Features, split record, config and predictions of a finished run, checked against each other."""
    from .config import load_config
    from .data import load_split

    if not rd.path.is_dir():
        raise FileNotFoundError(f"{rd} is not a folder: point --run at a graphzoo run folder")
    if not rd.finished:
        raise ValueError(f"{rd} holds no finished run (no metrics.json: it crashed or is still running); "
                         "finish it with graphzoo run --resume before asking for suggestions")
    for path in (rd.features, rd.predictions, rd.split, rd.config):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: {rd} was written by an older graphzoo or was edited; "
                                    "rerun it with graphzoo run --overwrite")
    Z = np.load(rd.features)
    split = load_split(rd.split)
    cfg = load_config(rd.config)
    names, files, true = read_predictions(rd)
    N = len(Z)
    if split["n_samples"] != N or len(files) != N or split["split"] is None or split["labelled"] is None:
        raise ValueError(f"{rd}: features.npy ({N} rows), split.json ({split['n_samples']}) and predictions.csv "
                         f"({len(files)}) disagree; rerun it with graphzoo run --overwrite")
    return Z, split, cfg, names, files, true


def suggest(run, n: int = 50, strategy: str = "uncertainty_diverse", seed: int = 0) -> list[dict]:
    """Rank the unlabelled training images of a finished run; returns one dict per suggestion, best first.

    Each row: ``rank`` (1-based), ``index`` (row in predictions.csv / features.npy), ``filename``,
    ``score`` (the strategy's, larger = sooner), ``strategy``, ``predicted_class`` and
    ``graph_probability`` (the graph step's probability of that class).
    """
    from .graph_step import build_graph, graph_step

    rd = RunDir(run)
    ACQUISITION.get(strategy)  # an unknown name fails before any work, with a suggestion
    Z, split, cfg, names, files, true = _load_run(rd)
    part = np.asarray(split["split"]).astype(str)
    graph_labelled = np.asarray(split["labelled"], bool) & (part == "train")  # validation labels stay out
    if (true[graph_labelled] < 0).any():
        raise ValueError(f"{rd.predictions} has labelled training rows without a known class; rerun the run")
    candidates = (part == "train") & ~graph_labelled  # never test (honest evaluation) nor validation images
    if not candidates.any():
        raise ValueError(f"every training image of {rd} is labelled: there is nothing to suggest")
    if n > candidates.sum():
        k = int(candidates.sum())
        raise ValueError(f"-n {n} asks for more than the {k} unlabelled training images of {rd} (test and validation "
                         f"images are never suggested); use -n {k} or less")
    W = build_graph(Z, cfg.n_neighbors, cfg.graph_metric)
    step = graph_step(None, np.where(graph_labelled, true, -1), energy=cfg.energy, energy_params=cfg.energy_params,
                      W=W, n_classes=len(names))
    picks = acquire(strategy, step.proba, W=W, Z=Z, candidates=candidates, labelled=graph_labelled, n=n, seed=seed)
    pred = step.proba.argmax(1)
    return [dict(rank=r + 1, index=int(i), filename=str(files[i]), score=float(s), strategy=strategy,
                 predicted_class=names[pred[i]], graph_probability=float(step.proba[i, pred[i]]))
            for r, (i, s) in enumerate(zip(picks.index, picks.score))]


_COLUMNS = ["rank", "index", "filename", "score", "strategy", "predicted_class", "graph_probability"]


def write_csv(rows: list[dict], path: Path) -> None:
    """``suggestions.csv``, written to a temporary file and renamed (never half-written)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({**r, "score": f"{r['score']:.6g}", "graph_probability": f"{r['graph_probability']:.4f}"})
    os.replace(tmp, path)


def contact_sheet(images: np.ndarray, captions: list[str], path: Path, *, thumb: int = 96, columns: int = 10) -> None:
    """A PNG grid of ``images`` (k, C, H, W) uint8, each scaled to ``thumb`` px with its caption below."""
    from PIL import Image, ImageDraw

    k = len(images)
    cols = min(columns, k)
    rows = math.ceil(k / cols)
    cap = 14  # caption strip height (Pillow's default bitmap font is ~11 px high)
    sheet = Image.new("RGB", (cols * (thumb + 4), rows * (thumb + cap + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (img, text) in enumerate(zip(images, captions)):
        arr = np.asarray(img)
        arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr[:3], 0, -1)
        tile = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB").resize((thumb, thumb), Image.NEAREST)
        x, y = (j % cols) * (thumb + 4) + 2, (j // cols) * (thumb + cap + 4) + 2
        sheet.paste(tile, (x, y))
        draw.text((x + 1, y + thumb + 1), text[: thumb // 6], fill="black")
    tmp = path.with_name(path.name + ".tmp.png")
    sheet.save(tmp)
    os.replace(tmp, path)


def images_named(rd: RunDir, rows: list[dict], *, moved: str, changed: str):
    """``(prepared data, uint8 (k, C, H, W))``: the run's images that ``rows`` name (their ``index`` and
    ``filename``, as in suggestions.csv), read with the run's own data options.

    Refuses a dataset that is no longer where the run's config says (``moved``: the fix to suggest) or that
    no longer matches the run (other images or another order; ``changed``: the fix).
    """
    from .config import load_config
    from .data import prepare_data

    if not rd.config.is_file():
        raise FileNotFoundError(f"{rd.config} is missing: {rd} is not a graphzoo run folder")
    cfg = load_config(rd.config)
    try:
        data = prepare_data(**cfg.data_options())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"the run's images are no longer where {rd.config} says ({exc}); {moved}") from None
    idx = np.array([r["index"] for r in rows], dtype=np.int64)
    n = len(data.split)
    same = n == len(np.load(rd.features, mmap_mode="r")) and (len(idx) == 0 or idx.max() < n)
    if same and data.filenames is not None:
        same = [str(data.filenames[i]) for i in idx] == [r["filename"] for r in rows]
    if not same:
        raise ValueError(f"the dataset {cfg.data} no longer matches {rd} (other images or another order); {changed}")
    return data, np.asarray(data.images[idx])


def main(args: argparse.Namespace) -> int:
    rd = RunDir(args.run)
    rows = suggest(rd, n=args.n, strategy=args.strategy, seed=args.seed)
    sheet = rd.suggestions.with_suffix(".png")  # suggestions.png beside the CSV
    # The images are read before anything is written, so that a dataset that moved leaves no half result.
    images = None if args.no_sheet else images_named(
        rd, rows, moved="use --no-sheet (suggestions.csv needs only the run folder)",
        changed="use --no-sheet, or rerun the run")[1]
    if images is None and sheet.exists():
        sheet.unlink()  # a sheet of an earlier call would contradict the new CSV
    write_csv(rows, rd.suggestions)
    where = f"{rd.suggestions}"
    if images is not None:
        contact_sheet(images, [f"#{r['rank']} {r['predicted_class']}" for r in rows], sheet)
        where += f" and {sheet}"
    print(f"# {len(rows)} images to label next in {rd} (strategy {args.strategy}, unlabelled training images "
          f"only; test images are never suggested), written to {where}")
    print("rank\tindex\tfilename\tscore\tpredicted_class\tgraph_probability")
    for r in rows:
        print(f"{r['rank']}\t{r['index']}\t{r['filename']}\t{r['score']:.4g}\t{r['predicted_class']}\t"
              f"{r['graph_probability']:.3f}")
    return 0
