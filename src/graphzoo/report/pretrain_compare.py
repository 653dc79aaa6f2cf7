"""ψ learnt from scratch beside ψ fine-tuned from a self-supervised encoder: two maps and a number each.

Issue 16 asks whether pretraining on every image (labels ignored) gives a ψ whose neighbourhoods
follow the classes better than a ψ trained on the few labels alone. For a pair of finished runs on
the same data and split this module draws the 2-D maps of ψ of the *same* test images side by side
(one subset, one colouring by true class, one map setting: :func:`graphzoo.report.figures.embed_2d`
with the same seed), and scores each ψ with one number computed on *all* test images, the kNN
label agreement

    a_k(ψ) = (1/|T|) Σ_{i∈T} (1/k) Σ_{j∈N_k(i)} [y_j = y_i],

where T is the test images with a known class and N_k(i) the k nearest other test images of i in
ψ under the cosine metric (the graph's default). Why this number rather than a linear probe or a
silhouette: it is what the graph step relies on (labels diffuse along the kNN edges of ψ), no model
is fitted on top of ψ (a linear probe measures linear separability through a fit of its own, which
the graph never uses), it holds for clusters of any shape (the silhouette assumes compact convex
ones), and it needs O(|T| k) memory rather than |T|² distances. Neighbours are searched among the
test images only: the net was fitted to its labelled training images, which would flatter it, and
both runs are then scored on the very same node set. Chance (a ψ carrying no class information):
Σ_c n_c (n_c − 1) / (|T| (|T| − 1)). A multi-label run is scored on "no finding" / "≥ 1 finding".

* the experiment report: :func:`pretrain_section`, a section when the grid has run cells that differ
  only by ``pretrain`` (same label fraction and seed), none otherwise;
* ``graphzoo report --compare RUN_A RUN_B [--compare ...] --out FILE.png``: :func:`compare_main`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..experiments.aggregate import fraction_label, markdown_table
from . import figures as F
from .render import Section, say
from .run_sections import RunRecord, _classes, _images, read_run

__all__ = ["knn_agreement", "chance_agreement", "pretrain_pairs", "read_psi", "check_same_split", "pair_figure",
           "pretrain_section", "compare_main", "PRETRAIN_KEYS", "REPORT_ONLY_KEYS"]

#: The settings of the self-supervised stage: the keys two runs of a pair may differ in.
PRETRAIN_KEYS = ("pretrain", "pretrain_epochs", "pretrain_params", "pretrain_freeze")
#: Keys that change what a run reports, not the ψ it learns (a pair may differ in them too).
REPORT_ONLY_KEYS = ("test_prediction",)


def knn_agreement(Z: np.ndarray, y: np.ndarray, k: int = 10, metric: str = "cosine") -> float:
    """a_k: the mean share of each image's ``k`` nearest other images (rows of ``Z``) that share its class.

    Z : (n, d) features; y : (n,) int classes, -1 for images without one (left out, as points and as
    neighbours). k is lowered to n − 1 when fewer images have a class. Raises ``ValueError`` when
    fewer than two images have one.
    """
    from ..graph import knn_search

    y = np.asarray(y)
    keep = y >= 0
    if keep.sum() < 2:
        raise ValueError(f"kNN label agreement needs at least 2 images with a known class, got {int(keep.sum())}")
    y = y[keep]
    _, idx = knn_search(np.asarray(Z)[keep], min(k, len(y) - 1), metric=metric)
    return float(np.mean(y[idx] == y[:, None]))


def chance_agreement(y: np.ndarray) -> float:
    """a_k of a ψ that carries no class information: Σ_c n_c (n_c − 1) / (n (n − 1)), over the n images with a
    class (n_c of class c): the chance that another image drawn at random shares the class."""
    y = np.asarray(y)
    y = y[y >= 0]
    counts = np.bincount(y).astype(float)
    return float((counts * (counts - 1)).sum() / (len(y) * (len(y) - 1)))


def _pretrain_of(record: dict) -> str:
    """The method a run record's ψ was pretrained with ("" for none); with pretrain=auto, the one it chose."""
    p = str(record["config"].get("pretrain") or "").lower()
    if p == "auto":
        return record.get("pretrain_used") or ""
    return "" if p == "none" else p


def pretrain_pairs(records: list[dict]) -> list[tuple[dict, dict]]:
    """(from scratch, pretrained) run records of one label fraction and seed whose configs differ only in
    :data:`PRETRAIN_KEYS` (and :data:`REPORT_ONLY_KEYS`), the first without ``pretrain``, the second with it.

    Only cells with a run folder of their own (kind "run") count; the order is by fraction, seed, then
    the records' order. None: an empty list.
    """
    from ..config import config_diff

    runs = [r for r in records if r.get("kind") == "run" and r.get("config") and r.get("run_dir")]
    pairs, seen = [], set()
    for a in runs:
        for b in runs:
            if (_pretrain_of(a) or not _pretrain_of(b)
                    or (a["label_fraction"], a["seed"]) != (b["label_fraction"], b["seed"])):
                continue
            if config_diff(a["config"], b["config"], ignore=PRETRAIN_KEYS + REPORT_ONLY_KEYS):
                continue
            if (a["run_dir"], b["run_dir"]) not in seen:
                seen.add((a["run_dir"], b["run_dir"]))
                pairs.append((a, b))
    return sorted(pairs, key=lambda p: (p[0]["label_fraction"], p[0]["seed"]))


