"""The feature store: one directory, no pickle, memory-mappable, resumable, complete only when marked so.

Layout of a finished store::

    features.npy   N × feature_shape array (np.load(..., mmap_mode="r") maps it without reading it)
    index.csv      row,path,label,sha256,width,height   (row i ↔ features[i])
    skipped.csv    path,label,reason                      (images that could not be read)
    meta.json      model, weights hash, layer, pooling, preprocessing, shape, dtype, version, times, counts;
                   written last, with "complete": true — its presence is what marks the store complete

While extraction runs, everything lives in ``.work/``: ``state.json`` (the configuration fingerprint),
``features.npy`` (preallocated for every input) and one ``chunks/NNNNNN.json`` per finished chunk. A chunk record is
written (atomically) only after its features are flushed, so after a crash or kill -9 the next run redoes at most
the chunks that have no record.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_write_json, atomic_write_text, fsync_dir
from ..errors import HeadstartError, IncompleteStoreError

__all__ = ["FeatureSet", "IncompleteStoreError", "StoreWriter", "META", "WORK"]

META, FEATURES, INDEX, SKIPPED, WORK = "meta.json", "features.npy", "index.csv", "skipped.csv", ".work"
INDEX_COLUMNS = ("row", "path", "label", "sha256", "width", "height")



@dataclass
class FeatureSet:
    """A finished feature store: ``features`` (memory-mapped), ``paths``, ``labels``, ``meta``, ``skipped``."""

    root: Path
    features: np.ndarray
    paths: list[str]
    labels: list[str]
    meta: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)
    sha256: list[str] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def load(cls, root: str | Path, *, mmap: bool = True) -> "FeatureSet":
        root = Path(root)
        meta_path = root / META
        if not meta_path.is_file():
            if (root / WORK).is_dir():
                raise IncompleteStoreError(
                    f"{root} holds an unfinished extraction (interrupted or still running). Rerun the same "
                    f"`headstart extract` command to resume it.")
            raise IncompleteStoreError(f"{root} is not a feature store: expected {root / META}.")
        meta = json.loads(meta_path.read_text())
        if not meta.get("complete"):
            raise IncompleteStoreError(f"{root}: the store is not marked complete; rerun the extraction.")
        try:
            features = np.load(root / FEATURES, mmap_mode="r" if mmap else None, allow_pickle=False)
        except ValueError as exc:  # object arrays would need pickle: never
            raise HeadstartError(f"{root / FEATURES}: refused ({exc}). headstart stores plain numeric arrays; "
                                 f"re-extract the features.") from None
        with open(root / INDEX, newline="", encoding="utf-8", errors="surrogateescape") as f:
            rows = list(csv.DictReader(f))
        with open(root / SKIPPED, newline="", encoding="utf-8", errors="surrogateescape") as f:
            skipped = list(csv.DictReader(f))
        if len(rows) != features.shape[0]:
            raise HeadstartError(f"{root}: index.csv has {len(rows)} rows but features.npy {features.shape[0]}.")
        return cls(root, features, [r["path"] for r in rows], [r["label"] for r in rows], meta, skipped,
                   [r["sha256"] for r in rows], [(int(r["width"]), int(r["height"])) for r in rows])

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    @property
    def y(self) -> np.ndarray:
        """Labels as integer codes into :attr:`classes`."""
        lookup = {c: i for i, c in enumerate(self.classes)}
        return np.array([lookup[lbl] for lbl in self.labels], dtype=np.int64)


class StoreWriter:
    """Writes a store chunk by chunk into ``root/.work`` and finalizes it; resumes a matching unfinished one."""

    def __init__(self, root: Path, fingerprint: dict[str, Any], n_items: int, feature_shape: Sequence[int],
                 dtype: str, batch_size: int, chunk_batches: int, created: str):
        self.root, self.work = Path(root), Path(root) / WORK
        self.n = n_items
        self.shape, self.dtype = (n_items, *feature_shape), dtype
        state = {"fingerprint": fingerprint, "shape": list(self.shape), "dtype": dtype, "batch_size": batch_size,
                 "chunk_size": batch_size * chunk_batches, "created": created}
        self.resumed = self._open(state)
        self.state = json.loads((self.work / "state.json").read_text())
        # A resumed run keeps the first run's batching: identical batches give byte-identical features.
        self.batch_size, self.chunk_size = self.state["batch_size"], self.state["chunk_size"]
        self.features = np.load(self.work / FEATURES, mmap_mode="r+")

    def _open(self, state: dict[str, Any]) -> bool:
        state_path = self.work / "state.json"
        if state_path.is_file():
            old = json.loads(state_path.read_text())
            same = ("fingerprint", "shape", "dtype")
            if all(old.get(k) == state[k] for k in same) and "batch_size" in old:
                return True
            shutil.rmtree(self.work)  # an unfinished run of another configuration: nothing to reuse
        (self.work / "chunks").mkdir(parents=True, exist_ok=True)
        open_reserved(self.work / FEATURES, np.dtype(self.dtype), self.shape).flush()  # before state.json
        atomic_write_json(state_path, state)
        fsync_dir(self.work)
        return False

    @property
    def n_chunks(self) -> int:
        return (self.n + self.chunk_size - 1) // self.chunk_size

    def done_chunks(self) -> set[int]:
        return {int(p.stem) for p in (self.work / "chunks").glob("*.json")}

    def write_chunk(self, chunk: int, rows: list[dict[str, Any]], features: dict[int, np.ndarray]) -> None:
        """Store the features of one chunk (``features[i]`` for item i), flush them, then record the chunk."""
        for i, vec in features.items():
            self.features[i] = vec
        self.features.flush()
        atomic_write_json(self.work / "chunks" / f"{chunk:06d}.json", rows)

    def finalize(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Compact good rows into the final files and write meta.json last. Returns the counts."""
        rows: list[dict[str, Any]] = []
        for c in range(self.n_chunks):
            rows += json.loads((self.work / "chunks" / f"{c:06d}.json").read_text())
        good = [r for r in rows if not r.get("error")]
        tmp = self.root / (FEATURES + ".tmp")
        out = open_reserved(tmp, np.dtype(self.dtype), (len(good), *self.shape[1:]))
        for start in range(0, len(good), 4096):  # stream: memory stays flat whatever N is
            idx = [r["item"] for r in good[start:start + 4096]]
            out[start:start + len(idx)] = self.features[idx]
        out.flush()
        del out
        _fsync_file(self.root / (FEATURES + ".tmp"))
        (self.root / (FEATURES + ".tmp")).replace(self.root / FEATURES)
        atomic_write_text(self.root / INDEX, _csv(INDEX_COLUMNS, [
            (i, r["path"], r["label"], r["sha256"], r["width"], r["height"]) for i, r in enumerate(good)]))
        atomic_write_text(self.root / SKIPPED, _csv(("path", "label", "reason"), [
            (r["path"], r["label"], r["error"]) for r in rows if r.get("error")]))
        counts = {"images": len(rows), "extracted": len(good), "skipped": len(rows) - len(good)}
        atomic_write_json(self.root / META, {**meta, "counts": counts, "created": self.state["created"],
                                             "complete": True})
        del self.features
        shutil.rmtree(self.work)
        return counts


def _csv(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def open_reserved(path: Path, dtype: np.dtype, shape: tuple) -> np.memmap:
    """A new memory-mapped .npy file whose disk space is reserved; on failure (disk full) the file is removed."""
    np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()  # writes the header, sizes the file
    try:
        reserve(path)
    except OSError:
        path.unlink(missing_ok=True)  # give the space back
        raise
    return np.load(path, mmap_mode="r+")


def reserve(path: Path) -> None:
    """Allocate the disk blocks of a sized (sparse) file now. A memory-mapped write into a sparse file on a full
    disk kills the process with SIGBUS; reserving up front turns that into an OSError (ENOSPC) at the start."""
    if not hasattr(os, "posix_fallocate"):  # macOS / Windows: no reservation, as before
        return
    with open(path, "rb+") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            try:
                os.posix_fallocate(f.fileno(), 0, size)
            except OSError as exc:
                raise OSError(exc.errno, f"{exc.strerror} (needs {size / 2**20:.1f} MiB)", str(path)) from None


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())
