"""``graphzoo predict --run runs/<name> IMAGES_OR_FOLDER``: classify new images with a trained run.

Uses the network the run evaluated (``final_model`` in its metrics.json: best-by-validation for
One Pass, the last for Dynamic Pass; ``--checkpoint`` picks one), an inductive prediction as for
the test split; the images are read, converted to the run's channels and size and normalised with
the training statistics stored in the checkpoint. Prints a header line and one
``file<TAB>prediction<TAB>probability<TAB>confidence<TAB>prediction_set<TAB>refer<TAB>evidence`` line
per image and, with ``--output``, writes a CSV with the same columns, ``prob_<class>`` before ``evidence``.
``evidence`` names the run's labelled training images nearest to the image in ψ ("why this label", as in
the run's ``predictions.csv``); it is given when the scored checkpoint is the model whose features the run
saved (:func:`evidence`).

Single-label runs: ``confidence`` is the probability after the run's temperature, and
``prediction_set`` the classes of the split-conformal set at the run's coverage (or
``--coverage``), both fitted on the run's labelled validation images and read from
``metrics.json`` (block ``calibration.inductive``; :mod:`graphzoo.calibration`). ``refer`` = 1 when
the set is not exactly one class: a person should look. The coverage guarantee holds, approximately
(the validation images also chose the checkpoint), for images drawn like the run's validation images;
for inputs warned about below (unlike the training data) it does not. The run saves the threshold for the
coverages in :data:`graphzoo.train.evaluate.COVERAGES` (not the scores), so ``--coverage`` takes one of
those. Without calibration (multi-label runs, runs made before it, another checkpoint than the
one calibrated) ``confidence`` is the uncalibrated probability and the set and refer are empty.

Checks before scoring: the run must have finished (``metrics.json``; ``--allow-unfinished``
uses the checkpoint of a crashed or running run). Inputs unlike the training images are scored
but warned about once, with counts: a side more than twice or less than half the run's
``image_size``, colour images for a grayscale run, and a mean intensity more
than ``INTENSITY_K`` standard deviations from the training mean. A file that cannot be decoded
is named and skipped; the exit code is then 1 unless ``--skip-corrupt`` says that is expected.
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import IMAGE_SUFFIXES
from .evidence import nearest_labelled

#: An image whose mean intensity lies further than this many training standard deviations (of
#: the pixel values) from the training mean is reported as unlike the training data.
INTENSITY_K = 2.0


def positive_int(text: str) -> int:
    """argparse type of a count such as ``--batch-size`` or ``suggest -n``: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder (holding checkpoints/best.pt)")
    parser.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--output", "-o", help="write predictions to this CSV file")
    parser.add_argument("--checkpoint", choices=["best", "last"],
                        help="default: the model the run evaluated (metrics.json's final_model)")
    parser.add_argument("--coverage", type=float,
                        help="coverage of the prediction sets (default: the run's; one of the levels it saved)")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="images per forward pass (>= 1)")
    parser.add_argument("--allow-unfinished", action="store_true",
                        help="use a run that has not written metrics.json (crashed or still running)")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="images that cannot be decoded are named and skipped without failing the command")