@dataclass
class Psi:
    """One run's ψ of its test images: Z (n_test, d), y (n_test,) true class (-1: none), and what it says."""

    run: RunRecord
    Z: np.ndarray
    y: np.ndarray
    names: list
    _scores: dict = field(default_factory=dict, repr=False)

    def agreement(self, k: int) -> float:
        """:func:`knn_agreement` of all its test images (computed once per k)."""
        if k not in self._scores:
            self._scores[k] = knn_agreement(self.Z, self.y, k)
        return self._scores[k]

    @property
    def how(self) -> str:
        """"from scratch", "fine-tuned from simclr", "frozen simclr encoder", "from <checkpoint>"."""
        cfg = self.run.cfg
        method = (self.run.metrics.get("pretrain") or {}).get("method", "") if cfg.pretrain == "auto" else cfg.pretrain
        if method:
            return f"frozen {method} encoder" if cfg.pretrain_freeze else f"fine-tuned from {method}"
        return f"from {Path(cfg.pretrained).name}" if cfg.pretrained else "from scratch"


def read_psi(run_dir: str | Path, compute: bool = False, log=None) -> Psi:
    """ψ of a finished run's test images, from its ``features.npy``.

    ``compute``: recompute a missing ``features.npy`` with the run's checkpoint (and save it there);
    otherwise a missing file is an error naming the fix (the compare command writes nothing into the runs).
    """
    from ..experiments.baselines import run_features

    run = read_run(run_dir)
    if not run.rd.features.is_file():
        if not compute:
            raise FileNotFoundError(f"{run.rd} has no {run.rd.features.name} (ψ of its images). Fix: graphzoo report "
                                    f"{run.rd} computes and saves it.")
        say(log, f"{run.rd.features} missing: computing ψ(x) of {len(run.split)} images")
        Z = run_features(run.rd, _images(run, np.arange(len(run.split))))
    else:
        Z = np.load(run.rd.features, mmap_mode="r")
    if len(Z) != len(run.split):
        raise ValueError(f"{run.rd.features} holds {len(Z)} rows for {len(run.split)} images: the run folder was "
                         "changed after the run. Fix: delete features.npy and run graphzoo report on the run.")
    truth, _, names = _classes(run)
    test = run.test
    return Psi(run, np.asarray(Z[test], np.float32), truth[test], names)


def check_same_split(a: RunRecord, b: RunRecord) -> None:
    """Refuse (``ValueError``) two runs whose data or train / val / test split differ: their maps would not
    show the same test images. The labelled masks may differ."""
    from ..data import load_split

    sa, sb = load_split(a.rd.split), load_split(b.rd.split)
    why = []
    if sa["n_samples"] != sb["n_samples"]:
        why.append(f"{sa['n_samples']} vs {sb['n_samples']} images")
    elif sa.get("fingerprint") and sb.get("fingerprint") and sa["fingerprint"] != sb["fingerprint"]:
        why.append("different image file names")
    da, db = sa["params"].get("data_sha1"), sb["params"].get("data_sha1")
    if da and db and da != db:
        why.append("different data files")
    if not why and not np.array_equal(a.split, b.split):
        why.append(f"another train / val / test split ({int((a.split != b.split).sum())} images change part)")
    if not why and list(a.names) != list(b.names):
        why.append(f"classes {a.names} vs {b.names}")
    if why:
        raise ValueError(f"{a.rd} and {b.rd} do not share their data and split ({'; '.join(why)}), so their ψ maps "
                         "would not show the same test images. Fix: compare two runs made on the same data with the "
                         "same split settings and seed (graphzoo run ... --seed S).")


def _title(p: Psi, a_k: float, k: int) -> str:
    acc = p.run.metrics.get("accuracy")
    acc = "" if acc is None else f", test accuracy {acc:.3f}"
    return f"{p.run.rd.name}: ψ {p.how}\nkNN agreement a_{k} = {a_k:.3f}{acc}"


