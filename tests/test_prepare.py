"""graphzoo.data.prepare and graphzoo.data.labels_csv: partially labelled data in (images without a
label join training and the graph), the unchanged simulated budget, no-holdout, and the labels CSV."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from conftest import write_png

from graphzoo.data import prepare_data
from graphzoo.data.types import ImageSet
from graphzoo.datasets import MALARIA_DEMO

pytestmark = pytest.mark.usefixtures("private_cache")


def split_hash(d) -> str:
    return hashlib.sha1(d.split.astype("U5").tobytes() + np.packbits(d.labelled).tobytes()).hexdigest()


# Recorded with the code before partially labelled input existed (commit b38a9cf): a fully labelled
# set must keep exactly the same split and labelled mask for the same seed.
BEFORE = {(0, 0.2): "0de741110ccc247909c9690772030296165a503e", (0, 0.05): "f08eb6302acbedd8a301b112f0f28a97672f0be9",
          (3, 0.2): "aa960a10163bd6a0c389b75216e1db634bdbb06a", (3, 0.05): "5fab27caf4f15f3ad562e933c8bddae4d7112eba"}


@pytest.mark.parametrize("seed,fraction", sorted(BEFORE))
def test_simulated_budget_unchanged_on_the_demo_set(seed, fraction):
    d = prepare_data(str(MALARIA_DEMO), seed=seed, label_fraction=fraction)
    assert d.n_unlabelled_source == 0 and d.split_source == "patient"
    assert split_hash(d) == BEFORE[seed, fraction]


def cells(n=300, seed=0, unlabelled=0.0) -> ImageSet:
    """Random 8x8 images, two classes, 30 patients; a share of the labels set to -1."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    if unlabelled:
        labels = np.where(rng.random(n) < unlabelled, -1, labels)
    return ImageSet(rng.integers(0, 256, (n, 8, 8), dtype=np.uint8), labels, ["a", "b"],
                    patient_ids=np.array([f"p{i // 10}" for i in range(n)]),
                    filenames=np.array([f"img{i}.png" for i in range(n)]))


def test_images_without_a_label_join_training_and_never_the_budget():
    ds = cells(unlabelled=0.6)
    unl = ds.labels < 0
    d = prepare_data(imageset=ds, seed=1, label_fraction=0.5)
    assert len(d.targets) == len(ds) and d.n_unlabelled_source == unl.sum()
    assert (d.split[unl] == "train").all() and not d.labelled[unl].any() and (d.targets[unl] == -1).all()
    assert not d.has_truth[unl].any() and not d.graph_labels[unl].any()
    # The split is drawn over the labelled images alone: the same as on the set without them. A real
    # partially labelled source uses every label (label_fraction=0.5 is not drawn on it).
    kept = ImageSet(ds.images[~unl], ds.labels[~unl], ds.class_names, patient_ids=ds.patient_ids[~unl],
                    filenames=ds.filenames[~unl])
    alone = prepare_data(imageset=kept, seed=1, label_fraction=1.0)
    np.testing.assert_array_equal(d.split[~unl], alone.split)
    np.testing.assert_array_equal(d.labelled[~unl], alone.labelled)
    assert d.labelled[~unl & (d.split == "train")].all()


def test_npz_with_minus_one(tmp_path):
    ds = cells(unlabelled=0.5)
    path = tmp_path / "partial.npz"
    np.savez(path, images=ds.images, labels=ds.labels, class_names=np.array(ds.class_names),
             patient_ids=ds.patient_ids)
    d = prepare_data(str(path), seed=0, label_fraction=1.0)
    assert d.n_unlabelled_source == (ds.labels < 0).sum() > 0
    known = ds.labels >= 0
    assert d.labelled[known & (d.split != "test")].all() and not d.labelled[~known].any()
    assert set(d.split[~known]) == {"train"}


