"""What a run records about its data, and the checks made against that record.

A new run writes its split (``split.npz`` with the data's fingerprint, and ``split.csv`` for people,
:func:`write_split`); ``--resume`` refuses data that changed since (:func:`check_same_data`), and
``--init-from`` a split that differs from the continued run's (:func:`check_same_split_as`).
:class:`.Trainer` calls them from :meth:`~.Trainer.start`.
"""

from __future__ import annotations

import numpy as np

from ..config import RunConfig
from ..data.splits import fingerprint
from ..rundir import RunDir

__all__ = ["data_fingerprint", "write_split", "check_same_data", "check_same_split_as"]


def data_fingerprint(data, chunk: int = 1024) -> str:
    """SHA-1 of the prepared images, labels and file names: tells a resumed run its data changed.

    The images are hashed ``chunk`` at a time (the digest of their bytes in order, as one update would
    give), so a set read lazily from disk is never all in memory."""
    import hashlib

    h = hashlib.sha1()
    for i in range(0, len(data.images), chunk):
        h.update(data.images[i : i + chunk].contiguous().numpy())
    h.update(np.ascontiguousarray(data.targets).tobytes())
    if data.filenames is not None:
        h.update(fingerprint(data.filenames).encode())
    return h.hexdigest()


def write_split(rundir: RunDir, data, cfg: RunConfig, data_sha1: str) -> None:
    """``rundir``'s split.npz (the split, labelled mask, how it was drawn, ``data_sha1``) and split.csv (one row
    per image: index, filename, patient_id, split, labelled)."""
    import csv

    from ..data import save_split

    d = data
    save_split(rundir.split, n_samples=len(d.split), labelled=d.labelled, split=d.split,
               filenames=d.filenames, how=d.split_source, label_fraction=cfg.label_fraction,
               labels_per_class=cfg.labels_per_class, val_labels=cfg.val_labels, seed=cfg.seed,
               data_sha1=data_sha1)
    with open(rundir.split_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "filename", "patient_id", "split", "labelled"])
        for i in range(len(d.split)):
            w.writerow([i, "" if d.filenames is None else d.filenames[i],
                        "" if d.patient_ids is None else d.patient_ids[i], d.split[i], int(d.labelled[i])])


def check_same_data(rundir: RunDir, data, data_sha1: str) -> None:
    """--resume after the data changed would mix two datasets in one run: refuse, naming what changed."""
    from ..data import load_split

    saved = load_split(rundir.split)
    d = data
    changed = []
    if saved["n_samples"] != len(d.split):
        changed.append(f"the number of images ({saved['n_samples']} -> {len(d.split)})")
    else:
        if d.filenames is not None and saved["fingerprint"] not in (None, fingerprint(d.filenames)):
            changed.append("the file names")
        sha = saved["params"].get("data_sha1")
        if sha is not None and sha != data_sha1:
            changed.append("the images or labels")
        if saved["split"] is not None and (saved["split"] != d.split).any():
            changed.append("the train / val / test split")
        if saved["labelled"] is not None and (saved["labelled"] != d.labelled).any():
            changed.append("the labelled images")
    if changed:
        raise ValueError(f"--resume refused: the data changed since {rundir} started ({', '.join(changed)}); "
                         "restore the original data, or start again with --overwrite")


def check_same_split_as(previous: RunDir, data) -> None:
    """``--init-from``: the continued run must keep the split of the run it continues, or that run's
    test images (whose labels it started from weights trained next to) could train this one."""
    from ..data import load_split

    saved = load_split(previous.split, filenames=data.filenames)  # refuses other images or names
    moved = int((saved["split"] != data.split).sum())
    if moved:
        test_now_train = int(((saved["split"] == "test") & (data.split != "test")).sum())
        raise ValueError(
            f"--init-from {previous}: the split differs from that run's for {moved} images ({test_now_train} of "
            "its test images would train or validate here), because its label source changed; keep that "
            "run's --labels file as it was and put new labels in a separate CSV (graphzoo label writes "
            f"{previous.path / 'labels.csv'}), or start a new run without --init-from")