def pair_figure(pairs: list[tuple[Psi, Psi]], max_points: int = 1500, seed: int = 0, k: int = 10,
                log=None) -> tuple[bytes, list[list[str]], str]:
    """The maps of each pair side by side (one row per pair) and a table row per pair.

    Each pair's maps show the same ``max_points`` test images (drawn with ``seed``; pairs on one split
    draw the same ones), both made by :func:`graphzoo.report.figures.embed_2d` with ``seed``; a_k is
    computed on all test images. Returns (PNG bytes, table rows, the map method's name).
    """
    for a, b in pairs:  # every pair checked before the first (slow) map
        check_same_split(a.run, b.run)
    rows, table, how = [], [], "t-SNE"
    for a, b in pairs:
        scores = [p.agreement(k) for p in (a, b)]
        pick = np.sort(np.random.default_rng(seed).choice(len(a.y), min(max_points, len(a.y)), replace=False))
        say(log, f"2-D maps of {len(pick)} of {len(a.y)} test images for {a.run.rd.name} and {b.run.rd.name}…")
        maps = [F.embed_2d(p.Z[pick], seed=seed) for p in (a, b)]
        how = maps[0][1]
        rows.append([(Y, p.y[pick], _title(p, s, k)) for (Y, _), p, s in zip(maps, (a, b), scores)])
        fr = a.run.metrics.get("label_fraction_effective")
        table.append([a.run.rd.name, b.run.rd.name, "—" if fr is None else f"{100 * fr:.1f} %",
                      f"{scores[0]:.3f}", f"{scores[1]:.3f}", f"{scores[1] - scores[0]:+.3f}",
                      f"{chance_agreement(a.y):.3f}", str(int((a.y >= 0).sum()))])
    return F.embedding_pairs(rows, pairs[0][0].names, how), table, how


TABLE_HEADER = ["ψ from scratch", "ψ pretrained", "labels", "a_k scratch", "a_k pretrained", "difference",
                "chance", "test images"]


def _explain(k: int) -> str:
    return (f"a_{k}: kNN label agreement, the mean share of each test image's {k} nearest test images in ψ (cosine) "
            "that share its true class, computed on all test images (the maps show a subset); chance is what a ψ "
            "without class information scores. It is what the graph step relies on (labels diffuse along kNN edges), "
            "with no classifier fitted on top of ψ and no assumption on the clusters' shape.")


def pretrain_section(folder: Path, records: list[dict], max_points: int = 1500, seed: int = 0, k: int = 10,
                     log=None) -> Section | None:
    """"ψ from scratch vs from the pretrained encoder" for an experiment, or None when it has no such pair.

    The table scores every pair (each fraction and seed); the figure shows the first seed's pairs,
    one row per label fraction.
    """
    pairs = pretrain_pairs(records)
    if not pairs:
        return None
    say(log, f"ψ from scratch vs pretrained: {len(pairs)} pair(s) of runs")
    psi = {}
    for a, b in pairs:
        for r in (a, b):
            if r["run_dir"] not in psi:
                psi[r["run_dir"]] = read_psi(Path(folder) / r["run_dir"], compute=True, log=log)
    first = min(a["seed"] for a, _ in pairs)
    shown = [(psi[a["run_dir"]], psi[b["run_dir"]]) for a, b in pairs if a["seed"] == first]
    data, _, how = pair_figure(shown, max_points=max_points, seed=seed, k=k, log=log)
    rows, by_fraction = [], {}
    for a, b in pairs:
        pa, pb = psi[a["run_dir"]], psi[b["run_dir"]]
        sa, sb = pa.agreement(k), pb.agreement(k)
        by_fraction.setdefault(a["label_fraction"], []).append(sb - sa)
        rows.append([fraction_label(a["label_fraction"]), str(a["seed"]), a["label"], b["label"],
                     f"{sa:.3f}", f"{sb:.3f}", f"{sb - sa:+.3f}", f"{chance_agreement(pa.y):.3f}"])
    s = Section("ψ from scratch vs from the pretrained encoder")
    s.paragraphs.append(_explain(k))
    s.paragraphs += [f"At {fraction_label(f)} labels pretraining changes a_{k} by {np.mean(d):+.3f} on average over "
                     f"{len(d)} pair(s) ({', '.join(f'{x:+.3f}' for x in d)})." for f, d in by_fraction.items()]
    s.tables.append((f"kNN label agreement a_{k} of the test images in ψ, per pair of runs",
                     ["labels", "seed", "from scratch", "pretrained", f"a_{k} scratch", f"a_{k} pretrained",
                      "difference", "chance"], rows))
    s.figures.append(("psi_scratch_vs_pretrained", data,
                      f"{how} of ψ of the same test images (seed {first}; one row per label fraction): left from "
                      f"scratch, right fine-tuned from the self-supervised encoder; same images, same colours by "
                      f"true class, same map settings. The two maps' axes are not comparable, only their clusters."))
    return s


def compare_main(pairs: list[tuple[str, str]], out: str | Path, max_points: int = 1500, k: int = 10,
                 log=sys.stderr) -> Path:
    """``graphzoo report --compare RUN_A RUN_B [...] --out FILE.png``: the pairs' maps in one PNG, their
    a_k printed as a Markdown table on stdout. Reads the runs only (their ``features.npy``)."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: the figure is a PNG; give a file name ending in .png")
    psis = [(read_psi(a), read_psi(b)) for a, b in pairs]
    data, table, _ = pair_figure(psis, max_points=max_points, k=k, log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(markdown_table([h.replace("a_k", f"a_{k}") for h in TABLE_HEADER], table))
    say(log, f"wrote {out} ({len(data) // 1024} KB); {_explain(k)}")
    return out
