"""graphzoo.data.chestxray14: the CSV + PNG reader against our npz, and bad CSVs.

Real data comes from ``$GRAPHZOO_DATA`` (default: the shared data folder beside the repository);
tests that need it skip with the path they looked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import data_path, quiet_load, write_png

import graphzoo.data as gd
from graphzoo.data._images import DataWarning

pytestmark = pytest.mark.usefixtures("private_cache")


def test_chestxray_raw_sample_matches_npz():
    raw = data_path("chestxray14", "raw_sample")
    ref = gd.load(data_path("chestxray14", "nih1000_64.npz"))
    with pytest.warns(DataWarning) as rec:
        ds = gd.load(raw, allow_missing=True)  # the sample holds 124 of the CSV's images
    messages = " | ".join(str(w.message) for w in rec)
    assert "different sizes" in messages and "876 of 1000 listed images" in messages
    assert gd.detect_format(raw) == "chestxray14"
    assert len(ds) == 124 and isinstance(ds.images, list)
    assert ds.multilabel_names == ref.multilabel_names
    where = {name: i for i, name in enumerate(ref.filenames)}
    checked = 0
    for img, rel, ml, lab, pid, sp in zip(ds.images, ds.filenames, ds.multilabels, ds.labels, ds.patient_ids, ds.split):
        if not rel.startswith("NIH1000"):
            assert img.shape == (128, 128) and sp == ""
            continue
        i = where[Path(rel).name]
        np.testing.assert_array_equal(img, ref.images[i])  # gray-replicated RGB came back as gray
        assert pid == ref.patient_ids[i] and sp == ref.split[i]
        assert lab == int(ml.any())
        checked += 1
    assert checked == 120
    # resizing on read makes the set stackable
    same = quiet_load(raw, size=64, allow_missing=True)
    assert same.images.shape == (124, 64, 64)
    single = quiet_load(raw, label_mode="single", size=64, allow_missing=True)
    assert single.class_names[0] == "No Finding" and len(single.class_names) == 15
    n_find = ds.multilabels.sum(1)
    np.testing.assert_array_equal(single.labels == -1, n_find > 1)


def test_chestxray_csv_bad_input(tmp_path):
    write_png(tmp_path / "images" / "00000001_000.png", np.zeros((4, 4), np.uint8))
    csv = tmp_path / "Data_Entry_2017.csv"
    csv.write_text("Image Index,Patient ID\n00000001_000.png,1\n")
    with pytest.raises(ValueError, match=r"Data_Entry_2017\.csv is missing required column\(s\) \['Finding Labels'\]"):
        gd.load(tmp_path)
    csv.write_text("Image Index,Finding Labels,Patient ID\n00000001_000.png,Cardiomegaly|Dragons,1\n")
    with pytest.raises(ValueError, match="unknown finding 'Dragons'"):
        gd.load(tmp_path)
    csv.write_text("Image Index,Finding Labels,Patient ID\n00000001_000.png,Cardiomegaly|Edema,1\n")
    (tmp_path / "train_val_list.txt").write_text("00000001_000.png\n")
    (tmp_path / "test_list.txt").write_text("")
    ds = gd.load(tmp_path)
    assert ds.split.tolist() == ["train"] and ds.labels.tolist() == [1]
    assert ds.multilabels[0].nonzero()[0].tolist() == [1, 9]


def test_missing_images_refused_when_most_are_missing(tmp_path):
    rows = "".join(f"0000000{i}_000.png,No Finding,{i}\n" for i in range(1, 5))
    (tmp_path / "Data_Entry_2017.csv").write_text("Image Index,Finding Labels,Patient ID\n" + rows)
    write_png(tmp_path / "images" / "00000001_000.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"3 of 4 listed images are not below .*allow_missing=True to load the 1"):
        gd.load(tmp_path)  # was: loaded 1 of 4 with only a warning
    assert len(quiet_load(tmp_path, allow_missing=True)) == 1
    for i in (2, 3):
        write_png(tmp_path / "images" / f"0000000{i}_000.png", np.zeros((4, 4), np.uint8))
    with pytest.warns(DataWarning, match="1 of 4 listed images are not below"):
        assert len(gd.load(tmp_path)) == 3
