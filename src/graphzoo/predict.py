"""``graphzoo predict --run runs/<name> IMAGES_OR_FOLDER``: classify new images with a trained run.

Uses the run's best-by-validation network (inductive prediction, as for the test split of a
Dynamic Pass run); the images are read, converted to the run's channels and size and normalised
with the training statistics stored in the checkpoint. Prints one line per image and, with
``--output``, writes a CSV.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".dcm", ".dicom", ".gif", ".webp"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, help="run folder (holding checkpoints/best.pt)")
    parser.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--output", "-o", help="write predictions to this CSV file")
    parser.add_argument("--checkpoint", default="best", choices=["best", "last"])
    parser.add_argument("--batch-size", type=int, default=256)


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


def predict_files(run_dir, files, which: str = "best", batch_size: int = 256):
    """Probabilities of shape (len(files), n_outputs) and the class / label names."""
    import torch

    from .data import decode_image
    from .data.torchdata import to_image_tensor

    model, meta, norm = load_model(run_dir, which)
    size = meta["image_size"]
    arrays = [decode_image(f, channels=meta["in_chans"], size=size) for f in files]
    x = to_image_tensor(arrays, size=size, in_chans=meta["in_chans"])
    out = []
    with torch.no_grad():
        for b in x.split(batch_size):
            logits, _ = model.infer(norm(b), meta["tta_views"])  # the run's test-time averaging
            logits = logits.double()
            out.append(torch.sigmoid(logits) if meta["multilabel"] else torch.softmax(logits, 1))
    return torch.cat(out).numpy(), meta


def main(args: argparse.Namespace) -> int:
    files = _collect(args.images)
    proba, meta = predict_files(args.run, files, args.checkpoint, args.batch_size)
    names = meta["names"]
    rows = []
    for f, p in zip(files, proba):
        if meta["multilabel"]:
            present = [n for n, v in zip(names, p) if v > 0.5]
            label, conf = ("|".join(present) or "none"), float(p.max())
        else:
            k = int(p.argmax())
            label, conf = names[k], float(p[k])
        rows.append((str(f), label, conf, p))
        print(f"{f}\t{label}\t{conf:.4f}")
    if args.output:
        with open(args.output, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "prediction", "probability"] + [f"prob_{n}" for n in names])
            for f, label, conf, p in rows:
                w.writerow([f, label, f"{conf:.5f}"] + [f"{v:.5f}" for v in p])
        print(f"wrote {len(rows)} predictions to {args.output}", file=sys.stderr)
    return 0