def _collect(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist")
    if not files:
        raise ValueError(f"no image files found in {', '.join(paths)}")
    return files


def load_model(run_dir: str | Path, which: str = "best"):
    """Rebuild a run's network; returns ``(model in eval mode, meta dict, Normalizer)``.

    ``meta["tta_views"]`` is the list of views (:func:`graphzoo.data.torchdata.tta_views`) the run
    averages its predictions over; ``[(0, False)]`` (the image as it is) for runs without ``tta``.
    """
    from .data.torchdata import Normalizer
    from .models import HybridNet, create_backbone
    from .rundir import RunDir
    from .train.checkpoints import load_checkpoint

    path = RunDir(run_dir).checkpoint(which)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; is {run_dir} a finished graphzoo run?")
    ck = load_checkpoint(path)  # never unpickles objects: a shared checkpoint cannot run code
    meta = ck["meta"]
    meta["tta_views"] = [tuple(v) for v in meta.get("tta_views") or [(0, False)]]
    backbone = create_backbone(meta["backbone"], in_chans=meta["in_chans"], pretrained=False, **meta["backbone_kwargs"])
    model = HybridNet(backbone, meta["n_outputs"], meta["dropout"])
    model.load_state_dict(ck["model"])
    model.eval()
    return model, meta, Normalizer.from_state_dict(meta["normalizer"])


def read_images(files, size: int, in_chans: int):
    """Decode ``files`` for a run; returns ``(arrays, kept files, skipped [(file, reason)], notes)``.

    ``arrays`` are uint8 (size, size[, 3]) in the run's channels; a file that cannot be decoded is
    skipped, not fatal. ``notes`` counts the inputs unlike the run's training images (size and
    colour; intensity is judged after normalisation in :func:`unlike_training`).
    """
    from .data import CorruptImageError, decode_image

    arrays, kept, skipped = [], [], []
    notes = {"size": 0, "colour": 0}
    for f in files:
        try:
            stored = decode_image(f)  # as stored: its size and colour tell whether it fits the run
            arrays.append(decode_image(f, channels=in_chans, size=size))  # as the run's images were read
        except (CorruptImageError, OSError) as exc:
            skipped.append((f, str(exc)))
            continue
        kept.append(f)
        side = max(stored.shape[:2])
        notes["size"] += not size / 2 <= side <= size * 2
        colour = stored.ndim == 3 and not (np.array_equal(stored[..., 0], stored[..., 1])
                                           and np.array_equal(stored[..., 0], stored[..., 2]))
        notes["colour"] += colour if in_chans == 1 else 0
    return arrays, kept, skipped, notes


def unlike_training(x, normalizer) -> np.ndarray:
    """Per image of ``x`` (uint8, (N, C, H, W)): its mean intensity lies more than ``INTENSITY_K``
    training standard deviations from the training mean (on any channel). Shape (N,) bool."""
    mean = x.double().mean(dim=(2, 3)) / 255.0  # (N, C), the units of the Normalizer
    mu, sd = normalizer.mean.flatten().double(), normalizer.std.flatten().double()
    return ((mean - mu).abs() > INTENSITY_K * sd).any(dim=1).numpy()


@dataclass
class Scored:
    """What :func:`score_files` gives.

    proba : ndarray (len(files), n_outputs), probabilities of the files that could be decoded.
    meta : the checkpoint's description of the run (class ``names``, ``multilabel``, ...).
    files : the decoded files, in the order of ``proba``'s rows.
    skipped : ``(file, reason)`` for each file that could not be decoded.
    notes : counts of inputs unlike the training data: ``size``, ``colour``, ``intensity``.
    features : ndarray (len(files), out_dim), ψ of the decoded files (the features the graph of the run uses).
    """

    proba: np.ndarray
    meta: dict
    files: list
    skipped: list
    notes: dict
    features: np.ndarray | None = None


def predict_files(run_dir, files, which: str = "best", batch_size: int = 256):
    """Probabilities of shape (len(files), n_outputs) and the meta dict (class / label names).

    A file that cannot be decoded raises :class:`graphzoo.data.CorruptImageError`;
    :func:`score_files` skips it instead.
    """
    scored = score_files(run_dir, files, which, batch_size)
    if scored.skipped:
        from .data import CorruptImageError

        raise CorruptImageError(*scored.skipped[0])
    return scored.proba, scored.meta


def score_files(run_dir, files, which: str = "best", batch_size: int = 256) -> Scored:
    """Score ``files`` with a run's network, skipping (and listing) those that cannot be decoded."""
    import torch

    from .data.torchdata import to_image_tensor

    model, meta, norm = load_model(run_dir, which)
    size = meta["image_size"]
    arrays, kept, skipped, notes = read_images(files, size, meta["in_chans"])
    if not kept:
        return Scored(np.zeros((0, meta["n_outputs"])), meta, kept, skipped, notes)
    x = to_image_tensor(arrays, size=size, in_chans=meta["in_chans"])
    notes["intensity"] = int(unlike_training(x, norm).sum())
    out, feats = [], []
    with torch.no_grad():
        for b in x.split(batch_size):
            logits, z = model.infer(norm(b), meta["tta_views"])  # the run's test-time averaging
            logits = logits.double()
            out.append(torch.sigmoid(logits) if meta["multilabel"] else torch.softmax(logits, 1))
            feats.append(z.float())
    return Scored(torch.cat(out).numpy(), meta, kept, skipped, notes, torch.cat(feats).numpy())


def evidence(run, features: np.ndarray, which: str, metrics: dict) -> tuple[list[str] | None, str]:
    """Per scored image, the ids of the run's nearest labelled training images in ψ, joined by "|"
    (as ``predictions.csv``'s ``evidence`` column), or ``(None, why not)``.

    run : :class:`graphzoo.rundir.RunDir`; features : (m, out_dim) ψ of the new images, from checkpoint
    ``which``. The labelled images' ψ is the run's ``features.npy``, computed by the model the run
    evaluated (``final_model``): a new image is only comparable with them when ``which`` is that model.
    The metric is the run's graph metric, so the evidence is what the graph would connect the image to.
    """
    from .config import load_config

    if metrics.get("final_model") != which:
        return None, (f"the run's saved features come from its {metrics.get('final_model') or 'final'} model, "
                      f"not the {which} one")
    if not (run.features.is_file() and run.predictions.is_file()):
        return None, f"{run} has no features.npy / predictions.csv"
    with open(run.predictions, newline="") as fh:
        rows = list(csv.DictReader(fh))
    lab = [i for i, r in enumerate(rows) if r["split"] == "train" and r["labelled"] == "1"]
    if not lab or not len(features):
        return None, "the run has no labelled training images"
    names = [r["filename"] or r["index"] for r in rows]
    return nearest_labelled(np.load(run.features, mmap_mode="r"), lab, names, load_config(run.config).graph_metric,
                            queries=features), ""


def _warn_unlike(notes: dict, n: int, meta: dict) -> None:
    """One warning line listing how many inputs differ from the training data, and how."""
    parts = []
    if notes.get("size"):
        parts.append(f"{notes['size']} with a side far from the training size {meta['image_size']} px")
    if notes.get("colour"):
        parts.append(f"{notes['colour']} in colour (the run was trained on grayscale)")
    if notes.get("intensity"):
        parts.append(f"{notes['intensity']} with a mean intensity more than {INTENSITY_K:g} sd from the training mean")
    if parts:
        print(f"graphzoo predict: warning: of {n} images, {'; '.join(parts)}: they may not be the kind of image "
              "the run was trained on (modality, view, scaling), so their predictions deserve less trust",
              file=sys.stderr)


def run_calibration(metrics: dict, which: str, coverage: float | None) -> tuple[dict | None, str]:
    """``({"temperature", "threshold", "coverage"}, "")`` for the run's net, or ``(None, why not)``.

    metrics : the run's metrics.json ({} when unfinished); which : the checkpoint scored.
    A ``coverage`` the run saved no threshold for raises ``ValueError`` naming the saved levels.
    """
    block = metrics.get("calibration")
    if not block:
        return None, "the run has no calibration (unfinished, or made before graphzoo calibrated its predictions)"
    if "skipped" in block:
        return None, block["skipped"]
    net = block["inductive"]
    if net["model"] != which:
        return None, (f"the run calibrated its {net['model']} model, not the {which} one; "
                      f"use --checkpoint {net['model']}")
    coverage = block["coverage"] if coverage is None else coverage
    saved = {**net["conformal_thresholds"], f"{block['coverage']:g}": net["conformal_threshold"]}
    if f"{coverage:g}" not in saved:
        raise ValueError(f"--coverage {coverage:g}: the run saved conformal thresholds for the coverages "
                         f"{', '.join(sorted(saved, key=float))} only (not its calibration scores); pick one of "
                         f"them, or rerun the run with --set coverage={coverage:g}")
    return {"temperature": net["temperature"], "threshold": saved[f"{coverage:g}"], "coverage": coverage}, ""


def _rows(scored: Scored, calib: dict | None) -> list[tuple]:
    """``(file, prediction, probability, confidence, prediction_set, refer, proba)`` per scored file."""
    from .calibration import apply_temperature, prediction_sets, refer

    meta, P = scored.meta, scored.proba
    names = np.asarray(meta["names"], dtype=object)
    if meta["multilabel"]:
        return [(str(f), "|".join(names[p > 0.5]) or "none", float(p.max()), float(p.max()), "", "", p)
                for f, p in zip(scored.files, P)]
    if calib is None or not len(P):
        return [(str(f), names[p.argmax()], float(p.max()), float(p.max()), "", "", p) for f, p in zip(scored.files, P)]
    conf = apply_temperature(P, calib["temperature"]).max(1)
    sets = prediction_sets(P, calib["threshold"])  # on the uncalibrated probabilities, as the run fitted it
    ref = refer(sets)
    return [(str(f), names[p.argmax()], float(p.max()), float(c), "|".join(names[s]), int(r), p)
            for f, p, c, s, r in zip(scored.files, P, conf, sets, ref)]


def main(args: argparse.Namespace) -> int:
    from .rundir import RunDir

    run = RunDir(args.run)
    if not run.path.is_dir():
        raise FileNotFoundError(f"--run {run} is not a folder; give a run folder written by graphzoo run")
    if not run.finished and not args.allow_unfinished:
        raise ValueError(f"{run} holds no finished run (no metrics.json: it crashed or is still running); "
                         "finish it with graphzoo run --resume, or pass --allow-unfinished to use its checkpoint")
    if args.coverage is not None and not 0 < args.coverage < 1:
        raise ValueError(f"--coverage must lie in (0, 1) (e.g. 0.9 or 0.95), got {args.coverage}")
    metrics = run.read_metrics() if run.finished else {}
    which = args.checkpoint or ("last" if metrics.get("final_model") == "last" else "best")
    calib, why = run_calibration(metrics, which, args.coverage)
    if calib is None and metrics.get("task") != "multilabel":
        print(f"graphzoo predict: note: confidences are uncalibrated and no prediction sets are given: {why}",
              file=sys.stderr)
    files = _collect(args.images)
    scored = score_files(args.run, files, which, args.batch_size)
    meta, skipped = scored.meta, scored.skipped
    for f, reason in skipped:
        print(f"graphzoo predict: skipped {f}: {reason}", file=sys.stderr)
    _warn_unlike(scored.notes, len(scored.files), meta)
    rows = _rows(scored, calib)
    near, why = evidence(run, scored.features, which, metrics) if rows else ([], "")
    if near is None:
        print(f"graphzoo predict: note: no evidence (nearest labelled images) is given: {why}", file=sys.stderr)
        near = [""] * len(rows)
    print("file\tprediction\tprobability\tconfidence\tprediction_set\trefer\tevidence")
    for (f, label, prob, conf, pset, ref, _), ev in zip(rows, near):
        print(f"{f}\t{label}\t{prob:.4f}\t{conf:.4f}\t{pset}\t{ref}\t{ev}")
    if args.output:
        with open(args.output, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "prediction", "probability", "confidence", "prediction_set", "refer"]
                       + [f"prob_{n}" for n in meta["names"]] + ["evidence"])
            for (f, label, prob, conf, pset, ref, p), ev in zip(rows, near):
                w.writerow([f, label, f"{prob:.5f}", f"{conf:.5f}", pset, ref] + [f"{v:.5f}" for v in p] + [ev])
        print(f"wrote {len(rows)} predictions to {args.output}", file=sys.stderr)
    if skipped and not args.skip_corrupt:
        print(f"graphzoo predict: error: {len(skipped)} of {len(files)} images could not be decoded (named above); "
              "pass --skip-corrupt to accept that", file=sys.stderr)
        return 1
    return 0
