"""Data preparation for a run: load → split → label budget → one uint8 image tensor.

:func:`prepare_data` takes plain keyword arguments (a run passes
``**cfg.data_options()``), so notebooks, the grid and the report draw exactly the split and
labelled mask a run drew from the same options and seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PreparedData", "prepare_data", "DATA_OPTIONS"]

# The RunConfig keys prepare_data takes (they decide the images, the split and the labelled mask).
DATA_OPTIONS = ("data", "data_format", "task", "split", "split_fractions", "label_fraction", "labels_per_class",
                "val_labels", "seed", "image_size", "in_chans", "skip_corrupt")


@dataclass
class PreparedData:
    """Everything a run needs about its images, held in memory.

    images : uint8 tensor (N, C, H, W); targets : int (N,) or 0/1 (N, L); split : str (N,) of
    "train" / "val" / "test"; labelled : bool (N,) (the label budget, in train and val);
    names : class or label names; multilabel : bool; filenames, patient_ids : str (N,) or None;
    split_source : how the split was made ("patient", "source" or "random").
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
        missing = {"train", "test"} - set(split)
        if missing:
            raise ValueError(
                f"split=source: the source split has no {sorted(missing)} part; use split=patient or random"
            )
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
        ``val_labels="budget"``, validation) part; ``labels_per_class`` wins when non-zero.
    seed : the split's and the budget's seed.
    image_size, in_chans : resize to a square side / convert to 1 or 3 channels (0: keep).
    skip_corrupt : leave out unreadable images (each named in a warning) instead of stopping.

    Images without a label in the source are dropped: they cannot be evaluated.
    """
    from .readers import load
    from .torchdata import to_image_tensor

    ds = imageset if imageset is not None else load(data, format=data_format or None, skip_corrupt=skip_corrupt)
    where = data or "the image set"
    multilabel = task == "multilabel"
    if multilabel:
        if ds.multilabels is None:
            raise ValueError(f"task=multilabel but {where} has no multi-hot labels; use task=multiclass")
        targets = np.asarray(ds.multilabels).astype(np.int64)
        names = list(ds.multilabel_names or [f"label_{j}" for j in range(targets.shape[1])])
        keep = np.ones(len(targets), bool)
    else:
        targets = np.asarray(ds.labels).astype(np.int64)
        names = list(ds.class_names)
        keep = targets >= 0
        present = np.unique(targets[keep])
        if len(present) < 2:
            found = f"only the class {names[present[0]]!r}" if len(present) else "no labelled image"
            raise ValueError(f"{where} has {found}: a classifier needs labelled images of at least two classes; "
                             "check the labels (or the class folders) of the data")
    sel = np.flatnonzero(keep)
    take = lambda a: None if a is None else np.asarray(a)[sel]  # noqa: E731
    targets = targets[sel]
    pids = take(ds.patient_ids)
    images = ds.images if keep.all() else (
        [ds.images[i] for i in sel] if isinstance(ds.images, list) else np.asarray(ds.images)[sel]
    )
    source = None if ds.split is None else np.asarray(ds.split).astype(str)[sel]

    how = _choose_split(split, pids, source)
    part = _draw_split(how, targets, pids, source, split_fractions, seed, where)
    labelled = _draw_budget(targets, part, pids, label_fraction=label_fraction, labels_per_class=labels_per_class,
                            val_labels=val_labels, seed=seed, n_classes=None if multilabel else len(names))
    tensor = to_image_tensor(images, size=image_size or None, in_chans=in_chans or None)
    return PreparedData(tensor, targets, part, labelled, names, multilabel, take(ds.filenames), pids, how)
