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

from ..errors import HeadstartError
from ..weights import sha256_file

__all__ = ["FILTERS", "label_issues", "oof_probabilities", "exact_duplicates", "near_duplicates", "neighbours", "outliers",
           "leaks", "projection"]

# Above this many images the label checks and the neighbour search run on a PCA projection (the full vectors then
# check each neighbour pair): exact search is N² × dim, and 100,000 × 1,280-d images took 52 s on 2 cores with
# scikit-learn's exact search on 128 dimensions alone (benchmarks/doctor_scale.py).
EXACT_MAX = 20_000
PCA_DIM = 128


def _check_probabilities(labels: np.ndarray, probs: np.ndarray) -> None:
    if probs.ndim != 2 or labels.ndim != 1 or len(labels) != len(probs):
        raise HeadstartError(f"expected labels of shape (n,) and probabilities of shape (n, classes), received "
                             f"{labels.shape} and {probs.shape}. Pass one row of out-of-fold probabilities per image.")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise HeadstartError(f"labels must lie in 0..{probs.shape[1] - 1} (one column per class), received "
                             f"{labels.min()}..{labels.max()}.")


FILTERS = ("prune_by_noise_rate", "confident_learning")


def label_issues(labels: Sequence[int], probs: np.ndarray, *, filter_by: str = "prune_by_noise_rate") -> list[dict]:
    """Images whose given label the out-of-fold probabilities confidently contradict, most suspect first.

    Confident learning (Northcutt et al. 2021): class j's threshold is the mean probability of j over the images
    labelled j. An image "confidently belongs" to every class whose probability reaches that class's threshold,
    and is counted in the confident joint under the likeliest of those. ``filter_by`` (cleanlab's names):
    "confident_learning" flags the images counted off the diagonal (given i, confidently j ≠ i);
    "prune_by_noise_rate" (the default, as cleanlab's) calibrates the joint to the label counts and, for each
    off-diagonal cell (i, j), flags that many images labelled i with the largest margin p(j) − p(i). Probabilities must be out-of-fold: in-sample ones
    hide the mislabels a model has memorised.

    Returns [{"index", "label", "suggested", "score"}] sorted by score (1 − probability of the given label).
    """
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    _check_probabilities(labels, probs)
    if filter_by not in FILTERS:
        raise HeadstartError(f"filter_by must be one of {', '.join(FILTERS)}; received {filter_by!r}.")
    classes = probs.shape[1]
    # A class nobody was given has no threshold; 1.0+ keeps it out of every confident set (cleanlab does the same).
    thresholds = np.array([probs[labels == j, j].mean() if np.any(labels == j) else 1.0 + 1e-9
                           for j in range(classes)])
    above = probs >= thresholds - 1e-12
    confident = np.where(above, probs, -1.0).argmax(axis=1)
    counted = above.any(axis=1)
    off = counted & (confident != labels)
    if filter_by == "prune_by_noise_rate":
        off = _prune_by_noise_rate(labels, probs, confident, counted)
    flagged = np.flatnonzero(off)
    suggested = np.where(probs[flagged].argmax(1) != labels[flagged], probs[flagged].argmax(1), confident[flagged])
    scores = 1.0 - probs[flagged, labels[flagged]]
    order = np.argsort(-scores, kind="stable")
    return [{"index": int(flagged[k]), "label": int(labels[flagged[k]]), "suggested": int(suggested[k]),
             "score": round(float(scores[k]), 6)} for k in order]


def _prune_by_noise_rate(labels: np.ndarray, probs: np.ndarray, confident: np.ndarray,
                         counted: np.ndarray) -> np.ndarray:
    """cleanlab's default rule: the confident joint calibrated so that row i sums to the images labelled i, then
    round(joint[i, j]) images labelled i with the largest p(j) − p(i), for every j ≠ i (one image of each class
    always stays)."""
    k = probs.shape[1]
    joint = np.zeros((k, k))
    np.add.at(joint, (labels[counted], confident[counted]), 1)
    given = np.bincount(labels, minlength=k).astype(float)
    rows = joint.sum(axis=1, keepdims=True)
    calibrated = np.divide(joint * given[:, None], rows, out=np.zeros_like(joint), where=rows > 0)
    flagged = np.zeros(len(labels), dtype=bool)
    for i in range(k):
        members = np.flatnonzero(labels == i)
        budget = max(0, len(members) - 1)
        for j in range(k):
            n = min(int(round(calibrated[i, j])), budget) if j != i else 0
            if n <= 0:
                continue
            margin = probs[members, j] - probs[members, i]
            flagged[members[np.argsort(-margin, kind="stable")[:n]]] = True
    return flagged


