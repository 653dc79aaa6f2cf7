"""graphzoo.data.mias_patches / _patches: lesion-centred MIAS patches, normal tissue, skipped input, patients.

The coordinate flip is checked on real 1024 px PGMs (``$GRAPHZOO_DATA``; skipped when absent) against the
film read independently with Pillow; the rest on small synthetic films in an ``Info.txt`` folder.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import data_path, quiet_load
from PIL import Image

import graphzoo.data as gd
from graphzoo.data._patches import breast_mask, crop, normal_centres, stretch, tissue_fraction
from graphzoo.data.inspect import example_sheet, report
from graphzoo.data.mias import read_mias
from graphzoo.data.mias_patches import extract_patches

pytestmark = pytest.mark.usefixtures("private_cache")

S = 128  # synthetic film side: 1.6 mm pixels, so 32 mm patches are 20 px


def test_patch_centre_is_the_film_pixel_at_the_info_txt_centre():
    raw = data_path("mias", "raw_sample", "all-mias")
    ds = quiet_load(raw, format="mias_patches_malignancy", allow_missing=True)
    info = {}
    for line in (raw / "Info.txt").read_text(encoding="latin-1").splitlines():
        t = line.split()
        if len(t) == 7 and (raw / f"{t[0]}.pgm").is_file():
            info.setdefault(t[0], []).append((t[3], int(t[4]), int(t[5])))
    assert len(ds) == sum(len(v) for v in info.values()) > 0
    p = ds.images.shape[1]
    assert p == 160  # 32 mm of 0.2 mm pixels
    for k, (name, film) in enumerate(zip(ds.filenames, ds.meta["film"])):
        pix = np.asarray(Image.open(raw / f"{film}.pgm"))
        severity, x, y = info[film][int(name.split("lesion")[1]) - 1]
        assert ds.images[k][p // 2, p // 2] == pix[1023 - y, x]  # y counts from the bottom
        np.testing.assert_array_equal(ds.images[k], crop(pix, 1023 - y, x, p))
        assert ds.class_names[ds.labels[k]] == {"B": "benign", "M": "malignant"}[severity]


def test_tissue_fraction_and_crop_match_brute_force():
    rng = np.random.default_rng(0)
    mask = rng.random((23, 17)) < 0.6
    for side in (4, 5):
        frac = tissue_fraction(mask, side)
        for r in range(23):
            for c in range(17):
                assert frac[r, c] == pytest.approx(crop(mask.astype(float), r, c, side).mean())
    film = np.arange(30, dtype=np.uint8).reshape(5, 6)
    assert crop(film, 0, 0, 3).tolist() == [[0, 0, 0], [0, 0, 1], [0, 6, 7]]


def test_normal_centres_inside_the_breast_and_clear_of_lesions():
    mask = np.zeros((60, 60), bool)
    mask[5:55, 10:58] = True
    discs = [(20, 30, 6.0), (45, 20, 3.5)]
    side = 8
    got = normal_centres(mask, 12, side, np.random.default_rng(1), avoid=discs, min_tissue=0.95)
    assert len(got) >= 4
    rr, cc = np.mgrid[0:60, 0:60]
    for i, (r, c) in enumerate(got):
        square = np.zeros_like(mask)
        square[max(r - side // 2, 0) : r - side // 2 + side, max(c - side // 2, 0) : c - side // 2 + side] = True
        assert mask[r, c] and mask[square].sum() >= 0.95 * side * side
        for dr, dc, rad in discs:  # no pixel of the patch within the lesion's circle
            assert np.hypot(rr[square] - dr, cc[square] - dc).min() > rad
        for r2, c2 in got[i + 1 :]:  # patches of one film never overlap
            assert abs(r - r2) >= side or abs(c - c2) >= side


def _film(breast: bool) -> np.ndarray:
    """A 128 px film: a bright half-disc breast on the left (or nothing), a small film label far right."""
    film = np.full((S, S), 3, np.uint8)
    if breast:
        rr, cc = np.mgrid[0:S, 0:S]
        film[np.hypot(rr - S / 2, cc) < 50] = 120
        film[40:44, 20:24] = 250  # a bright lesion-like spot inside
    film[5:12, 118:125] = 255  # a film label: separate from the breast, never the largest component
    return film


ROWS = [  # Info.txt rows (x, y in 1024 px, origin bottom-left); the breast covers x < 400 around y = 512
    ("mdb001", "G CIRC B 176 696 30", True),  # row (1023.5 - 696) / 8 = 40, col 22: kept, benign
    ("mdb002", "G SPIC M 200 512 40", True),  # kept, malignant
    ("mdb003", "G CALC M", True),  # no centre
    ("mdb004", "G CIRC B 1100 512 20", True),  # outside the film
    ("mdb005", "G CIRC B 900 512 20", True),  # in the background
    ("mdb006", "G NORM", False),  # no breast found
    ("mdb007", "G ARCH B 100 500 20", False),  # no breast found (a lesion)
    ("mdb008", "G NORM", True),
    ("mdb009", "G NORM", True),
    ("mdb010", "G NORM", True),
]


@pytest.fixture
def synthetic(tmp_path):
    lines = ["header prose", *(f"{ref} {rest}" for ref, rest, _ in ROWS)]
    (tmp_path / "Info.txt").write_text("\n".join(lines) + "\n")
    for ref, _, breast in ROWS:
        Image.fromarray(_film(breast)).save(tmp_path / f"{ref}.pgm")
    return tmp_path


def test_skips_are_counted_by_reason_and_shown(synthetic):
    films = quiet_load(synthetic, format="mias")
    ds, skips = extract_patches(films, normal_per_film=2, min_tissue=0.9)
    assert {k: sorted(v) for k, v in skips.items() if v} == {
        "no_centre": ["mdb003"], "outside": ["mdb004"], "background": ["mdb005"], "no_breast": ["mdb006", "mdb007"]}
    assert ds.filenames.tolist() == ["mdb001_lesion1", "mdb002_lesion1", "mdb008_normal1", "mdb008_normal2",
                                     "mdb009_normal1", "mdb009_normal2", "mdb010_normal1", "mdb010_normal2"]
    assert ds.labels.tolist() == [1, 1, 0, 0, 0, 0, 0, 0] and ds.images.shape == (8, 20, 20)
    assert (ds.meta["row"][0], ds.meta["col"][0]) == (40, 22) and ds.images[0][10, 10] == 250
    mal, _ = extract_patches(films, labels="malignancy")
    assert mal.class_names == ["benign", "malignant"] and mal.labels.tolist() == [0, 1]
    with pytest.warns(gd.DataWarning) as caught:
        loaded = gd.load(synthetic, format="mias_patches")
    text = report(loaded)
    for phrase in ("1 × lesion without a centre", "1 × lesion centre outside the film",
                   "1 × lesion centre outside the breast mask", "2 × film with no breast tissue found"):
        assert phrase in text and any(phrase in str(w.message) for w in caught)
    sheet = np.asarray(example_sheet(loaded, per_class=4, tile=20))  # a row per class: 2 lesions, then normals
    assert sheet.shape == (2 * (20 + 16), 4 * 20, 3)
    np.testing.assert_array_equal(sheet[16 + 36 : 36 + 36, :20, 0], loaded.images[loaded.labels == 1][0])
    assert (sheet[36 + 16 :, 40:, :] == 255).all()  # only 2 abnormal patches: the rest of that row is blank


def test_normal_patches_lie_inside_the_mask(synthetic):
    ds, _ = extract_patches(quiet_load(synthetic, format="mias"), normal_per_film=3, min_tissue=0.9)
    normal = ds.labels == 0
    assert normal.sum() == 9
    mask = breast_mask(_film(True))
    for k in np.flatnonzero(normal):
        r, c = ds.meta["row"][k], ds.meta["col"][k]
        assert mask[r, c] and crop(mask, r, c, 20).mean() >= 0.9 and ds.meta["tissue_fraction"][k] >= 0.9
        np.testing.assert_array_equal(ds.images[k], crop(_film(True), r, c, 20))


def test_patches_of_a_woman_never_straddle_the_split(synthetic, tmp_path):
    ds = quiet_load(synthetic, format="mias_patches", normal_per_film=3)
    pids = dict(zip(ds.filenames, ds.patient_ids))
    assert pids["mdb001_lesion1"] == pids["mdb002_lesion1"] and pids["mdb009_normal1"] == pids["mdb010_normal3"]
    assert pids["mdb008_normal1"] != pids["mdb009_normal1"]
    # 16 women: a lesion on the left film, the right film normal (one normal patch, the default).
    many = tmp_path / "many"
    many.mkdir()
    rows = [f"mdb{i:03d} " + ("G NORM" if i % 2 == 0 else "G CIRC B 176 696 30") for i in range(1, 33)]
    (many / "Info.txt").write_text("\n".join(rows) + "\n")
    for i in range(1, 33):
        Image.fromarray(_film(True)).save(many / f"mdb{i:03d}.pgm")
    # "FORMAT:PATH" is how a config's data_format reaches the reader (prepare_data -> load).
    d = quiet_load(f"mias_patches:{many}")
    assert len(d) == 16 * 2 and len(np.unique(d.patient_ids)) == 16
    for seed in range(3):
        split = gd.patient_split(d.labels, d.patient_ids, (0.5, 0.25, 0.25), seed)
        part = {}
        for pid, s in zip(d.patient_ids, split):
            assert part.setdefault(pid, s) == s
        assert sorted(set(part.values())) == ["test", "train", "val"]


def test_bad_options_name_the_fix(synthetic):
    films = quiet_load(synthetic, format="mias")
    with pytest.raises(ValueError, match="labels must be one of"):
        extract_patches(films, labels="birads")
    with pytest.raises(ValueError, match="larger patch_mm"):
        extract_patches(films, patch_mm=4)
    assert json.loads(films.meta["annotations_json"][2])[0][3] == -1
    assert len(read_mias(synthetic)) == len(ROWS)


def test_stretch_maps_the_reference_percentiles_to_0_and_255():
    rng = np.random.default_rng(3)
    ref = rng.integers(40, 200, 500)
    pix = rng.integers(0, 256, (7, 9)).astype(np.uint8)
    lo, hi = np.percentile(ref, 1), np.percentile(ref, 99)
    want = [[min(max(round(255 * (v - lo) / (hi - lo)), 0), 255) for v in r] for r in pix.astype(float)]
    np.testing.assert_array_equal(stretch(pix, ref), want)
    for flat in (np.full(10, 77), np.array([])):  # no range to stretch: unchanged
        np.testing.assert_array_equal(stretch(pix, flat), pix)


def _first_films(films, n):
    """The first ``n`` films of a MIAS ImageSet (the patch tests need only a few)."""
    return dataclasses.replace(films, images=films.images[:n], labels=films.labels[:n], split=films.split[:n],
                               patient_ids=films.patient_ids[:n], filenames=films.filenames[:n],
                               meta={k: v[:n] for k, v in films.meta.items()})


@pytest.fixture(scope="module")
def real_films():
    return _first_films(quiet_load(data_path("mias", "extra", "mini_mias_512.npz"), format="mias"), 14)


def test_contrast_options_on_the_real_films(real_films):
    base, _ = extract_patches(real_films)
    film, _ = extract_patches(real_films, contrast="film")
    patch, _ = extract_patches(real_films, contrast="patch")
    assert (base.labels == 1).sum() >= 3 and (base.labels == 0).sum() >= 3
    for ds in (film, patch):  # the same patches, only grey levels change
        assert ds.filenames.tolist() == base.filenames.tolist() and ds.patient_ids.tolist() == base.patient_ids.tolist()
        assert ds.meta["row"].tolist() == base.meta["row"].tolist()
    for ref in np.unique(base.meta["film"]):  # "film": one increasing grey-level map per film
        k = base.meta["film"] == ref
        order = np.argsort(base.images[k].ravel(), kind="stable")
        assert (np.diff(film.images[k].ravel()[order].astype(int)) >= 0).all()
        img = real_films.images[real_films.filenames.tolist().index(ref)]
        mask = breast_mask(img)
        lo, hi = np.percentile(stretch(img, img[mask])[mask], [1, 99])
        assert lo <= 1 and hi >= 254
    for k in range(len(base)):  # "patch": each patch's own breast pixels span 0..255
        r, c = base.meta["row"][k], base.meta["col"][k]
        img = real_films.images[real_films.filenames.tolist().index(base.meta["film"][k])]
        inside = crop(breast_mask(img), r, c, base.images.shape[1])
        lo, hi = np.percentile(patch.images[k][inside], [1, 99])
        assert lo <= 1 and hi >= 254


def test_many_normal_patches_per_film_on_the_real_films(real_films):
    one, _ = extract_patches(real_films)
    four, _ = extract_patches(real_films, normal_per_film=4)
    p = four.images.shape[1]
    assert (four.labels == 1).sum() == (one.labels == 1).sum()
    first = {n: i for i, n in enumerate(four.filenames)}
    for i in np.flatnonzero(one.labels == 0):  # the first normal patch of a film is the same as with one per film
        np.testing.assert_array_equal(four.images[first[one.filenames[i]]], one.images[i])
    for ref in np.unique(four.meta["film"][four.labels == 0]):
        k = np.flatnonzero(four.meta["film"] == ref)
        assert len(k) == 4 and (four.meta["tissue_fraction"][k] >= 0.9).all()
        assert len(set(four.patient_ids[k])) == 1
        for a in range(len(k)):
            for b in range(a + 1, len(k)):
                rows, cols = four.meta["row"][k[[a, b]]], four.meta["col"][k[[a, b]]]
                assert abs(rows[0] - rows[1]) >= p or abs(cols[0] - cols[1]) >= p


def test_bad_option_values_are_refused(synthetic):
    films = quiet_load(synthetic, format="mias")
    for kwargs, match in [({"contrast": "clahe"}, "contrast must be one of"),
                          ({"normal_per_film": 0}, "normal_per_film must be an integer >= 1"),
                          ({"normal_per_film": 2.5}, "normal_per_film must be an integer >= 1"),
                          ({"normal_per_film": True}, "normal_per_film must be an integer >= 1"),
                          ({"min_tissue": 0}, "min_tissue must be in"), ({"min_tissue": 1.5}, "min_tissue must be in")]:
        with pytest.raises(ValueError, match=match):
            extract_patches(films, **kwargs)
    with pytest.raises(ValueError, match="contrast must be one of"):
        quiet_load(synthetic, format="mias_patches_malignancy", contrast="CLAHE")
    with pytest.warns(gd.DataWarning):  # the synthetic films' skipped lesions
        assert len(extract_patches(films, labels="malignancy", normal_per_film=0)[0]) == 2  # no normal patches there
