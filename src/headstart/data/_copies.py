"""Copies among images, from their pixels alone (no network): what `train` checks before it splits, and what the
doctor reads besides the embeddings.

What is read: a perceptual hash, a 16×16 colour signature, and the signs of an unusable image.

A copy resized ×0.7 and re-encoded as JPEG q70 keeps its 64-bit perceptual hash (imagehash's DCT ``phash``)
within 4 bits on Fashion-MNIST, digits and ELPV, and its 16×16 Lanczos thumbnail correlates with the original's
at ≥ 0.9994; distinct ELPV cells of one module (near-identical pictures: 648 pairs within 4 hash bits) stay below
0.999. Its pooled embedding can move a lot: on ELPV such copies had cosine 0.73–0.99 to their originals while
distinct cells reached 0.996. So the hash finds candidates (a pigeonhole index: :func:`hash_pairs`) and the
signature confirms them (:func:`same_picture`); benchmarks/doctor.py measures both on injected copies.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

__all__ = ["ImageStats", "image_stats", "hash_distance", "hash_pairs", "groups_of", "same_picture", "copy_groups",
           "CopyIndex", "unusable", "save_signatures", "load_signatures", "copies_of", "SIDE", "SIMILARITY", "MIN_SIDE",
           "MAX_ASPECT", "MIN_STD"]

SIDE = 16  # the signature's side: coarse enough that resampling and JPEG blur do not move it
SIMILARITY = 0.999  # the correlation two signatures need to be called the same picture (see the module's doc)
# Unusable images: smaller than this side, longer than this ratio, or with less grey-level spread than this.
MIN_SIDE = 32
MAX_ASPECT = 4.0
MIN_STD = 2.0


@dataclass
class ImageStats:
    """One image's pixel summary: ``phash`` (64 bits, of the grey image), ``signature`` (16×16 RGB, zero mean,
    unit norm), size and grey-level spread."""

    phash: int
    signature: np.ndarray
    width: int  # of the file (before any reduced-size decoding)
    height: int
    std: float
    sha256: str


def _one(path: str) -> ImageStats | str:
    """The stats of one file, or the reason it cannot be read (the message every headstart reader gives)."""
    import imagehash
    from PIL import Image

    from ..errors import ImageLoadError
    from ._images import read_image_file

    try:  # a JPEG decodes at a reduced size (≥ 128 px, phash works at 32): a 12-megapixel photo in milliseconds
        im, sha, (w, h) = read_image_file(path, draft_size=(128, 128))
    except ImageLoadError as exc:
        return str(exc)
    grey = im.convert("L")
    bits = imagehash.phash(grey).hash.ravel()
    # Lanczos, not BOX: its wider support makes the signature blind to the resampling grid (a ×0.7 copy: BOX
    # correlations from 0.990, Lanczos from 0.9994 on Fashion-MNIST and ELPV). RGB: JPEG's chroma changes little.
    sig = np.asarray(im.resize((SIDE, SIDE), Image.LANCZOS), dtype=np.float32).ravel()
    sig -= sig.mean()
    sig /= max(float(np.linalg.norm(sig)), 1e-6)
    return ImageStats(int(np.packbits(bits).view(">u8")[0]), sig, w, h,
                      float(np.asarray(grey, dtype=np.float32).std()), sha)


def image_stats(paths: Sequence[str], *, workers: int | None = None, progress: bool = False
                ) -> tuple[list[ImageStats | None], list[dict[str, str]]]:
    """Stats of every file (None where unreadable) and the unreadable ones as {"path", "error"}.

    ``workers`` processes decode in parallel (default: one per core; 0 = in this process).
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers > 1 and len(paths) > 64:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            results = list(_bar(pool.map(_one, paths, chunksize=32), len(paths), progress))
    else:
        results = list(_bar(map(_one, paths), len(paths), progress))
    stats = [r if isinstance(r, ImageStats) else None for r in results]
    skipped = [{"path": p, "error": r} for p, r in zip(paths, results) if isinstance(r, str)]
    return stats, skipped


def _bar(it, total: int, progress: bool):
    if not progress:
        yield from it
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("hashing images", total=total)
        for r in it:
            bar.advance(task)
            yield r


