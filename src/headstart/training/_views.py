"""Cached pooled features of several views of every image (:mod:`headstart.views`), for the cheap strategies.

The cache is kept per *image* (the SHA-256 of the file), not per list of files as the feature stores of
``cached_activations`` are: cross-validation, another split of the same data set or a rerun with other settings
reuses every view already computed. Rows live in ``$HEADSTART_HOME/cache/views-<key>/rows-<n>.npz`` (numpy only,
no pickle), one file per call that computed something, written atomically; the cache cap applies as for the
other activations.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data import Item
from ..errors import HeadstartError
from ..features import ExtractConfig
from ..home import activations_dir
from ..views import ViewFeaturesFn, check_views, view_ops
from ..weights import sha256_file

__all__ = ["view_features", "cached_share"]

_logger = logging.getLogger(__name__)


def _file_key(path: str) -> str:
    """A file's identity for the cache: its content's SHA-256 (the same image under another name, a link or a
    copy shares its features; an edited file gets new ones)."""
    try:
        return sha256_file(path)
    except OSError:
        return f"unreadable:{os.path.abspath(path)}"


def _cache_dir(config: ExtractConfig, views: str, root: Path | None) -> Path:
    """One folder per feature network (the identity `extract` keys its ONNX exports by) and view set."""
    from ..features import feature_identity

    key = json.dumps([feature_identity(config), views], sort_keys=True)
    return (root or activations_dir()) / f"views-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


def _load_rows(folder: Path) -> dict[str, np.ndarray]:
    rows: dict[str, np.ndarray] = {}
    for f in sorted(folder.glob("rows-*.npz")):
        try:
            with np.load(f, allow_pickle=False) as z:
                rows.update(zip(z["keys"].tolist(), z["features"]))
        except (OSError, ValueError, KeyError):  # a damaged file only costs recomputing its rows
            _logger.warning("ignoring unreadable view cache file %s", f)
    return rows


def cached_share(items: Sequence[Item], config: ExtractConfig, views: str, *, cache_root: Path | None = None
                 ) -> float:
    """The fraction of ``items`` whose views are already cached (``auto``'s plan: a cached extraction costs
    nothing). Reads only the cache files' key lists, and hashes the files (what the cache is keyed by)."""
    folder = _cache_dir(config, views, cache_root)
    if not items or not folder.is_dir():
        return 0.0
    known: set[str] = set()
    for f in folder.glob("rows-*.npz"):
        try:
            with np.load(f, allow_pickle=False) as z:
                known.update(z["keys"].tolist())
        except (OSError, ValueError, KeyError):
            continue
    return sum(_file_key(it.path) in known for it in items) / len(items)


def view_features(items: Sequence[Item], classes: list[str], config: ExtractConfig, views: str, *,
                  progress: bool = False, cache_root: Path | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Features of every view of ``items``: (X of N×V×D float32, y of N labels, indices of the readable items).

    View 0 is the image as it is (the features ``extract`` computes). Unreadable images are left out (logged).
    """
    folder = _cache_dir(config, views, cache_root)
    keys = [_file_key(it.path) for it in items]
    rows = _load_rows(folder) if folder.is_dir() else {}
    missing = [i for i, k in enumerate(keys) if k not in rows]
    errors: dict[int, str] = {}
    if missing:
        computed = _compute(items, missing, config, views, errors)
        if computed:
            _save_rows(folder, {keys[i]: f for i, f in computed.items()})
            rows.update({keys[i]: f for i, f in computed.items()})
    from ..cache import note_used

    note_used(folder)
    good = [i for i, k in enumerate(keys) if k in rows]
    for i, why in errors.items():
        _logger.warning("skipped %s: %s", items[i].path, why)
    if not good:
        raise HeadstartError(f"None of the {len(items)} images could be read (first: {items[0].path}).")
    n_views = len(view_ops(views))
    x = np.stack([rows[keys[i]] for i in good]).reshape(len(good), n_views, -1)
    lookup = {c: j for j, c in enumerate(classes)}
    y = np.array([lookup[items[i].label] for i in good], dtype=np.int64)
    return x.astype(np.float32, copy=False), y, good


def _compute(items: Sequence[Item], idx: list[int], config: ExtractConfig, views: str,
             errors: dict[int, str]) -> dict[int, np.ndarray]:
    """Run the feature network on every view of ``items[idx]`` (the runner: one worker per core).

    Images are decoded at full size (no draft mode), exactly as prediction decodes them.
    """
    from ..features import feature_network  # exactly what `extract` runs (one construction path)
    from ..runner import plan_batches, run_batches

    net = feature_network(config)
    net_fn, pre = net.fn, net.preprocessing
    check_views(views, pre.input_size)
    fn = ViewFeaturesFn(net_fn, views)
    sub = [items[i] for i in idx]
    # Each call runs V views of the batch: 4 images keep a CPU worker's batch near extract's default.
    batch = config.batch_size or (4 if getattr(net_fn, "runs_in_workers", True) else 32)
    out: dict[int, np.ndarray] = {}
    _logger.info("computing %d views of %d images", len(view_ops(views)), len(sub))
    for b_idx, feats, infos in run_batches(sub, pre.array_transform(), fn, plan_batches(len(sub), batch),
                                           workers=config.workers):
        good = iter(feats if feats is not None else [])
        for j, (_, _, _, err) in zip(b_idx, infos):
            if err is None:
                out[idx[j]] = np.asarray(next(good), np.float32)
            else:
                errors[idx[j]] = err
    return out


def _save_rows(folder: Path, rows: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n = len(list(folder.glob("rows-*.npz")))
    tmp = folder / f".rows-{os.getpid()}.tmp.npz"
    np.savez(tmp, keys=np.array(list(rows)), features=np.stack(list(rows.values())))
    os.replace(tmp, folder / f"rows-{n:05d}-{os.getpid()}.npz")
    from ..cache import note_written

    note_written(folder, f"cached views of {len(rows)} images")
