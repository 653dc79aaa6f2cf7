"""ψ from scratch vs pretrained (issue 16): the kNN label agreement against closed forms and brute force, the
pairs a grid offers, the report section exactly when there is one, and the compare command's refusals."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from graphzoo.config import RunConfig
from graphzoo.data import save_split
from graphzoo.report import experiment_sections as ES
from graphzoo.report import Section
from graphzoo.report.pretrain_compare import (chance_agreement, compare_main, knn_agreement, pretrain_pairs,
                                              pretrain_section)
from graphzoo.rundir import RunDir

NAMES = ["a", "b"]


# ------------------------------------------------------------------------------------------
# the number
# ------------------------------------------------------------------------------------------
def test_agreement_is_one_for_separated_classes_and_closed_form_for_alternating_ones():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    Z = np.where(y[:, None] == 0, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]) + 0.05 * rng.normal(size=(60, 3))
    assert knn_agreement(Z, y, k=5) == 1.0
    # points 0, 1, ..., n-1 on a line, classes alternating, k = 2: an inner point's neighbours are i ± 1 (the other
    # class), an end point's are 1 and 2 steps away (one of each), so a_2 = (2 × 1/2) / n = 1 / n exactly
    n = 21
    line = np.c_[np.arange(n, dtype=float), np.zeros(n)]
    assert knn_agreement(line, np.arange(n) % 2, k=2, metric="euclidean") == pytest.approx(1 / n)


def test_agreement_matches_brute_force_and_skips_images_without_a_class():
    rng = np.random.default_rng(1)
    Z, y = rng.normal(size=(80, 6)), rng.integers(0, 3, 80)
    y[:7] = -1
    keep = y >= 0
    X = Z[keep] / np.linalg.norm(Z[keep], axis=1, keepdims=True)
    D = -(X @ X.T)
    np.fill_diagonal(D, np.inf)
    nn = np.argsort(D, axis=1)[:, :4]
    brute = np.mean(y[keep][nn] == y[keep][:, None])
    assert knn_agreement(Z, y, k=4) == pytest.approx(brute)
    with pytest.raises(ValueError, match="at least 2 images"):
        knn_agreement(Z[:3], np.array([-1, -1, 0]))


def test_chance_is_the_mean_agreement_over_random_labellings():
    from graphzoo.graph import knn_search

    y = np.array([0] * 12 + [1] * 5 + [2] * 3)
    assert chance_agreement(y) == pytest.approx((12 * 11 + 5 * 4 + 3 * 2) / (20 * 19))
    _, idx = knn_search(np.random.default_rng(2).normal(size=(20, 4)), 3)
    rng = np.random.default_rng(3)
    perm = [rng.permutation(y) for _ in range(4000)]
    mean = np.mean([np.mean(p[idx] == p[:, None]) for p in perm])
    assert mean == pytest.approx(chance_agreement(y), abs=0.01)  # std of the mean ≈ 0.002


# ------------------------------------------------------------------------------------------
# pairs in a grid
# ------------------------------------------------------------------------------------------
def record(method, pretrain="", fraction=0.1, seed=0, kind="run", **cfg):
    config = {**RunConfig().to_dict(), "pretrain": pretrain, "label_fraction": fraction, "seed": seed, **cfg}
    for k in ("out", "name", "progress", "device", "pretrain_dir", "data_in_memory"):
        config.pop(k)
    return {"cell": f"{method}|{fraction}|{seed}", "method": method, "label": method, "kind": kind, "role": "method",
            "label_fraction": fraction, "seed": seed, "run_dir": f"runs/{method}-{fraction}-{seed}",
            "config": config, "test_prediction": "transductive", "accuracy": 0.8, "balanced_accuracy": 0.8,
            "auc": 0.9, "n_test": 40, "split_hash": str(seed), "names": NAMES, "wall_s": 1.0}


def test_pairs_differ_only_by_pretrain_at_one_fraction_and_seed():
    scratch, simclr = record("op"), record("op-ssl", pretrain="simclr", pretrain_epochs=3)
    assert [(a["method"], b["method"]) for a, b in pretrain_pairs([simclr, scratch])] == [("op", "op-ssl")]
    # "none" is no pretraining; a baseline that reports the net's prediction still has the same ψ
    none = record("op", pretrain="none")
    sup = record("sup-ssl", pretrain="simclr", test_prediction="inductive")
    assert len(pretrain_pairs([none, sup])) == 1
    assert pretrain_pairs([scratch, record("x", pretrain="simclr", epochs=7)]) == []  # ψ trained otherwise
    assert pretrain_pairs([scratch, record("x", pretrain="simclr", seed=1)]) == []
    assert pretrain_pairs([scratch, record("x", pretrain="simclr", fraction=0.2)]) == []
    assert pretrain_pairs([scratch, record("x", pretrain="simclr", kind="energy")]) == []
    assert pretrain_pairs([scratch, record("y")]) == []  # no pretrained run at all
    # pretrain=auto: what the run chose (the record's pretrain_used) decides its side
    auto_ssl = {**record("auto-ssl", pretrain="auto"), "pretrain_used": "simclr"}
    auto_none = {**record("auto-none", pretrain="auto"), "pretrain_used": ""}
    assert [(a["method"], b["method"]) for a, b in pretrain_pairs([auto_ssl, scratch])] == [("op", "auto-ssl")]
    assert [(a["method"], b["method"]) for a, b in pretrain_pairs([simclr, auto_none])] == [("auto-none", "op-ssl")]


# ------------------------------------------------------------------------------------------
# fake finished runs: the files the report reads, with features chosen by the test
# ------------------------------------------------------------------------------------------
def fake_run(path: Path, Z, y, split, pretrain="", sha="d1", accuracy=0.8) -> Path:
    rd = RunDir(path)
    path.mkdir(parents=True)
    n = len(y)
    cfg = RunConfig(pretrain=pretrain).to_dict()
    rd.config.write_text(yaml.safe_dump(cfg))
    save_split(rd.split, n_samples=n, labelled=np.arange(n) % 10 == 0, split=np.asarray(split),
               filenames=[f"c{i}.png" for i in range(n)], data_sha1=sha)
    with open(rd.predictions, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "filename", "split", "true", "pred", "pred_net", "pred_graph", "prob_a", "prob_b"])
        for i in range(n):
            w.writerow([i, f"c{i}.png", split[i], NAMES[y[i]], "a", "a", "a", 0.6, 0.4])
    np.save(rd.features, np.asarray(Z, np.float32))
    rd.metrics.write_text(json.dumps({"accuracy": accuracy, "label_fraction_effective": 0.1, "task": "multiclass"}))
    return path


def two_runs(tmp_path, n=60, split_b=None, sha_b="d1"):
    """A ψ that mixes the classes (scratch) and one that separates them (pretrained), on n images."""
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    split = np.array(["train", "val", "test", "test"] * (n // 4))
    mixed = rng.normal(size=(n, 5))
    separated = np.where(y[:, None] == 0, 1.0, -1.0) * np.r_[1.0, 0, 0, 0, 0] + 0.05 * rng.normal(size=(n, 5))
    a = fake_run(tmp_path / "runs" / "op-0.1-0", mixed, y, split)
    b = fake_run(tmp_path / "runs" / "op-ssl-0.1-0", separated, y, split if split_b is None else split_b,
                 pretrain="simclr", sha=sha_b)
    return a, b, y, split


@pytest.fixture
def maps(monkeypatch):
    """embed_2d replaced by a spy that keeps the first two coordinates (t-SNE itself: tests/test_report.py)."""
    calls = []

    def spy(Z, seed=0):
        calls.append((np.array(Z), seed))
        return np.asarray(Z)[:, :2], "t-SNE"

    monkeypatch.setattr("graphzoo.report.figures.embed_2d", spy)
    return calls


def test_section_appears_exactly_when_the_grid_has_a_pair(tmp_path, monkeypatch, maps):
    _, _, _, split = two_runs(tmp_path)
    records = [record("op"), record("op-ssl", pretrain="simclr")]
    s = pretrain_section(tmp_path, records, max_points=20)
    assert s.title == "ψ from scratch vs from the pretrained encoder"
    assert s.figures[0][0] == "psi_scratch_vs_pretrained" and s.figures[0][1].startswith(b"\x89PNG")
    (_, header, rows), = s.tables
    # a_10 on all 30 test images (15 per class): separated features agree fully, random ones lie near chance,
    # 2 · 15 · 14 / (30 · 29) = 0.483
    assert rows == [["10 %", "0", "op", "op-ssl", rows[0][4], "1.000", rows[0][6], "0.483"]]
    assert float(rows[0][4]) < 0.75
    # both maps: 20 of the 30 test images, the same ones, with the same seed
    def rows_in(Zs, run):  # the images a map was given, as their rows of the run's features.npy
        Z = np.load(tmp_path / "runs" / run / "features.npy")
        return [int(np.flatnonzero((Z == z).all(1))[0]) for z in Zs]

    (Za, sa), (Zb, sb) = maps
    shown = rows_in(Za, "op-0.1-0")
    assert len(set(shown)) == 20 and set(split[shown]) == {"test"}
    assert rows_in(Zb, "op-ssl-0.1-0") == shown and sa == sb
    assert pretrain_section(tmp_path, records[:1], max_points=20) is None
    # wired into the experiment report: present with the pair, absent without it
    monkeypatch.setattr(ES, "run_sections", lambda *a, **k: [Section("featured run")])
    for recs, present in ((records, True), (records[:1] + [record("op2", epochs=3)], False)):
        (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        titles = [x.title for x in ES.experiment_sections(tmp_path, max_points=20)]
        assert ("ψ from scratch vs from the pretrained encoder" in titles) is present


def test_compare_writes_the_figure_and_refuses_other_splits_or_data(tmp_path, capsys, maps):
    from graphzoo.cli import main

    a, b, _, split = two_runs(tmp_path)
    out = tmp_path / "fig" / "pair.png"
    assert main(["report", "--compare", str(a), str(b), "--out", str(out), "--max-points", "20"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert "| op-0.1-0 | op-ssl-0.1-0 | 10.0 % |" in capsys.readouterr().out
    other = split.copy()
    other[[0, 2]] = other[[2, 0]]  # one train and one test image swap parts
    _, c, _, _ = two_runs(tmp_path / "x", split_b=other)
    with pytest.raises(ValueError, match=r"do not share their data and split \(another train / val / test split"):
        compare_main([(str(a), str(c))], tmp_path / "no.png")
    _, d, _, _ = two_runs(tmp_path / "y", sha_b="d2")
    assert main(["report", "--compare", str(a), str(d), "--out", str(tmp_path / "no.png")]) == 2
    assert "different data files" in capsys.readouterr().err and not (tmp_path / "no.png").exists()
    assert main(["report", str(a), "--compare", str(a), str(b), "--out", str(out)]) == 2
