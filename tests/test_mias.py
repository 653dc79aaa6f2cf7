"""graphzoo.data.mias: the Info.txt parser and the raw films against our npz.

Real data comes from ``$GRAPHZOO_DATA`` (default: the shared data folder beside the repository);
tests that need it skip with the path they looked for.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from conftest import data_path, quiet_load

import graphzoo.data as gd

pytestmark = pytest.mark.usefixtures("private_cache")


def test_mias_raw_sample_matches_npz():
    raw = data_path("mias", "raw_sample")
    with pytest.warns(gd.DataWarning, match="patient ids derived"):
        ref = gd.load(data_path("mias", "mini_mias_256.npz"))
    ds = quiet_load(raw, size=256, allow_missing=True)  # 9 of the 322 films in Info.txt
    assert gd.detect_format(raw) == "mias"
    assert ds.images.shape == (9, 256, 256)
    assert Counter(ds.labels.tolist()) == {0: 3, 1: 3, 2: 3}
    idx = [int(np.flatnonzero(ref.filenames == f)[0]) for f in ds.filenames]
    np.testing.assert_array_equal(ds.labels, ref.labels[idx])
    for key in (
        "background_tissue",
        "abnormality_class",
        "centre_x_1024",
        "centre_y_1024_from_bottom",
        "radius_1024",
        "n_abnormalities",
    ):
        np.testing.assert_array_equal(ds.meta[key], ref.meta[key][idx], err_msg=key)
    for a, b in zip(ds.meta["annotations_json"], ref.meta["annotations_json"][idx]):
        assert json.loads(a) == json.loads(b)
    # Our area filter vs the npz's Lanczos: the same films, up to resampling.
    r = np.corrcoef(ds.images.reshape(9, -1).astype(float), ref.images[idx].reshape(9, -1).astype(float))
    assert np.diag(r[:9, 9:]).min() > 0.99
    assert ds.patient_ids.tolist() == [f"mias_{(int(f[3:]) + 1) // 2:03d}" for f in ds.filenames]
    # the npz has no patient ids: derived from the film names the same way (both breasts together)
    np.testing.assert_array_equal(ref.patient_ids[idx], ds.patient_ids)
    assert len(set(ref.patient_ids)) == 161


def test_mias_info_parser_handles_quirks(tmp_path):
    info = tmp_path / "Info.txt"
    info.write_text(
        "header prose\nmdb005 F CIRC B 477 133 30\nmdb005 F CIRC B 500 168 26\nmdb059 F CIRC B\n"
        "mdb216 D CALC M *NOTE 3* \nmdb003 D NORM \n"
    )
    films = gd.mias.parse_info(info)
    assert len(films["mdb005"]) == 2 and films["mdb005"][1]["radius"] == 26
    assert films["mdb059"][0]["x"] == -1 and films["mdb216"][0]["severity"] == "M"
    assert films["mdb003"][0]["severity"] == ""
    info.write_text("mdb001 G CIRC X 1 2 3\n")
    with pytest.raises(ValueError, match="Info.txt:1: severity 'X'"):
        gd.mias.parse_info(info)


def test_films_npz_gets_patient_ids_from_the_mias_reader(tmp_path):
    f = tmp_path / "films.npz"
    names = np.array(["mdb001", "mdb002", "mdb003", "mdb004"])
    np.savez(f, images=np.zeros((4, 4, 4), np.uint8), labels=np.array([0, 1, 0, 2]),
             class_names=np.array(["normal", "benign", "malignant"]), filenames=names)
    assert gd.detect_format(f) == "mias"
    with pytest.warns(gd.DataWarning, match="patient ids derived"):
        ds = gd.load(f)
    assert ds.patient_ids.tolist() == ["mias_001", "mias_001", "mias_002", "mias_002"]
    plain = gd.load(f, format="npz")  # the generic reader knows nothing of MIAS
    assert plain.patient_ids is None and plain.source.startswith("npz:")
    with pytest.raises(ValueError, match="apply to the .pgm files only"):
        gd.load(f, size=64)
    np.savez(f, images=np.zeros((2, 4, 4), np.uint8), labels=np.array([0, 1]), filenames=np.array(["a", "b"]))
    assert gd.detect_format(f) == "npz"
    with pytest.raises(ValueError, match="no 'filenames' of mini-MIAS films"):
        gd.load(f, format="mias")