def projection(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the checks of a large set work on: above :data:`EXACT_MAX` rows, the first ``2 × PCA_DIM`` principal
    components (in order: the first ``PCA_DIM`` columns are the smaller projection the neighbour search uses), else
    ``x`` itself. One PCA for both checks: 7–8 s at 100,000 × 1,280."""
    return _projected(x, 2 * PCA_DIM, seed) if len(x) > EXACT_MAX else x


def oof_probabilities(x: np.ndarray, y: Sequence[int], *, folds: int = 5, seed: int = 0,
                      grid: Sequence[float] = (0.01, 0.1, 1.0), projected: np.ndarray | None = None
                      ) -> tuple[np.ndarray, float]:
    """Out-of-fold class probabilities for every row, and the C they came from.

    The model is the probe's: logistic regression on standardized features. Each C of ``grid`` is scored by the
    out-of-fold log-loss (stratified ``folds``, fewer when a class has fewer images) and the best one's
    probabilities are returned: each row's come from a model that never saw it. Above :data:`EXACT_MAX` rows the
    features are first projected on :data:`PCA_DIM` × 2 principal components and C is chosen on a stratified
    subsample of :data:`EXACT_MAX` rows: 15 fits on 100,000 × 1,280 numbers would take many minutes on 2 cores.
    ``projected``: :func:`projection` of ``x`` when the caller has it already.
    """
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y)
    k = int(min(folds, counts[counts > 0].min()))
    if k < 2:
        raise HeadstartError(f"label checks need at least 2 images of every class (one per fold); class "
                             f"{int(np.flatnonzero(counts == 1)[0])} has 1. Add images of that class.")
    if len(y) > EXACT_MAX:
        x = projection(x, seed) if projected is None else projected
        grid = [_oof_c(x, y, grid, seed)] if len(grid) > 1 else grid
    cv = StratifiedKFold(k, shuffle=True, random_state=seed)
    best: tuple[float, float, np.ndarray] | None = None
    for c in grid:
        probs = cross_val_predict(_probe_model(c), x, y, cv=cv, method="predict_proba")
        loss = log_loss(y, probs, labels=np.arange(len(counts)))
        if best is None or loss < best[0]:
            best = (loss, c, probs)
    return best[2], best[1]


def _probe_model(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))


def _projected(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    if x.shape[1] <= dim:
        return x
    from sklearn.decomposition import PCA

    return PCA(dim, svd_solver="randomized", random_state=seed).fit_transform(x).astype(np.float32)


def _oof_c(x: np.ndarray, y: np.ndarray, grid: Sequence[float], seed: int) -> float:
    """The C of ``grid`` with the lowest 3-fold log-loss on a stratified subsample of EXACT_MAX rows."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split

    rows, _ = train_test_split(np.arange(len(y)), train_size=EXACT_MAX, random_state=seed, stratify=y)
    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    losses = [log_loss(y[rows], cross_val_predict(_probe_model(c), x[rows], y[rows], cv=cv, method="predict_proba"),
                       labels=np.unique(y)) for c in grid]
    return grid[int(np.argmin(losses))]


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


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def neighbours(embeddings: np.ndarray, k: int = 10, *, projected: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest other rows by cosine: (indices N×k, cosine similarities N×k), nearest first.

    An exact inner-product search (faiss ``IndexFlatIP`` on unit vectors: 2.3× scikit-learn's exact search at
    100,000 × 128, and HNSW graphs found only 77–88 % of the true neighbours there). Above :data:`EXACT_MAX`
    rows it searches the first :data:`PCA_DIM` principal components (``projected``, or :func:`projection` of the
    embeddings), and the similarities are recomputed on the full vectors.
    """
    import faiss

    x = _unit(embeddings)
    if x.ndim != 2:
        raise HeadstartError(f"expected embeddings of shape (n, dim), received {x.shape}.")
    k = min(k, len(x) - 1)
    if k < 1:
        return np.zeros((len(x), 0), np.int64), np.zeros((len(x), 0), np.float32)
    z = x
    if len(x) > EXACT_MAX and x.shape[1] > PCA_DIM:
        z = _unit((projection(embeddings) if projected is None else projected)[:, :PCA_DIM])
    index = faiss.IndexFlatIP(z.shape[1])
    index.add(np.ascontiguousarray(z))
    _, idx = index.search(np.ascontiguousarray(z), k + 1)
    idx = idx.astype(np.int64)
    own = idx == np.arange(len(x))[:, None]  # drop each row itself (the first, except among exact copies)
    keep = np.where(own.any(axis=1, keepdims=True), ~own, np.arange(k + 1) < k)
    idx = idx[keep].reshape(len(x), k)
    sims = np.concatenate([np.einsum("nd,nkd->nk", x[a:a + 4096], x[idx[a:a + 4096]])  # chunks bound the memory
                           for a in range(0, len(x), 4096)])
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(sims, order, 1)


def outliers(similarities: np.ndarray, *, spread: float = 6.0) -> list[dict]:
    """Rows far from every other image: the mean cosine distance to their nearest neighbours is more than
    ``spread`` robust standard deviations (1.4826 × MAD) above the median. [{"index", "score"}], farthest first."""
    d = 1.0 - np.asarray(similarities, dtype=np.float64).mean(axis=1)
    if len(d) < 10:  # too few images to say what "far" is
        return []
    med = np.median(d)
    scale = max(1.4826 * np.median(np.abs(d - med)), 1e-6)
    z = (d - med) / scale
    flagged = np.flatnonzero(z > spread)
    return [{"index": int(i), "score": round(float(z[i]), 2)} for i in flagged[np.argsort(-z[flagged])]]


def leaks(groups: Iterable[Sequence[int]], splits: Sequence[str]) -> list[dict]:
    """The duplicate groups that span more than one split: {"indices", "splits"} for each, e.g. train and test."""
    out = []
    for group in groups:
        names = sorted({splits[i] for i in group})
        if len(names) > 1:
            out.append({"indices": list(group), "splits": names})
    return out
