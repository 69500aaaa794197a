"""Data checks before anyone trusts an accuracy (issue 26): label issues, duplicates and train/test leakage.

This module holds the checks as plain functions over arrays the rest of headstart already computes: the
cross-validated probe's out-of-fold probabilities (label issues) and the feature store's embeddings (near
duplicates). It imports no torch, so the checks run in seconds on cached features. The `headstart doctor`
command, the report's "Data" section and `train --exclude` are still to be built on top of it.

Label issues follow the confident-learning rule of Northcutt, Jiang & Chuang (JAIR 2021), written here rather than
imported: cleanlab, which implements it, is AGPL-3.0 and headstart is Apache-2.0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import HeadstartError
from .weights import sha256_file

__all__ = ["label_issues", "exact_duplicates", "near_duplicates", "leaks"]


def _check_probabilities(labels: np.ndarray, probs: np.ndarray) -> None:
    if probs.ndim != 2 or labels.ndim != 1 or len(labels) != len(probs):
        raise HeadstartError(f"expected labels of shape (n,) and probabilities of shape (n, classes), received "
                             f"{labels.shape} and {probs.shape}. Pass one row of out-of-fold probabilities per image.")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise HeadstartError(f"labels must lie in 0..{probs.shape[1] - 1} (one column per class), received "
                             f"{labels.min()}..{labels.max()}.")


def label_issues(labels: Sequence[int], probs: np.ndarray) -> list[dict]:
    """Images whose given label the out-of-fold probabilities confidently contradict, most suspect first.

    Confident learning: class j's threshold is the mean probability of j over the images labelled j. An image
    "confidently belongs" to every class whose probability reaches that class's threshold, and is counted in the
    confident joint under the likeliest of those. Images counted off the diagonal (given i, confidently j ≠ i) are
    the issues. Probabilities must be out-of-fold: in-sample ones hide the mislabels a model has memorised.

    Returns [{"index", "label", "suggested", "score"}] sorted by score (1 − probability of the given label).
    """
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    _check_probabilities(labels, probs)
    classes = probs.shape[1]
    # A class nobody was given has no threshold; 1.0+ keeps it out of every confident set (cleanlab does the same).
    thresholds = np.array([probs[labels == j, j].mean() if np.any(labels == j) else 1.0 + 1e-9
                           for j in range(classes)])
    above = probs >= thresholds - 1e-12
    confident = np.where(above, probs, -1.0).argmax(axis=1)
    counted = above.any(axis=1)
    flagged = np.flatnonzero(counted & (confident != labels))
    scores = 1.0 - probs[flagged, labels[flagged]]
    order = np.argsort(-scores, kind="stable")
    return [{"index": int(flagged[k]), "label": int(labels[flagged[k]]), "suggested": int(confident[flagged[k]]),
             "score": round(float(scores[k]), 6)} for k in order]


def exact_duplicates(paths: Iterable[str | Path]) -> list[list[int]]:
    """Groups (indices into `paths`, ascending) of byte-identical files; files seen once are left out."""
    groups: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        groups.setdefault(sha256_file(path), []).append(i)
    return sorted(g for g in groups.values() if len(g) > 1)


def near_duplicates(embeddings: np.ndarray, threshold: float = 0.95) -> list[list[int]]:
    """Groups of images whose embeddings have cosine similarity ≥ `threshold` (chained: a~b, b~c → one group).

    Exact neighbours (scikit-learn) on L2-normalised rows, groups as the neighbour graph's connected components
    (scipy); an approximate index is for the sizes this does not fit.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise HeadstartError(f"expected embeddings of shape (n, dim), received {x.shape}.")
    if not 0.0 < threshold <= 1.0:
        raise HeadstartError(f"threshold is a cosine similarity in (0, 1], received {threshold}.")
    if len(x) < 2:
        return []
    from scipy.sparse.csgraph import connected_components
    from sklearn.neighbors import NearestNeighbors

    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    # On unit vectors, cosine ≥ t ⇔ euclidean distance ≤ sqrt(2 − 2t).
    radius = float(np.sqrt(max(2.0 - 2.0 * threshold, 0.0))) + 1e-6
    graph = NearestNeighbors(radius=radius).fit(x).radius_neighbors_graph(x)
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for i, c in enumerate(component):
        members.setdefault(int(c), []).append(i)
    return sorted(g for g in members.values() if len(g) > 1)


def leaks(groups: Iterable[Sequence[int]], splits: Sequence[str]) -> list[dict]:
    """The duplicate groups that span more than one split: {"indices", "splits"} for each, e.g. train and test."""
    out = []
    for group in groups:
        names = sorted({splits[i] for i in group})
        if len(names) > 1:
            out.append({"indices": list(group), "splits": names})
    return out