def test_a_class_without_any_label_is_refused():
    ds = cells(unlabelled=0.3)
    ds.labels[ds.labels == 1] = -1
    ds.labels[0] = 1  # only one image of class b labelled ...
    ds.class_names = ["a", "b", "c"]  # ... and none of class c
    with pytest.raises(ValueError, match=r"class\(es\) \['c'\] have no labelled image"):
        prepare_data(imageset=ds)


def test_no_holdout_has_no_test_part():
    ds = cells(unlabelled=0.4)
    d = prepare_data(imageset=ds, seed=2, label_fraction=1.0, holdout=False)
    assert not (d.split == "test").any() and (d.split == "val").any()
    known = ds.labels >= 0
    assert d.labelled[known].all()  # every label trains or validates


# ------------------------------------------------------------------ a folder plus a labels CSV


@pytest.fixture
def flat(tmp_path):
    """tmp/imgs/{s1,s2}/*.png (10 images, any layout) and a labels CSV beside it."""
    rng = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for i in range(10):
        write_png(root / f"s{i % 2}" / f"c{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    return root


def write_csv(path, text):
    path.write_text(text)
    return path


def test_labels_csv(flat, tmp_path):
    from graphzoo.data.labels_csv import load_with_labels

    csv = write_csv(tmp_path / "labels.csv", "path,label\ns0/c0.png,dog\n./s1/c1.png,cat\ns0/c2.png,\n"
                    "s1/c3.png,dog\ns1/c3.png,dog\n")
    ds = load_with_labels(flat, csv)
    lab = dict(zip(ds.filenames.tolist(), ds.labels.tolist()))
    assert ds.class_names == ["cat", "dog"] and len(ds) == 10
    assert lab == {**{f"s{i % 2}/c{i}.png": -1 for i in range(10)}, "s0/c0.png": 1, "s1/c1.png": 0, "s1/c3.png": 1}
    rows = "".join(f"s{i % 2}/c{i}.png,{'dog' if i % 2 else 'cat'}\n" for i in range(6))
    csv = write_csv(tmp_path / "more.csv", "path,label\n" + rows)
    d = prepare_data(str(flat), labels=str(csv), class_names=["dog", "cat"], label_fraction=1.0,
                     split_fractions=[0.5, 0, 0.5])
    assert d.names == ["dog", "cat"] and d.n_unlabelled_source == 4 and len(d.targets) == 10
    assert (d.split[d.targets < 0] == "train").all()


@pytest.mark.parametrize("text,options,match", [
    ("path,label\ns0/c0.png,dog\nnope.png,cat\ns1/c1.png,cat\ns0/gone.png,dog\n", {},
     r"rows naming files that are not images .*line 3: nope.png; line 5: s0/gone.png"),
    ("path,label\ns0/c0.png,dog\ns1/c1.png,cat\ns0/c0.png,cat\n", {},
     r"labelled twice with different labels \(lines 2 and 4: s0/c0.png is 'dog' and 'cat'\)"),
    ("path,label\ns0/c0.png,dog\ns1/c1.png,cta\n", {"class_names": ["cat", "dog"]},
     r"not among the classes \['cat', 'dog'\] \(line 3: 'cta'\)"),
    ("path,label\ns0/c0.png,dog\ns1/c1.png,cat\n", {"class_names": ["cat", "dog", "bird"]},
     r"class\(es\) \['bird'\] have no labelled image"),
    ("file,class\ns0/c0.png,dog\n", {}, r"header must name the columns path,label"),
    ("path,label\n../c0.png,dog\n", {}, r"outside the image folder .*line 2"),
])
def test_labels_csv_bad_input(flat, tmp_path, text, options, match):
    from graphzoo.data.labels_csv import load_with_labels

    csv = write_csv(tmp_path / "labels.csv", text)
    before = {p: p.read_bytes() for p in [csv, *flat.rglob("*")] if p.is_file()}
    with pytest.raises(ValueError, match=match):
        load_with_labels(flat, csv, **options)
    assert {p: p.read_bytes() for p in [csv, *flat.rglob("*")] if p.is_file()} == before  # nothing overwritten
