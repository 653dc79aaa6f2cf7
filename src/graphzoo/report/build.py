"""``report.html`` (self-contained: figures as base64 PNG) and ``report.md`` for a run or an experiment.

An *experiment* folder (``results.jsonl`` from ``graphzoo experiment``) gives what the results
mean, the seed's tables (rows methods and baselines, each saying which prediction of the test
images it reports; columns label fractions; mean ± std over seeds), metric-vs-fraction curves,
per-class precision / recall / F1 (per-label AUC for multi-label sets), the pooled confusion
matrix, and the sections of one featured run (:mod:`.experiment_sections`). A *run* folder
(``metrics.json`` from ``graphzoo run``) gives its metrics (both predictions, a collapsed model
flagged) and figures: the ψ embedding map coloured by class with the labelled images marked, the
kNN graph coloured by prediction, example test images with truth and prediction, the confusion
matrix, and the per-epoch curves of a Dynamic Pass (:mod:`.run_sections`).

The figures use ψ(x) of the run's images: ``features.npy`` in the run folder, else recomputed with
the run's checkpoint (:func:`graphzoo.experiments.baselines.run_features`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..rundir import RunDir
from .experiment_sections import experiment_sections
from .render import render_html, render_md, say
from .run_sections import run_sections

__all__ = ["build_report"]


def build_report(path: str | Path, max_points: int = 1500, n_examples: int = 16, featured: str | None = None,
                 log=sys.stderr) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (+ ``report_figures/``) into a run or experiment folder.

    Parameters
    ----------
    path : folder holding ``results.jsonl`` (experiment) or ``metrics.json`` (run)
    max_points : images in the embedding and graph maps (t-SNE cost grows with it)
    n_examples : images in the example grid (up to half of them misclassified)
    featured : experiment only: the method (key or label) whose run the detailed sections show;
        default the best one at the largest label fraction below 100 %
    log : text stream for progress lines ("report: ..."); None: quiet

    Returns
    -------
    (html path, markdown path)
    """
    folder = Path(path)
    t0 = time.perf_counter()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist; give a run folder (runs/<name>) or an experiment folder "
                                "(runs/experiments/<name>)")
    if (folder / "results.jsonl").is_file():
        sections = experiment_sections(folder, featured=featured, log=log, max_points=max_points,
                                       n_examples=n_examples)
        title = f"GraphNet Zoo experiment: {folder.name}"
    elif RunDir(folder).finished:
        if featured:
            raise ValueError(f"featured={featured!r} chooses a run of an experiment; {folder} is a single run")
        sections = run_sections(folder, max_points=max_points, n_examples=n_examples, log=log)
        title = f"GraphNet Zoo run: {folder.name}"
    else:
        started = (" (its run has not finished: continue it with graphzoo run --resume)"
                   if RunDir(folder).started else "")
        raise FileNotFoundError(f"{folder} holds neither results.jsonl (an experiment) nor "
                                f"{RunDir(folder).metrics.name} (a finished run){started}")
    meta = f"written {time.strftime('%Y-%m-%d %H:%M')} from {folder.resolve()} in {time.perf_counter() - t0:.0f} s"
    html_path, md_path = folder / "report.html", folder / "report.md"
    say(log, f"writing {html_path} and {md_path}")
    html_path.write_text(render_html(title, sections, meta))
    md_path.write_text(render_md(title, sections, meta, folder / "report_figures"))
    return html_path, md_path
