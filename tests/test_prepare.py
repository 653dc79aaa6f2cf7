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
    # in training, or "excluded" with their validation / test patient: never in those parts themselves
    assert set(d.split[unl]) <= {"train", "excluded"} and not d.labelled[unl].any() and (d.targets[unl] == -1).all()
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
    assert set(d.split[~known]) <= {"train", "excluded"}


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


def test_labels_csv_patient_column_groups_the_split(tmp_path):
    from graphzoo.data.labels_csv import load_with_labels

    rng = np.random.default_rng(1)
    root = tmp_path / "ward"
    for i in range(60):
        write_png(root / f"img{i:02d}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    # 40 labelled images of 10 patients, 4 each; 10 unlabelled with the id of a labelled patient, 10 without a row
    rows = [f"img{i:02d}.png,{'ab'[i % 2]},p{i // 4}" for i in range(40)]
    rows += [f"img{i:02d}.png,,p{i - 40}" for i in range(40, 50)]
    csv = write_csv(tmp_path / "labels.csv", "path,label,patient_id\n" + "\n".join(rows) + "\n")
    ds = load_with_labels(root, csv)
    assert ds.patient_ids.tolist() == [f"p{i // 4}" for i in range(40)] + [f"p{i}" for i in range(10)] + [""] * 10
    for seed in range(3):
        d = prepare_data(str(root), labels=str(csv), seed=seed, split_fractions=[0.6, 0.2, 0.2])
        assert d.split_source == "patient"
        known = d.targets >= 0
        for pid in np.unique(d.patient_ids[known]):  # a patient's labelled images on one side only
            assert len(set(d.split[known & (d.patient_ids == pid)])) == 1
        held = set(d.patient_ids[known & (d.split != "train")])
        unl = ~known
        # an unlabelled image of a held-out patient is predicted but never trained on; one without an id trains
        assert (d.split[unl & np.isin(d.patient_ids, list(held))] == "excluded").all()
        assert (d.split[unl & ~np.isin(d.patient_ids, list(held))] == "train").all()


def test_labels_csv_patient_column_needs_an_id_on_every_labelled_row(flat, tmp_path):
    from graphzoo.data.labels_csv import load_with_labels

    csv = write_csv(tmp_path / "labels.csv", "path,label,patient\ns0/c0.png,dog,p1\ns1/c1.png,cat,\n"
                    "s0/c2.png,,\ns1/c3.png,dog\n")
    with pytest.raises(ValueError, match=r"labelled rows without a patient \(line 3; line 5\)"):
        load_with_labels(flat, csv)


# ------------------------------------------------------------------ labels added to a source with its own


def npz_with_gaps(tmp_path, n=300):
    """cells() saved as our npz with 60 % of the labels -1 (file names img<i>.png, 30 patients)."""
    ds = cells(n=n, unlabelled=0.6)
    path = tmp_path / "gaps.npz"
    np.savez(path, images=ds.images, labels=ds.labels, class_names=np.array(ds.class_names),
             patient_ids=ds.patient_ids, filenames=ds.filenames)
    return path, ds


def test_a_labels_csv_adds_labels_to_an_npz_with_gaps_by_file_name_and_index(tmp_path):
    path, ds = npz_with_gaps(tmp_path)
    base = prepare_data(str(path), seed=1)
    unl = np.flatnonzero((ds.labels < 0) & (base.split == "train"))  # not of a held-out patient ("excluded")
    a, b, c = unl[:3]
    unl = np.flatnonzero(ds.labels < 0)
    labelled_one = int(np.flatnonzero(ds.labels >= 0)[0])
    own = ds.class_names[ds.labels[labelled_one]]
    csv = write_csv(tmp_path / "labels.csv", "path,label,index,labelled_at\n"
                    f"img{a}.png,a,{a},2026-11-29T22:51:03Z\n#{b},b,{b},2026-11-29T22:51:05Z\n"
                    f"img{c}.png,,{c},\nimg{labelled_one}.png,{own},,\n")
    d = prepare_data(str(path), seed=1, labels=str(csv))  # a fresh run: the split is drawn over the new labels too
    assert (d.targets[a], d.targets[b], d.targets[c]) == (0, 1, -1) and d.n_unlabelled_source == len(unl) - 2
    assert d.labelled[[a, b]].sum() == (d.split[[a, b]] != "test").sum()
    assert base.n_unlabelled_source == len(unl)
    # add_labels (a continued run): the split of the run before is kept, the two images train with their labels
    cont = prepare_data(str(path), seed=1, add_labels=[str(csv)])
    np.testing.assert_array_equal(cont.split, base.split)
    assert (cont.labelled & ~base.labelled).sum() == 2 and cont.labelled[[a, b]].all()
    assert (cont.split[[a, b]] == "train").all() and cont.graph_labels.sum() == base.graph_labels.sum() + 2


def test_labels_added_to_a_fully_labelled_set_join_its_budget_outside_the_test_part(tmp_path):
    ds = cells(n=200)
    base = prepare_data(imageset=ds, seed=0, label_fraction=0.1)
    hidden = np.flatnonzero(~base.labelled & (base.split == "train"))[:5]
    test = np.flatnonzero(base.split == "test")[:2]
    rows = "".join(f"img{i}.png,{ds.class_names[ds.labels[i]]}\n" for i in [*hidden, *test])
    d = prepare_data(imageset=ds, seed=0, label_fraction=0.1, add_labels=[str(write_csv(tmp_path / "l.csv",
                                                                                       "path,label\n" + rows))])
    np.testing.assert_array_equal(d.split, base.split)
    assert d.labelled[hidden].all() and not d.labelled[test].any()  # a test image never trains
    assert d.labelled.sum() == base.labelled.sum() + 5


@pytest.mark.parametrize("rows,match", [
    ("img{u}.png,a\nimg{u}.png,b\n", r"images given two different labels \(lines 2 and 3: img\d+.png is 'a' and 'b'"),
    ("img{u}.png,zebra\n", r"class names that are not among \['a', 'b'\] \(line 2: 'zebra'\)"),
    ("img{u}.png,a\nnope.png,a\n#100000,b\n",
     r"rows naming no image \(line 3: nope.png names no image of the data; line 4: #100000 is not an image index"),
    ("#{k},{other}\n", r"re-labels of images that already have another label \(line 2: #\d+ is '[ab]' in the data, "
                       r"the row says '[ab]'\)"),
    ("img{u}.png\n", r"header must name the columns path,label"),
])
def test_bad_added_labels_are_refused_naming_the_lines(tmp_path, rows, match):
    path, ds = npz_with_gaps(tmp_path)
    u, k = int(np.flatnonzero(ds.labels < 0)[0]), int(np.flatnonzero(ds.labels >= 0)[0])
    other = ds.class_names[1 - ds.labels[k]]
    header = "path\n" if "header" in match else "path,label\n"
    csv = write_csv(tmp_path / "bad.csv", header + rows.format(u=u, k=k, other=other))
    with pytest.raises(ValueError, match=match):
        prepare_data(str(path), add_labels=[str(csv)])


def test_a_second_labels_file_may_not_relabel_what_the_first_labelled(tmp_path):
    path, ds = npz_with_gaps(tmp_path)
    u = int(np.flatnonzero(ds.labels < 0)[0])
    one = write_csv(tmp_path / "one.csv", f"path,label\nimg{u}.png,a\n")
    two = write_csv(tmp_path / "two.csv", f"path,label,index\n#{u},b,{u}\n")
    with pytest.raises(ValueError, match=rf"two.csv: .*line 2: #{u} is 'a' in .*one.csv line 2, the row says 'b'"):
        prepare_data(str(path), add_labels=[str(one), str(two)])


def test_labels_on_class_folders_add_to_them_and_on_other_folders_are_the_labels(tmp_path):
    from graphzoo.data.labels_csv import csv_is_label_source

    rng = np.random.default_rng(0)
    root = tmp_path / "cls"
    for i in range(12):
        write_png(root / ("dog", "cat", "unlabelled")[i % 3] / f"c{i}.png", rng.integers(0, 256, (8, 8), np.uint8))
    csv = write_csv(tmp_path / "l.csv", "path,label\nunlabelled/c2.png,cat\nc5.png,dog\nc0.png,dog\n")
    assert not csv_is_label_source(root, csv)
    d = prepare_data(str(root), labels=str(csv), label_fraction=1.0, split="random", split_fractions=[0.5, 0.5, 0])
    by_name = dict(zip(d.filenames.tolist(), d.targets.tolist()))
    assert by_name["unlabelled/c2.png"] == d.names.index("cat") and by_name["unlabelled/c5.png"] == d.names.index("dog")
    assert d.n_unlabelled_source == 2  # c8, c11 are left; the class folders keep their labels
    conflict = write_csv(tmp_path / "c.csv", "path,label\ndog/c0.png,cat\n")
    with pytest.raises(ValueError, match=r"line 2: dog/c0.png is 'dog' in the data, the row says 'cat'"):
        prepare_data(str(root), labels=str(conflict))
    assert csv_is_label_source(root, write_csv(tmp_path / "o.csv", "path,label\ndog/c0.png,left\n"))


def test_unlabelled_images_of_held_out_patients_never_train():
    """A patient's images never straddle parts: an image without a label of a validation or test patient
    is 'excluded' (predicted, never trained on, suggested or scored), not a training image."""
    ds = cells(unlabelled=0.5)
    d = prepare_data(imageset=ds, seed=0, split="patient")
    unl = ds.labels < 0
    held = set(d.patient_ids[(d.split == "val") | (d.split == "test")])
    for pid, part, u in zip(d.patient_ids, d.split, unl):
        if u:
            assert part == ("excluded" if pid in held else "train")
    assert (d.split == "excluded").any() and not d.labelled[d.split == "excluded"].any()
    train_pids = set(d.patient_ids[d.split == "train"])
    assert not train_pids & held


def test_csv_path_matching_is_strict_where_it_could_guess_wrong(tmp_path):
    """A path with folders matches exactly (slide9/x.png is not unlabelled/x.png); a file name two images
    share names neither; a misspelt class beside class folders is an overlay (so it is refused), not a
    label source that would drop the folders' labels."""
    from graphzoo.data.labels_csv import _Finder, csv_is_label_source

    f = _Finder(["unlabelled/x1.png", "A/y.png", "scan.png", "scan.png"], 4)
    assert f.find("x1.png") == (0, None)
    assert f.find("slide9/x1.png")[0] is None
    assert f.find("scan.png")[0] is None and "several images" in f.find("scan.png")[1]
    from PIL import Image

    for d in ("A", "B", "unlabelled"):
        (tmp_path / "imgs" / d).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / d / "y.png")
    csv = tmp_path / "l.csv"
    csv.write_text("path,label\nA/y.png,A\nB/z.png,b\n")
    assert not csv_is_label_source(tmp_path / "imgs", csv, data_format="folder")
