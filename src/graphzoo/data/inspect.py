"""``graphzoo data inspect PATH``: what a dataset holds, before any experiment is run on it.

Prints the format, the number of images, their sizes and channels, counts per class and split,
patients, multi-label positives, the labelled-set sizes that 1 / 5 / 10 / 20 % budgets would give
(:func:`graphzoo.data.label_budget` on the training part), and the reader's notes. ``--examples PNG``
also saves a sheet of example images, one row per class (:func:`example_sheet`).
"""

from __future__ import annotations

import argparse
import warnings
from collections import Counter

import numpy as np

from ._images import SKIP_HINT, DataWarning
from ._tables import ALLOW_MISSING_HINT
from .cbis_ddsm import NoImagesFoundError
from .readers import FORMAT_HINT, READERS, load
from .splits import label_budget
from .types import ImageSet

BUDGETS = (0.01, 0.05, 0.10, 0.20)

# The library's advice (Python keywords) -> the same advice for this command line.
_CLI_ADVICE = {
    SKIP_HINT: "or rerun with --skip-corrupt to skip unreadable files",
    ALLOW_MISSING_HINT: "rerun with -o allow_missing=True",
    FORMAT_HINT: "pass --format, one of",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``graphzoo data``."""
    parser.add_argument("action", choices=["inspect"], help="what to do with the dataset")
    parser.add_argument("path", help="dataset folder or file (any format graphzoo.data.load reads)")
    parser.add_argument("--format", default=None, choices=READERS.names(), help="format (default: detected)")
    parser.add_argument("--skip-corrupt", action="store_true", help="skip unreadable images instead of stopping")
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="reader option, e.g. -o size=64 -o label_mode=single (repeatable; values parsed as Python literals)",
    )
    parser.add_argument("--examples", metavar="PNG", default=None,
                        help="also save example images of each class (one row per class) to this PNG")
    parser.add_argument("--per-class", type=int, default=8, help="images per class in --examples (default 8)")


def _parse_options(pairs: list[str]) -> dict:
    import ast

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--option {pair!r} is not KEY=VALUE")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key.strip()] = value  # a bare word is a string
    return out


def _size_summary(images) -> tuple[str, str]:
    if images is None:
        return "not read (metadata only)", "-"
    if isinstance(images, np.ndarray):
        chans = 1 if images.ndim == 3 else images.shape[3]
        return f"{images.shape[1]}x{images.shape[2]} (all)", str(chans)
    sizes = Counter(a.shape[:2] for a in images)
    chans = Counter(1 if a.ndim == 2 else a.shape[2] for a in images)
    top = ", ".join(f"{h}x{w} ({c})" for (h, w), c in sizes.most_common(5))
    more = f", ... {len(sizes)} sizes in all" if len(sizes) > 5 else ""
    return f"mixed: {top}{more}", ", ".join(f"{k} ({v})" for k, v in sorted(chans.items()))


def report(ds: ImageSet) -> str:
    """The text printed by ``graphzoo data inspect``."""
    lines = [f"source    {ds.source}", f"images    {len(ds)}"]
    size, chans = _size_summary(ds.images)
    lines += [f"size      {size}", f"channels  {chans}"]

    split = ds.split if ds.split is not None else np.full(len(ds), "all")
    order = ["train", "training", "valid", "validation", "val", "test", "testing", "all", ""]
    parts = sorted(set(split.tolist()), key=lambda s: (order.index(s) if s in order else len(order), s))
    names = list(ds.class_names) + (["(unlabelled)"] if (ds.labels == -1).any() else [])
    width = max(12, *(len(n) for n in names)) + 2
    lines.append("")
    lines.append("class".ljust(width) + "".join(f"{p or '(none)':>10}" for p in parts) + f"{'total':>10}")
    for i, name in enumerate(names):
        cls = -1 if name == "(unlabelled)" else i
        row = [int(((ds.labels == cls) & (split == p)).sum()) for p in parts]
        lines.append(name.ljust(width) + "".join(f"{v:>10}" for v in row) + f"{sum(row):>10}")
    lines.append("total".ljust(width) + "".join(f"{int((split == p).sum()):>10}" for p in parts) + f"{len(ds):>10}")

    lines.append("")
    if ds.patient_ids is not None:
        pid = ds.patient_ids
        n_pat = len(np.unique(pid))
        lines.append(f"patients  {n_pat} ({len(ds) / max(n_pat, 1):.1f} images each on average)")
        if ds.split is not None and len(parts) > 1:
            sets = [set(pid[split == p].tolist()) for p in parts]
            shared = len(set.union(*[a & b for i, a in enumerate(sets) for b in sets[i + 1 :]]))
            if shared:
                lines.append(
                    f"          {shared} patients appear in more than one split: a run splits by patient "
                    "instead with split: patient in its config (or --set split=patient)"
                )
    else:
        lines.append("patients  not recorded (splits cannot be grouped by patient)")

    if ds.multilabels is not None:
        pos = ds.multilabels.sum(axis=0)
        names_ml = ds.multilabel_names or [f"label_{j}" for j in range(len(pos))]
        lines.append("")
        lines.append("multi-label positives: " + ", ".join(f"{n} {int(c)}" for n, c in zip(names_ml, pos)))

    pool = np.ones(len(ds), bool)
    where = "all images"
    if ds.split is not None and np.isin(split, ["train", "training"]).any():
        pool = np.isin(split, ["train", "training"])
        where = "the train split"
    lines.append("")
    lines.append(f"label budget over {where} ({int(pool.sum())} images; >= 1 per class):")
    for frac in BUDGETS:
        try:
            mask = label_budget(ds.labels[pool], fraction=frac, seed=0)
            per = np.bincount(ds.labels[pool][mask], minlength=len(ds.class_names))
            detail = ", ".join(f"{n} {int(c)}" for n, c in zip(ds.class_names, per))
            lines.append(f"  {frac:>4.0%}  {int(mask.sum()):>7} labelled  ({detail})")
        except ValueError as exc:
            lines.append(f"  {frac:>4.0%}  impossible: {exc}")

    if ds.notes:
        lines.append("")
        lines.append("notes:")
        lines += [f"  - {n}" for n in ds.notes]
    return "\n".join(lines)


def example_sheet(ds: ImageSet, per_class: int = 8, tile: int = 96, seed: int = 0):
    """A PIL image: up to ``per_class`` random images of each class in a row of ``tile`` px squares, each row
    headed by the class name and its count (grey levels as stored; colour images in colour)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    head = 16
    sheet = Image.new("RGB", (per_class * tile, len(ds.class_names) * (tile + head)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, name in enumerate(ds.class_names):
        idx = np.flatnonzero(ds.labels == k)
        top = k * (tile + head)
        draw.text((2, top + 2), f"{name} ({len(idx)})", fill="black")
        for j, i in enumerate(np.sort(rng.choice(idx, min(per_class, len(idx)), replace=False))):
            im = Image.fromarray(np.asarray(ds.images[i])).convert("RGB").resize((tile, tile), Image.BILINEAR)
            sheet.paste(im, (j * tile, top + head))
    return sheet


def _for_the_command_line(message: str) -> str:
    """Reword the library's Python advice (``skip_corrupt=True``, ...) as this command's flags."""
    for api, cli in _CLI_ADVICE.items():
        message = message.replace(api, cli)
    return message


def main(args: argparse.Namespace) -> int:
    """Run ``graphzoo data inspect``."""
    options = _parse_options(args.option)
    skip = args.skip_corrupt or bool(options.pop("skip_corrupt", False))  # -o skip_corrupt=True works too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # they are printed as notes instead
        try:
            try:
                ds = load(args.path, args.format, skip_corrupt=skip, **options)
            except NoImagesFoundError as exc:
                # CBIS-DDSM CSVs without their DICOM tree: still worth counting.
                ds = load(args.path, args.format, skip_corrupt=skip, **options, metadata_only=True)
                found = str(exc).split(" Fix:")[0]
                ds.notes.insert(
                    0,
                    f"no images found, so only the CSVs were read ({found}); to read the images add "
                    "-o image_root=FOLDER (the folder holding the CBIS-DDSM DICOM tree)",
                )
        except ValueError as exc:
            raise ValueError(_for_the_command_line(str(exc))) from None
    print(report(ds))
    if getattr(args, "examples", None):
        if ds.images is None:
            raise ValueError(f"{args.path}: no images were read, so --examples has nothing to show")
        example_sheet(ds, per_class=args.per_class).save(args.examples)
        print(f"\nexample images of each class: {args.examples}")
    return 0
