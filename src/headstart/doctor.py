"""Data checks before anyone trusts an accuracy (issue 26): label issues, duplicates and train/test leakage.

This module holds the checks as plain functions over arrays the rest of headstart already computes: the
cross-validated probe's out-of-fold probabilities (label issues) and the feature store's embeddings (near
duplicates). It imports no torch, so the checks run in seconds on cached features. The `headstart doctor`
command, the report's "Data" section and `train --exclude` are still to be built on top of it.

Label issues follow the confident-learning rule of Northcutt, Jiang & Chuang (JAIR 2021), written here rather than
imported: cleanlab, which implements it, is AGPL-3.0 and headstart is Apache-2.0.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import HeadstartError

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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def exact_duplicates(paths: Iterable[str | Path]) -> list[list[int]]:
    """Groups (indices into `paths`, ascending) of byte-identical files; files seen once are left out."""
    groups: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        groups.setdefault(_sha256(Path(path)), []).append(i)
    return sorted(g for g in groups.values() if len(g) > 1)


def _groups(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components of the pairs (union-find), as sorted index lists of two or more."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        parent[root(a)] = root(b)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(root(i), []).append(i)
    return sorted(g for g in members.values() if len(g) > 1)


def near_duplicates(embeddings: np.ndarray, threshold: float = 0.95) -> list[list[int]]:
    """Groups of images whose embeddings have cosine similarity ≥ `threshold` (chained: a~b, b~c → one group).

    Exact neighbours (scikit-learn) on L2-normalised rows; an approximate index is for the sizes this does not fit.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise HeadstartError(f"expected embeddings of shape (n, dim), received {x.shape}.")
    if not 0.0 < threshold <= 1.0:
        raise HeadstartError(f"threshold is a cosine similarity in (0, 1], received {threshold}.")
    if len(x) < 2:
        return []
    from sklearn.neighbors import NearestNeighbors

    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    # On unit vectors, cosine ≥ t ⇔ euclidean distance ≤ sqrt(2 − 2t).
    radius = float(np.sqrt(max(2.0 - 2.0 * threshold, 0.0))) + 1e-6
    index = NearestNeighbors(radius=radius).fit(x)
    neighbours = index.radius_neighbors(x, return_distance=False)
    pairs = ((i, int(j)) for i, row in enumerate(neighbours) for j in row if j > i)
    return _groups(len(x), pairs)


def leaks(groups: Iterable[Sequence[int]], splits: Sequence[str]) -> list[dict]:
    """The duplicate groups that span more than one split: {"indices", "splits"} for each, e.g. train and test."""
    out = []
    for group in groups:
        names = sorted({splits[i] for i in group})
        if len(names) > 1:
            out.append({"indices": list(group), "splits": names})
    return out
