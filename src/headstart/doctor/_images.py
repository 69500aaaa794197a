"""What the doctor reads from the pixels: a perceptual hash, a small thumbnail, and the signs of an unusable image.

A resized or re-encoded copy keeps its 64-bit perceptual hash (imagehash's DCT ``phash``) within a few bits and
its 64×64 thumbnail within a few grey levels everywhere, while its pooled embedding can move a lot: on ELPV,
a test cell resized ×0.7 and saved as JPEG q70 had cosine 0.73–0.99 to its original (median 0.94), while distinct
neighbouring cells of one module reached 0.996 (benchmarks/doctor.py). So the hash finds candidates and the
thumbnail confirms them (:func:`same_picture`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["ImageStats", "image_stats", "hash_distance", "same_picture", "copy_groups", "unusable", "THUMB", "MIN_SIDE",
           "MAX_ASPECT", "MIN_STD"]

THUMB = 64  # thumbnail side (grey levels, uint8)
BLOCK = 8  # the thumbnail check compares 8×8-pixel blocks: a local difference (a crack, a digit) is not averaged away
# Unusable images: smaller than this side, longer than this ratio, or with less grey-level spread than this.
MIN_SIDE = 32
MAX_ASPECT = 4.0
MIN_STD = 2.0


@dataclass
class ImageStats:
    """One image's pixel summary: ``phash`` (64 bits), ``thumb`` (64×64 grey), size and grey-level spread."""

    phash: int
    thumb: np.ndarray
    width: int  # of the file (before any reduced-size decoding)
    height: int
    std: float
    sha256: str


def _one(path: str) -> ImageStats | str:
    """The stats of one file, or the reason it cannot be read (the message every headstart reader gives)."""
    import imagehash
    from PIL import Image

    from ..data import read_image_file
    from ..errors import ImageLoadError

    try:  # a JPEG decodes at a reduced size (≥ 2× the thumbnail): a 12-megapixel photo in milliseconds
        im, sha, (w, h) = read_image_file(path, draft_size=(2 * THUMB, 2 * THUMB))
    except ImageLoadError as exc:
        return str(exc)
    grey = im.convert("L")
    bits = imagehash.phash(grey).hash.ravel()
    thumb = np.asarray(grey.resize((THUMB, THUMB), Image.BOX), dtype=np.uint8)
    return ImageStats(int(np.packbits(bits).view(">u8")[0]), thumb, w, h,
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


def same_picture(a: np.ndarray, b: np.ndarray, *, tolerance: float = 4.0) -> bool:
    """True when two thumbnails show the same picture: after matching their mean brightness, every 8×8 block
    differs by at most ``tolerance`` grey levels on average (JPEG q70 and a ×0.7 resize stay under 3.6)."""
    d = np.abs((a.astype(np.float32) - a.mean()) - (b.astype(np.float32) - b.mean()))
    blocks = d.reshape(THUMB // BLOCK, BLOCK, THUMB // BLOCK, BLOCK).mean(axis=(1, 3))
    return bool(blocks.max() <= tolerance)


def copy_groups(stats: Sequence[ImageStats | None], *, hash_bits: int = 6, tolerance: float = 4.0,
                candidates: Sequence[tuple[int, int]] = ()) -> tuple[list[list[int]], list[list[int]]]:
    """(exact groups, near groups) of indices into ``stats`` (None: unreadable, never grouped).

    Exact: the same SHA-256. Near: a pair within ``hash_bits`` of the perceptual hash, or among ``candidates``
    (e.g. embedding neighbours), whose thumbnails pass :func:`same_picture`; chained into groups. A near group
    holds the exact copies of its members too; each exact group is compared once, by its first member.
    """
    from ._rules import groups_of, hash_pairs

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
    near = [(a, b) for a, b in sorted(cand) if same_picture(stats[a].thumb, stats[b].thumb, tolerance=tolerance)]
    members = {g[0]: g for g in exact}
    groups = [sorted({j for i in g for j in members.get(i, [i])}) for g in groups_of(near, len(stats))]
    return exact, groups


def unusable(s: ImageStats) -> str | None:
    """Why an image is unusable for training (tiny, extreme aspect ratio, near-constant), or None."""
    if min(s.width, s.height) < MIN_SIDE:
        return f"tiny: {s.width}×{s.height} pixels (< {MIN_SIDE} on a side)"
    if max(s.width, s.height) / max(1, min(s.width, s.height)) > MAX_ASPECT:
        return f"extreme aspect ratio: {s.width}×{s.height} (> {MAX_ASPECT:g}:1)"
    if s.std < MIN_STD:
        return f"near-constant: grey-level spread {s.std:.2f} (< {MIN_STD:g}); blank or a single colour"
    return None
