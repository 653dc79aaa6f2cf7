"""The evidence of a prediction: the labelled training images nearest to an image in ψ ("why this label").

One home for the ``evidence`` column of a run's ``predictions.csv`` (:mod:`graphzoo.train.evaluate`) and of
``graphzoo predict`` (:mod:`graphzoo.predict`). A module of its own (torch-free, numpy at import) because
:mod:`graphzoo.predict` imports :mod:`graphzoo.train` (checkpoints), so the training package cannot import
``predict`` without an import cycle between the two.
"""

from __future__ import annotations

import numpy as np

__all__ = ["N_EVIDENCE", "nearest_labelled"]

#: Nearest labelled training images listed as evidence for each prediction.
N_EVIDENCE = 3


def nearest_labelled(features, labelled, names=None, metric: str = "cosine", queries=None) -> list[str]:
    """The evidence of each prediction: the ids of the :data:`N_EVIDENCE` labelled training images nearest in ψ,
    joined by "|" (the ``evidence`` column of a run's predictions.csv and of ``graphzoo predict``).

    features : (n, d) ψ of the run's images (an array or a memory map); labelled : (n_l,) int, the rows of
    ``features`` that are labelled training images; names : (n,) the images' ids (file names), default the row
    index; metric : the graph's metric, so that the evidence is what the graph connects an image to.
    queries : (m, d) ψ of new images; None: the run's own n images, each then left out of its own list.
    Returns m (or n) strings of min(N_EVIDENCE, n_l) ids, nearest first.
    """
    from .graph import knn_search

    lab = np.asarray(labelled, dtype=np.int64)
    own = queries is None
    # One neighbour more for the run's own images: a labelled image is its own nearest and is dropped.
    _, nb = knn_search(np.asarray(features[lab]), min(N_EVIDENCE + int(own), len(lab)),
                       queries=features if own else queries, metric=metric)
    ids = lab[nb]  # (m, k) rows of features
    name = str if names is None else (lambda i: str(names[i]))  # noqa: E731
    if not own:
        return ["|".join(name(j) for j in row) for row in ids]
    return ["|".join(name(j) for j in row[row != i][:N_EVIDENCE]) for i, row in enumerate(ids)]
