"""Data preparation for a run: load → split → label budget → one uint8 image tensor (or a lazy store).

:func:`prepare_data` takes plain keyword arguments (a run passes
``**cfg.data_options()``), so notebooks, the grid and the report draw exactly the split and
labelled mask a run drew from the same options and seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["PreparedData", "prepare_data", "read_source", "label_counts", "labels_line", "DATA_OPTIONS",
           "check_run_reader_options"]

# The RunConfig keys prepare_data takes (they decide the images, the split and the labelled mask).
#: The part of an image without a label whose patient is in the validation or test part.
EXCLUDED = "excluded"

DATA_OPTIONS = ("data", "data_format", "task", "split", "split_fractions", "label_fraction", "labels_per_class",
                "val_labels", "seed", "image_size", "in_chans", "skip_corrupt", "labels", "class_names",
                "unlabelled_dirs", "holdout", "add_labels", "data_in_memory", "reader_options")

# Reader options a run sets through keys of its own (and ``decode``, an object no config can hold): refused in
# ``reader_options``, so that one setting has one place.
OWN_KEYS = {"skip_corrupt": "skip_corrupt", "class_names": "class_names", "unlabelled_dirs": "unlabelled_dirs",
            "decode": "the option's own fields (channels, size, ...)"}

# ImageSet.meta key: the images a labels CSV added to a source with labels of its own named (bool (N,)).
NAMED_BY_CSV = "named_by_labels_csv"


@dataclass
class PreparedData:
    """Everything a run needs about its images, held in memory.

    images : uint8 tensor (N, C, H, W), or a :class:`~graphzoo.data.torchdata.LazyImages` that indexes like one
    (a set over the memory budget, ``data_in_memory``); targets : int (N,) or 0/1 (N, L); split : str (N,) of
    "train" / "val" / "test" (and "excluded": an image without a label of a validation or test patient,
    predicted but never trained on, suggested or scored); labelled : bool (N,) (the label budget, in train and val);
    names : class or label names; multilabel : bool; filenames, patient_ids : str (N,) or None;
    split_source : how the split was made ("patient", "source" or "random").
    n_unlabelled_source : images the source gives no label (target -1; always in "train", never
    labelled, never evaluated).
    """

    images: object  # torch.Tensor; typed loosely so that this module imports no torch
    targets: np.ndarray
    split: np.ndarray
    labelled: np.ndarray
    names: list
    multilabel: bool
    filenames: np.ndarray | None
    patient_ids: np.ndarray | None
    split_source: str
    n_unlabelled_source: int = 0

    @property
    def has_truth(self) -> np.ndarray:
        """(N,) bool: images whose source gives a label (the only ones that can be scored)."""
        if self.multilabel:
            return np.ones(len(self.targets), bool)
        return self.targets >= 0

    @property
    def n_outputs(self) -> int:
        return len(self.names)

    def idx(self, part: str, labelled: bool | None = None) -> np.ndarray:
        """Indices of the images in ``part`` ("train", "val", "test"), optionally only (un)labelled."""
        mask = self.split == part
        if labelled is not None:
            mask &= self.labelled == labelled
        return np.flatnonzero(mask)

    @property
    def graph_labels(self) -> np.ndarray:
        """(N,) bool: the labels the graph may use, those of the labelled training images.

        Validation labels stay out of the graph: they choose the model and would leak otherwise.
        """
        return self.labelled & (self.split == "train")


def _choose_split(how: str, pids, source) -> str:
    if how != "auto":
        return how
    if pids is not None and len(np.unique(pids)) >= 3:
        return "patient"
    if source is not None and "test" in set(source):
        return "source"
    return "random"


def _draw_split(how: str, targets, pids, source, fractions, seed: int, where: str) -> np.ndarray:
    from .splits import patient_split

    if how == "source":
        if source is None:
            raise ValueError(f"split=source but {where} has no split of its own; use split=patient or random")
        split = np.array([{"valid": "val", "validation": "val"}.get(s, s) for s in source])
        outside = np.flatnonzero(~np.isin(split, ("train", "val", "test")))
        if len(outside):
            raise ValueError(f"split=source: {len(outside)} labelled images belong to no part of {where}'s own split "
                             f"(e.g. part {split[outside[0]]!r}); move them into train / valid / test, or use "
                             "split=patient or random")
        missing = {"train", "test"} - set(split)
        if missing:
            raise ValueError(f"split=source: the source split has no {sorted(missing)} part; "
                             "use split=patient or random")
        return split
    if how == "patient":
        if pids is None:
            raise ValueError(f"split=patient but {where} has no patient ids; use split=random")
        return np.asarray(patient_split(targets, pids, fractions=tuple(fractions), seed=seed)).astype(str)
    return np.asarray(patient_split(targets, None, fractions=tuple(fractions), seed=seed)).astype(str)


def _draw_budget(targets, split, pids, *, label_fraction, labels_per_class, val_labels, seed, n_classes) -> np.ndarray:
    from .splits import label_budget

    labelled = np.zeros(len(targets), bool)
    budget = dict(fraction=None, per_class=labels_per_class) if labels_per_class else dict(fraction=label_fraction)
    for part, seed_offset in (("train", 0), ("val", 1)):
        idx = np.flatnonzero(split == part)
        if len(idx) == 0:
            continue
        if part == "val" and val_labels == "all":
            labelled[idx] = True
            continue
        groups = None if pids is None else pids[idx]
        try:
            mask = label_budget(targets[idx], seed=seed + seed_offset, groups=groups, n_classes=n_classes, **budget)
        except ValueError as exc:
            raise ValueError(f"label budget on the {part} part: {exc}") from None
        labelled[idx[mask]] = True
    if not labelled[split == "train"].any():
        raise ValueError("the label budget selected no training image; raise label_fraction")
    return labelled


def check_run_reader_options(data, data_format: str, reader_options) -> None:
    """Refuse ``reader_options`` (a run's options of its reader, e.g. ``{"patch_mm": 24}`` for ``mias_patches``)
    that the reader of ``data`` does not take: one ``ValueError`` naming them and listing the valid ones.

    The format is ``data_format``, else detected from ``data`` (names only); when ``data`` does not exist yet
    only the keys a run sets elsewhere (:data:`OWN_KEYS`) are checked, the rest when the data is read.
    """
    from ..registry import did_you_mean
    from .readers import detect_format, reader_option_names

    options = dict(reader_options or {})
    own = [k for k in options if k in OWN_KEYS]
    if own:
        raise ValueError(f"reader_options: {', '.join(map(repr, own))} "
                         f"{'is a setting' if len(own) == 1 else 'are settings'} of its own. Fix: set "
                         f"{' and '.join(OWN_KEYS[k] for k in own)} instead.")
    fmt = data_format or (detect_format(data) if options and data and Path(data).exists() else "")
    if not fmt:
        return
    valid = [k for k in reader_option_names(fmt) if k not in OWN_KEYS]
    unknown = [k for k in options if k not in valid]
    if unknown:
        raise ValueError(f"reader_options: the {fmt!r} reader does not take {', '.join(map(repr, unknown))}."
                         f"{did_you_mean(unknown[0], valid)} Valid: {', '.join(valid) or 'none'}.")


def read_source(data, imageset=None, *, data_format="", skip_corrupt=False, labels="", class_names=(),
                unlabelled_dirs=("unlabelled",), reader_options=None):
    """The ImageSet of a run: given, or read from ``data`` by :func:`load`, with the labels of ``labels``.

    ``labels`` (a ``path,label`` CSV) is, by :func:`~graphzoo.data.labels_csv.csv_is_label_source`, either the
    label source of a folder of plain images (:func:`~graphzoo.data.labels_csv.load_with_labels`) or labels
    *added* to a source that has its own (:func:`~graphzoo.data.labels_csv.overlay_labels`; the images it names
    are then marked in ``meta[NAMED_BY_CSV]``). Every image, labelled or not, in the order
    :func:`prepare_data` keeps them (the rows of a run's predictions.csv). ``reader_options`` go to the reader
    (checked by :func:`check_run_reader_options`)."""
    from .labels_csv import csv_is_label_source, load_with_labels, overlay_labels
    from .readers import detect_format, load

    reader_options = dict(reader_options or {})
    if imageset is None:
        check_run_reader_options(data, data_format, reader_options)
    if imageset is None and labels and csv_is_label_source(data, labels, data_format=data_format,
                                                           unlabelled_dirs=unlabelled_dirs):
        return load_with_labels(data, labels, class_names=class_names or None, skip_corrupt=skip_corrupt,
                                **reader_options)
    ds = imageset
    if ds is None:
        fmt = data_format or (detect_format(data) if Path(data).exists() else "")
        # Only the folder reader knows these options; other readers refuse unknown ones.
        extra = {"unlabelled_dirs": tuple(unlabelled_dirs)} if fmt == "folder" else {}
        if class_names and fmt == "folder":
            extra["class_names"] = list(class_names)
        ds = load(data, format=data_format or None, skip_corrupt=skip_corrupt, **extra, **reader_options)
    if labels:
        root = data if data and Path(data).is_dir() else None
        new, named, _ = overlay_labels(ds.labels, ds.filenames, ds.class_names, labels, root=root)
        ds = dataclasses.replace(ds, labels=new, meta={**ds.meta, NAMED_BY_CSV: named})
    return ds


def _add_labels(ds, targets, files, data) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, named)`` after the labels CSVs ``files`` (in order; a later file may not re-label what an
    earlier one, or the source, labelled): :func:`~graphzoo.data.labels_csv.overlay_labels` on ``targets``."""
    from .labels_csv import overlay_labels

    named, origin = np.zeros(len(targets), bool), {}
    root = data if data and Path(data).is_dir() else None
    for f in files:
        targets, more, origin = overlay_labels(targets, ds.filenames, ds.class_names, f, root=root, origin=origin)
        named |= more
    return targets, named


def _class_targets(ds, where: str) -> tuple[np.ndarray, list]:
    """(targets int64 (N,) with -1 = no label, class names); refuses fewer than two labelled classes
    and a class without any labelled image (the budget could not give it a label)."""
    targets = np.asarray(ds.labels).astype(np.int64)
    names = list(ds.class_names)
    known = targets >= 0
    present = np.unique(targets[known])
    if len(present) < 2:
        found = f"only the class {names[present[0]]!r}" if len(present) else "no labelled image"
        raise ValueError(f"{where} has {found}: a classifier needs labelled images of at least two classes; "
                         "check the labels (or the class folders) of the data")
    empty = [n for k, n in enumerate(names) if k not in set(present.tolist())]
    if empty and not known.all():
        raise ValueError(f"{where}: the class(es) {empty} have no labelled image. Fix: label at least one image "
                         "of each class, or leave the class out.")
    return targets, names


def prepare_data(
    data: str = "",
    *,
    imageset=None,
    data_format: str = "",
    task: str = "auto",
    split: str = "auto",
    split_fractions=(0.7, 0.1, 0.2),
    label_fraction: float = 0.2,
    labels_per_class: int = 0,
    val_labels: str = "budget",
    seed: int = 0,
    image_size: int = 0,
    in_chans: int = 0,
    skip_corrupt: bool = False,
    labels: str = "",
    class_names=(),
    unlabelled_dirs=("unlabelled",),
    holdout: bool = True,
    add_labels=(),
    data_in_memory: str = "auto",
    reader_options=None,
) -> PreparedData:
    """Load ``data`` (or use ``imageset``), split it and draw the label budget.

    Parameters
    ----------
    data : dataset path (any format :func:`graphzoo.data.load` detects); ignored with ``imageset``.
    imageset : an :class:`~graphzoo.data.ImageSet` already in memory.
    task : "multilabel" uses the set's multi-hot labels; "multiclass" / "auto" its class labels.
    split : "patient", "source", "random" or "auto" (patient where ids exist, else the file's own
        split if it has a test part, else random); ``split_fractions``: train / val / test.
    label_fraction, labels_per_class : the label budget of the training (and, with
        ``val_labels="budget"``, validation) part; ``labels_per_class`` wins when non-zero. A source
        with images that have no label is a real partially labelled collection: the budget is then
        not drawn and every label it has is used (the simulated budget is for fully labelled sets).
    seed : the split's and the budget's seed.
    image_size, in_chans : resize to a square side / convert to 1 or 3 channels (0: keep).
    skip_corrupt : leave out unreadable images (each named in a warning) instead of stopping.
    labels : a ``path,label`` CSV: the labels of a folder of plain images, or labels added to a source that has
        its own (the rule: :func:`~graphzoo.data.labels_csv.csv_is_label_source`); drawn into the split like the
        source's own labels.
    add_labels : labels CSVs applied *after* the split (``graphzoo run --init-from``): an image they label stays
        in the part it was in, so a continued run keeps its previous run's split and test images. Rows name
        images by file name or ``#<index>``; a re-label is refused (:func:`~graphzoo.data.labels_csv.overlay_labels`).
    class_names : the classes, in order (labels CSV and class folders); empty: as found.
    unlabelled_dirs : folder names the folder reader reads as unlabelled (label -1).
    holdout : False (production): no test part, every label outside validation trains; the test
        fraction goes to training (the source's own test part too).
    data_in_memory : "auto" (default), "true" or "false": hold the images in memory as one tensor, or read
        them from disk as batches need them (a :class:`~graphzoo.data.torchdata.LazyImages`, the same pixels);
        "auto" keeps a set in memory when its decoded size is at most 1 GiB (:mod:`graphzoo.data.store`).
    reader_options : a dict of options for the reader (e.g. ``{"patch_mm": 24}`` for ``mias_patches``,
        ``{"image": "patch"}`` for ``cbis_ddsm``); keys it does not take are refused, naming the valid ones.

    Images without a label in the source (multiclass target -1) are kept: they go to the training
    part, are never labelled and join the graph. The split and the budget are drawn over the
    labelled images only, so on a fully labelled set they are exactly those of earlier versions.

    An image a labels CSV names (``labels`` on a source with labels of its own, or ``add_labels``) is labelled
    wherever it is not a test image: on a fully labelled research set it joins the label budget. A row naming a
    test image can only repeat that image's label (it stays a test image and never trains): a new label there is
    impossible, as every image without a label is in the training part, and a different one is refused.

    Long: the signature and this documentation take about half of it; the steps are each a helper.
    """
    from .store import image_mode
    from .torchdata import image_store

    with image_mode(data_in_memory):
        ds = read_source(data, imageset, data_format=data_format, skip_corrupt=skip_corrupt, labels=labels,
                         class_names=class_names, unlabelled_dirs=unlabelled_dirs, reader_options=reader_options)
    where = data or "the image set"
    multilabel = task == "multilabel"
    if multilabel and (labels or add_labels):
        raise ValueError("a labels CSV gives class labels, and task=multilabel uses the multi-hot labels: "
                         "use task=multiclass with --labels / add_labels")
    if multilabel:
        if ds.multilabels is None:
            raise ValueError(f"task=multilabel but {where} has no multi-hot labels; use task=multiclass")
        targets = np.asarray(ds.multilabels).astype(np.int64)
        names = list(ds.multilabel_names or [f"label_{j}" for j in range(targets.shape[1])])
        known = np.ones(len(targets), bool)
    else:
        targets, names = _class_targets(ds, where)
        known = targets >= 0
    kn = np.flatnonzero(known)
    pids = None if ds.patient_ids is None else np.asarray(ds.patient_ids)
    source = None if ds.split is None else np.asarray(ds.split).astype(str)
    fractions = list(split_fractions)
    if not holdout:
        fractions = [fractions[0] + fractions[2], fractions[1], 0.0]
    on_known = lambda a: None if a is None else a[kn]  # noqa: E731
    how = _choose_split(split, on_known(pids), on_known(source))
    part_known = _draw_split(how, targets[kn], on_known(pids), on_known(source), fractions, seed, where)
    if not holdout:
        part_known = np.where(part_known == "test", "train", part_known)
    part = np.full(len(targets), "train", dtype=np.result_type(part_known.dtype, np.dtype("<U8")))
    part[kn] = part_known
    if how == "patient" and len(kn) < len(targets):
        # A patient's images never straddle parts: an image without a label of a validation or test
        # patient is predicted, but never trained on, suggested for labelling or scored.
        held = np.unique(pids[kn][part_known != "train"])
        unl = np.flatnonzero(~known)
        part[unl[np.isin(pids[unl], held)]] = EXCLUDED
    if len(kn) < len(targets):
        # A real partially labelled collection: every label it has trains (or validates / tests) the
        # model; the simulated budget (label_fraction, labels_per_class) is for fully labelled sets.
        label_fraction, labels_per_class = 1.0, 0
    labelled = np.zeros(len(targets), bool)
    labelled[kn] = _draw_budget(targets[kn], part_known, on_known(pids), label_fraction=label_fraction,
                                labels_per_class=labels_per_class, val_labels=val_labels, seed=seed,
                                n_classes=None if multilabel else len(names))
    named = np.array(ds.meta.get(NAMED_BY_CSV, np.zeros(len(targets), bool)), dtype=bool)
    if add_labels:
        targets, more = _add_labels(ds, targets, list(add_labels), data)
        named |= more
    # The split is not redrawn for added labels: an image a CSV labels trains (or validates) where it is.
    # One of a validation / test patient ("excluded") stays unused: it must not train (its patient is held out).
    labelled |= named & np.isin(part, ("train", "val"))
    tensor = image_store(ds.images, size=image_size or None, in_chans=in_chans or None)
    filenames = None if ds.filenames is None else np.asarray(ds.filenames)
    n_unlabelled = 0 if multilabel else int((targets < 0).sum())
    return PreparedData(tensor, targets, part, labelled, names, multilabel, filenames, pids, how,
                        n_unlabelled_source=n_unlabelled)


def label_counts(d) -> dict:
    """Where the source's labels went: training graph, validation, test, hidden by the budget.

    ``held_out_for_evaluation`` = validation + test labels, which never reach the graph.
    """
    truth = d.has_truth
    train = d.split == "train"
    n_val, n_test = int((d.labelled & (d.split == "val")).sum()), int((truth & (d.split == "test")).sum())
    return {"n_labels_source": int(truth.sum()), "n_unlabelled_source": int(d.n_unlabelled_source),
            "n_labels_training": int((d.labelled & train).sum()), "n_labels_val": n_val, "n_labels_test": n_test,
            "held_out_for_evaluation": n_val + n_test,
            "hidden_by_budget": int((truth & ~d.labelled & (d.split != "test")).sum())}


def labels_line(d) -> str:
    """The stderr line that says how many labels the run trains on and how many evaluation holds back."""
    c = label_counts(d)
    line = (f"labels: {c['n_labels_source']} in the source ({c['n_unlabelled_source']} images without one); "
            f"{c['n_labels_training']} train the graph, evaluation holds back {c['held_out_for_evaluation']} "
            f"({c['n_labels_val']} validation, {c['n_labels_test']} test)")
    if c["hidden_by_budget"]:
        line += f"; the label budget hides {c['hidden_by_budget']} (label_fraction / labels_per_class)"
    elif c["n_unlabelled_source"]:
        line += "; a partially labelled source: every label is used (the label budget is not applied)"
    return line
