"""Data checks before anyone trusts an accuracy (issue 26): label issues, duplicates and train/test leakage.

This module holds the checks as plain functions over arrays the rest of headstart already computes: the
cross-validated probe's out-of-fold probabilities (label issues) and the feature store's embeddings (near
duplicates). It imports no torch itself (only the power norm borrows the probe's function, on use), so the checks
run in seconds on cached features; `headstart doctor` (:mod:`._check`) and `train`'s "Data" section call it.

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


FILTERS = ("self_confidence", "prune_by_noise_rate", "confident_learning")


def label_issues(labels: Sequence[int], probs: np.ndarray, *, filter_by: str = "self_confidence") -> list[dict]:
    """Images whose given label the out-of-fold probabilities confidently contradict, most suspect first.

    Confident learning (Northcutt et al. 2021): class j's threshold is the mean probability of j over the images
    labelled j. An image "confidently belongs" to every class whose probability reaches that class's threshold,
    and is counted in the confident joint under the likeliest of those. ``filter_by``:
    "confident_learning" flags the images counted off the diagonal (given i, confidently j ≠ i);
    "prune_by_noise_rate" (cleanlab's default) calibrates the joint to the label counts and, for each
    off-diagonal cell (i, j), flags that many images labelled i with the largest margin p(j) − p(i);
    "self_confidence" (the default) flags as many images as "prune_by_noise_rate" does — the calibrated joint's
    estimate of how many labels are wrong — but takes the ones with the lowest probability of their given label
    across the whole set. Why: with the same count it found 96 % / 94 % of injected flips where the per-cell
    margins found 85 % / 84 % (Fashion-MNIST / digits, benchmarks/RESULTS.md "Data checks"): a flip whose
    probability mass lands in a small off-diagonal cell is lost to that cell's rounding, and a margin inside one
    cell says nothing about the image's standing against the rest. Probabilities must be out-of-fold: in-sample
    ones hide the mislabels a model has memorised.

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
    if filter_by != "confident_learning":
        off = _prune_by_noise_rate(labels, probs, confident, counted)
    if filter_by == "self_confidence":
        off = _lowest_given(labels, probs, int(off.sum()))
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


def _lowest_given(labels: np.ndarray, probs: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` images with the lowest probability of their given label; one image of each class always stays."""
    given = probs[np.arange(len(labels)), labels]
    flagged = np.zeros(len(labels), dtype=bool)
    flagged[np.argsort(given, kind="stable")[:n]] = True
    for i in np.unique(labels):
        members = np.flatnonzero(labels == i)
        if flagged[members].all():
            flagged[members[np.argmax(given[members])]] = False
    return flagged


def projection(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """What the checks of a large set work on: above :data:`EXACT_MAX` rows, the first ``2 × PCA_DIM`` principal
    components (in order: the first ``PCA_DIM`` columns are the smaller projection the neighbour search uses), else
    ``x`` itself. One PCA for both checks: 7–8 s at 100,000 × 1,280."""
    return _projected(x, 2 * PCA_DIM, seed) if len(x) > EXACT_MAX else x


# C on half decades: on the benchmark sets the best C by out-of-fold log-loss was 0.003–0.01, below the probe's
# grid; warm starts along the path make the extra points cheap.
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def oof_probabilities(x: np.ndarray, y: Sequence[int], *, folds: int = 5, seed: int = 0,
                      grid: Sequence[float] = C_GRID, norms: Sequence[str] = ("on",),
                      projected: np.ndarray | None = None) -> tuple[np.ndarray, float, str]:
    """Out-of-fold class probabilities for every row, and the C and power normalization they came from.

    The model is the probe's: logistic regression on standardized features, after the signed square root when
    the norm is "on" (``norms``: the candidates, "off" / "on", as the probe's ``power_norm``). Each (norm, C) is
    scored by the out-of-fold log-loss (stratified ``folds``, fewer when a class has fewer images) and the best
    one's probabilities are returned: each row's come from a model that never saw it. The norm is on by default
    because it gave the lower log-loss at every C on all 6 benchmark seeds and cut the flagged count at the same
    recall (RESULTS "Data checks"); trying both would double the time. Above :data:`EXACT_MAX` rows the features
    are first projected on :data:`PCA_DIM` × 2 principal components (a square root of signed components means
    nothing, so the norm is off) and C is chosen on a stratified subsample of :data:`EXACT_MAX` rows: every C on
    100,000 × 1,280 numbers would take many minutes on 2 cores. ``projected``: :func:`projection` of ``x`` when
    the caller has it already.
    """
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y)
    k = int(min(folds, counts[counts > 0].min()))
    if k < 2:
        raise HeadstartError(f"label checks need at least 2 images of every class (one per fold); class "
                             f"{int(np.flatnonzero(counts == 1)[0])} has 1. Add images of that class.")
    if len(y) > EXACT_MAX:
        x = projection(x, seed) if projected is None else projected
        grid = [_oof_c(x, y, grid, seed)] if len(grid) > 1 else grid
        norms = ("off",)
    cv = StratifiedKFold(k, shuffle=True, random_state=seed)
    best: tuple[float, float, str, np.ndarray] | None = None
    for norm in norms:
        xn = _signed_sqrt(x) if norm == "on" else x
        for c, probs in _oof_path(xn, y, cv, grid, len(counts)).items():
            loss = log_loss(y, probs, labels=np.arange(len(counts)))
            if best is None or loss < best[0] - 1e-9:  # a tie keeps the earlier: norm off, the smaller C
                best = (loss, c, norm, probs)
    return best[3], best[1], best[2]


def _signed_sqrt(x: np.ndarray) -> np.ndarray:
    """The probe's power norm (its ``sqrt`` layer, the same function), so that ``train``'s label check on the probe's
    C and norm sees the probe's features. Imported here, on use: it brings torch, which the other checks do not need."""
    from ..models import signed_sqrt

    return signed_sqrt(x)


def _oof_path(x: np.ndarray, y: np.ndarray, cv, grid: Sequence[float], n_classes: int) -> dict[float, np.ndarray]:
    """Out-of-fold probabilities at every C of ``grid``; each fold fits C in ascending order, each fit starting
    from the last one's weights (3–4× fewer L-BFGS iterations than cold starts)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    out = {c: np.zeros((len(y), n_classes)) for c in sorted(grid)}
    for train, held in cv.split(x, y):
        scaler = StandardScaler().fit(x[train])
        a, b = scaler.transform(x[train]), scaler.transform(x[held])
        clf = LogisticRegression(max_iter=2000, warm_start=True)
        for c in out:
            clf.set_params(C=c).fit(a, y[train])
            out[c][np.ix_(held, clf.classes_)] = clf.predict_proba(b)
    for p in out.values():  # float32 features give float32 probabilities: rows off 1 by ~1e-7, which log_loss flags
        p /= p.sum(axis=1, keepdims=True)
    return out


def _projected(x: np.ndarray, dim: int, seed: int) -> np.ndarray:
    if x.shape[1] <= dim:
        return x
    from sklearn.decomposition import PCA

    return PCA(dim, svd_solver="randomized", random_state=seed).fit_transform(x).astype(np.float32)


def _oof_c(x: np.ndarray, y: np.ndarray, grid: Sequence[float], seed: int) -> float:
    """The C of ``grid`` with the lowest 3-fold log-loss on a stratified subsample of EXACT_MAX rows."""
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, train_test_split

    rows, _ = train_test_split(np.arange(len(y)), train_size=EXACT_MAX, random_state=seed, stratify=y)
    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    n = int(y.max()) + 1
    losses = {c: log_loss(y[rows], p, labels=np.arange(n)) for c, p in _oof_path(x[rows], y[rows], cv, grid, n).items()}
    return min(losses, key=losses.get)

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