def hash_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between 64-bit hashes (uint64 arrays of equal shape)."""
    x = np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64))
    return np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1).sum(axis=-1)


def hash_pairs(hashes: np.ndarray, max_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs (i < j) of 64-bit hashes within ``max_bits`` Hamming distance, and their distances.

    Pigeonhole: two hashes that differ in at most ``max_bits`` bits agree exactly on at least one of
    ``max_bits + 1`` disjoint bit ranges, so only rows sharing a range's value are compared: exact, and near
    linear in the number of images unless the hashes crowd (then every pair within a crowd is compared).
    """
    h = np.asarray(hashes, dtype=np.uint64)
    edges = np.linspace(0, 64, max_bits + 2).astype(int)
    found_a, found_b = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        key = (h >> np.uint64(lo)) & np.uint64((1 << (hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        starts = np.flatnonzero(np.r_[True, key[order][1:] != key[order][:-1]])
        for a, b in zip(starts, np.r_[starts[1:], len(order)]):
            if b - a > 1:  # every pair of the bucket, compared in numpy: 100,000 random hashes give ~68 M
                members = np.sort(order[a:b])  # pairs over 7 ranges, which a Python set would hold as tuples
                i, j = np.triu_indices(len(members), 1)
                near = hash_distance(h[members[i]], h[members[j]]) <= max_bits
                found_a.append(members[i][near])
                found_b.append(members[j][near])
    if not found_a or not sum(map(len, found_a)):
        return np.zeros((0, 2), np.int64), np.zeros(0, np.int64)
    pairs = np.unique(np.stack([np.concatenate(found_a), np.concatenate(found_b)], 1).astype(np.int64), axis=0)
    return pairs, hash_distance(h[pairs[:, 0]], h[pairs[:, 1]])


def groups_of(pairs: Iterable[tuple[int, int]], n: int) -> list[list[int]]:
    """Chained groups (a~b, b~c → one group, ascending indices) of the images joined by ``pairs``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    p = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(p)), (p[:, 0], p[:, 1])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for i in np.unique(p):
        members.setdefault(int(component[i]), []).append(int(i))
    return sorted(g for g in members.values() if len(g) > 1)



def same_picture(a: "ImageStats", b: "ImageStats", *, similarity: float = SIMILARITY) -> bool:
    """True when two images' 16×16 RGB signatures correlate at least ``similarity`` (brightness and contrast
    do not count; a constant image has no signature and matches nothing)."""
    return float(a.signature @ b.signature) >= similarity


def copy_groups(stats: Sequence[ImageStats | None], *, hash_bits: int = 6, similarity: float = SIMILARITY,
                candidates: Sequence[tuple[int, int]] = ()) -> tuple[list[list[int]], list[list[int]]]:
    """(exact groups, near groups) of indices into ``stats`` (None: unreadable, never grouped).

    Exact: the same SHA-256. Near: a pair within ``hash_bits`` of the perceptual hash, or among ``candidates``
    (e.g. embedding neighbours), whose thumbnails pass :func:`same_picture`; chained into groups. A near group
    holds the exact copies of its members too; each exact group is compared once, by its first member.
    """
    by_sha: dict[str, list[int]] = {}
    for i, s in enumerate(stats):
        if s is not None:
            by_sha.setdefault(s.sha256, []).append(i)
    exact = sorted(g for g in by_sha.values() if len(g) > 1)
    rep = {i: g[0] for g in exact for i in g}
    ok = [i for i, s in enumerate(stats) if s is not None and rep.get(i, i) == i]
    pairs, _ = hash_pairs(np.array([stats[i].phash for i in ok], dtype=np.uint64), hash_bits)
    cand = {(ok[a], ok[b]) for a, b in pairs.tolist()}
    cand |= {(min(a, b), max(a, b)) for a, b in candidates if a != b and stats[a] is not None and
             stats[b] is not None and rep.get(a, a) == a and rep.get(b, b) == b}
    near = [(a, b) for a, b in sorted(cand) if same_picture(stats[a], stats[b], similarity=similarity)]
    members = {g[0]: g for g in exact}
    groups = [sorted({j for i in g for j in members.get(i, [i])}) for g in groups_of(near, len(stats))]
    return exact, groups


class CopyIndex:
    """``load_splits``' ``group`` callback: hashes the images once, groups their copies (path → group id), and
    keeps the stats and the unreadable files for whoever asks next. :meth:`add` hashes more images later (train
    reads the test images only after it has chosen its model) and regroups them all."""

    def __init__(self, *, hash_bits: int = 6, similarity: float = SIMILARITY, workers: int | None = None,
                 progress: bool = False):
        self.hash_bits, self.similarity, self.workers, self.progress = hash_bits, similarity, workers, progress
        self.stats: dict[str, ImageStats] = {}
        self.unreadable: list[dict[str, str]] = []

    def __call__(self, items) -> dict[str, int]:
        return self.add(items)

    def add(self, items) -> dict[str, int]:
        """Hash ``items`` (those not hashed yet) and return the copy groups of every image hashed so far."""
        new = [it.path for it in items if it.path not in self.stats]
        stats, bad = image_stats(new, workers=self.workers, progress=self.progress)
        self.unreadable += bad
        self.stats.update((p, s) for p, s in zip(new, stats) if s is not None)
        paths = list(self.stats)
        exact, near = copy_groups([self.stats[p] for p in paths], hash_bits=self.hash_bits,
                                  similarity=self.similarity)
        groups: dict[str, int] = {}
        for g, members in enumerate(_merged(exact + near)):
            groups.update((paths[i], g) for i in members)
        return groups


def _merged(groups: list[list[int]]) -> list[list[int]]:
    """Groups that share a member, merged (an exact group sits inside the near group of its first member)."""
    pairs = [(g[0], i) for g in groups for i in g[1:]]
    return groups_of(pairs, 1 + max((i for g in groups for i in g), default=0)) if pairs else []


def save_signatures(path, stats: Sequence[ImageStats], splits: Sequence[str]) -> None:
    """Write the hashes and signatures of ``stats`` (with each image's split name) to a ``.safetensors`` file
    (tensors and a JSON header only, nothing to unpickle), atomically. ``evaluate`` reads it to find resized or
    re-encoded copies of the images a run saw (:func:`copies_of`); float16 signatures: 1.5 KB an image."""
    import json

    from safetensors.numpy import save

    from ..atomic import atomic_write_bytes

    names = sorted(set(splits))
    # safetensors holds numbers only: split names travel as codes with the name list in the header.
    tensors = {"phash": np.array([s.phash for s in stats], dtype=np.uint64).reshape(-1),
               "signature": np.array([s.signature for s in stats], dtype=np.float16).reshape(-1, SIDE * SIDE * 3),
               "split": np.array([names.index(s) for s in splits], dtype=np.int32).reshape(-1)}
    atomic_write_bytes(path, save(tensors, metadata={"splits": json.dumps(names)}))


def load_signatures(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(phash, signature, split) as :func:`save_signatures` wrote them."""
    import json

    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            names = np.array(json.loads((f.metadata() or {})["splits"]), dtype=str)
            phash, signature, split = (f.get_tensor(k) for k in ("phash", "signature", "split"))
    except SafetensorError as exc:  # the library's own error type: say it as a ValueError like the checks below
        raise ValueError(str(exc)) from None
    if len(phash) != len(signature) or len(phash) != len(split) or (len(split) and split.max() >= len(names)):
        raise ValueError(f"inconsistent rows: {len(phash)} hashes, {len(signature)} signatures, {len(split)} splits")
    return phash.astype(np.uint64), signature.astype(np.float32), names[split] if len(split) else split.astype(str)


def copies_of(stats: Sequence[ImageStats | None], phash: np.ndarray, signature: np.ndarray, *, hash_bits: int = 6,
              similarity: float = SIMILARITY) -> list[int | None]:
    """For each of ``stats``: the index of a seen image (``phash``/``signature`` rows) it is a copy of, or None.

    Candidates come from the same pigeonhole index as :func:`copy_groups` over both sets together; only pairs
    that cross from ``stats`` to the seen rows count, and each must pass the signature test.
    """
    ok = [i for i, s in enumerate(stats) if s is not None]
    n_seen = len(phash)
    both = np.concatenate([np.asarray(phash, dtype=np.uint64),
                           np.array([stats[i].phash for i in ok], dtype=np.uint64)])
    pairs, _ = hash_pairs(both, hash_bits)
    out: list[int | None] = [None] * len(stats)
    for a, b in pairs.tolist():  # a < b: a crossing pair has the seen row first
        if a < n_seen <= b:
            i = ok[b - n_seen]
            if out[i] is None and float(signature[a] @ stats[i].signature) >= similarity:
                out[i] = a
    return out


def unusable(s: ImageStats) -> str | None:
    """Why an image is unusable for training (tiny, extreme aspect ratio, near-constant), or None."""
    if min(s.width, s.height) < MIN_SIDE:
        return f"tiny: {s.width}×{s.height} pixels (< {MIN_SIDE} on a side)"
    if max(s.width, s.height) / max(1, min(s.width, s.height)) > MAX_ASPECT:
        return f"extreme aspect ratio: {s.width}×{s.height} (> {MAX_ASPECT:g}:1)"
    if s.std < MIN_STD:
        return f"near-constant: grey-level spread {s.std:.2f} (< {MIN_STD:g}); blank or a single colour"
    return None
