"""``extract``: run a folder / CSV / file list through a network and save one layer's features to a store.

Decoding runs in DataLoader worker processes while the main process runs the network under
``torch.inference_mode()`` with channels_last tensors; features stream to a memory-mapped file chunk by chunk,
so memory stays flat as the dataset grows and an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data import Item, read_image_file, read_source
from ..errors import HeadstartError, ImageLoadError
from ..models import get_spec
from ..backends import batch_size_for
from ..weights import sha256_file
from ._device_decode import decode_batch, read_raw_jpeg
from ._model import FeatureModel
from ._store import META, WORK, FeatureSet, StoreWriter

__all__ = ["ExtractConfig", "ExtractStats", "extract", "feature_model_for", "default_workers", "batch_loader"]

_logger = logging.getLogger(__name__)

DTYPES = ("float32", "float16")
# JPEGs are decoded at a reduced scale (Pillow draft mode) only down to DRAFT_FACTOR × the resize target, so the
# final antialiased resize still averages several decoded pixels per output pixel. Measured on 12-MP photos
# (benchmarks/extract.py): 2.6× faster decoding, features within what re-saving the JPEG at quality 95 changes.
DRAFT_FACTOR = 4


@dataclass
class ExtractConfig:
    """Everything that determines the features; the store records it and a rerun compares it."""

    model: str = "lite0"
    layer: str | None = None  # None: pooled pre-classifier vector (VGG: fc2)
    pooling: str = "avg"  # avg | max | avgmax | none
    weights: str | None = "imagenet"
    input_shape: tuple[int, int, int] | None = None
    dtype: str = "float32"
    draft: bool = True  # reduced-size JPEG decoding
    capture: str = "output"  # "input": what enters `layer` (the cut point of partial fine-tuning)
    gpu_decode: bool = False  # decode JPEGs on the GPU (nvJPEG) and resize there; needs device cuda
    # Execution settings: they change speed, not the features (the backends agree within backends.PARITY_TOL).
    batch_size: int | None = None  # None: 4 per CPU worker (small batches run fastest single-threaded); GPU: fit
    workers: int | None = None  # None: one per core
    chunk_batches: int = 8  # batches per resumable chunk
    backend: str = "auto"  # auto | torch | onnxruntime (see headstart.backends)
    device: str | None = None  # None/"auto": CUDA when available, else CPU
    compile: bool = False  # torch.compile the network (torch backend; pays off on long GPU runs)

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("batch_size", "workers", "chunk_batches", "backend", "device", "compile"):
            d.pop(k)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        return d


@dataclass
class ExtractStats:
    images: int = 0
    extracted: int = 0
    skipped: int = 0
    computed: int = 0  # images run through the network in this call (0 on a cache hit)
    cached: bool = False
    resumed_chunks: int = 0
    seconds: float = 0.0
    skipped_reasons: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def default_workers() -> int:
    """One worker process per core, each decoding and running the network single-threaded."""
    return max(1, os.cpu_count() or 1)


class _Batches(Dataset):
    """Decodes a batch and (in CPU mode) runs the network on it, inside a DataLoader worker.

    On a few-core CPU, one single-threaded network per core beats one multi-threaded network fed by decoding
    workers: no thread synchronization, no oversubscription, and decoding overlaps with the other worker's
    compute (benchmarks/RESULTS.md). The model is shared with the workers copy-on-write (fork).
    """

    def __init__(self, items: Sequence[Item], transform: Callable, draft_size: tuple[int, int] | None,
                 fm: Callable | None, raw_jpeg: bool = False):
        self.items, self.transform, self.draft_size, self.fm = items, transform, draft_size, fm
        self.raw_jpeg = raw_jpeg  # JPEGs travel undecoded, for the device to decode (_device_decode.py)

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, i: int):
        try:
            im, sha, (w, h) = read_image_file(self.items[i].path, draft_size=self.draft_size)
            return self.transform(im), (sha, w, h, None)
        except ImageLoadError as exc:
            return None, ("", 0, 0, exc.cause)
        except Exception as exc:  # a decoder bug must not end a 20,000-image run; the image is skipped
            return None, ("", 0, 0, f"{type(exc).__name__}: {exc}")

    def __getitems__(self, idx: list[int]):
        if self.raw_jpeg:
            loaded = [read_raw_jpeg(self.items[i].path) or self._load(i) for i in idx]
            return idx, [t for t, _ in loaded], [info for _, info in loaded]
        loaded = [self._load(i) for i in idx]
        good = [t for t, _ in loaded if t is not None]
        x = torch.stack(good) if good else None
        if x is not None and self.fm is not None and getattr(self.fm, "runs_in_workers", True):
            x = np.asarray(self.fm(x))
        return idx, x, [info for _, info in loaded]


def _identity(batch):
    return batch


class _WorkerInit:
    def __init__(self, threads: int):
        self.threads = threads

    def __call__(self, _):
        torch.set_num_threads(self.threads)


def batch_loader(items: Sequence[Item], transform: Callable, fn: Callable | None, batches: list[list[int]], *,
                 workers: int | None = None, draft: tuple[int, int] | None = None,
                 device_decode: Callable | None = None) -> Iterator[tuple]:
    """Yields (indices, fn(batch) as numpy, per-item (sha256, width, height, error)) for each batch, in order.

    On the CPU ``fn`` (a backend from :func:`headstart.backends.prepare`) runs inside the worker processes,
    single-threaded; on a GPU (``fn.runs_in_workers`` false) the workers decode into pinned memory and the main
    process runs ``fn`` while they decode the next batches. ``device_decode`` (a tensor transform; main-process
    ``fn`` only; extract checks that) makes the workers send JPEGs undecoded and decodes them on ``fn.device``.
    """
    workers = default_workers() if workers is None else workers
    in_workers = fn is None or getattr(fn, "runs_in_workers", True)
    # Workers are forked after the parent has used OpenMP; a forked child that enters an OpenMP parallel region
    # can deadlock, so each worker runs single-threaded (one network per core is the fast layout anyway).
    ds = _Batches(items, transform, draft, fn, raw_jpeg=device_decode is not None)
    loader = DataLoader(ds, batch_sampler=batches, num_workers=workers,
                        collate_fn=_identity, worker_init_fn=_WorkerInit(1), prefetch_factor=2 if workers else None,
                        pin_memory=not in_workers and torch.cuda.is_available())
    if in_workers:
        yield from loader
        return
    for idx, x, infos in loader:
        if device_decode is not None:
            x = decode_batch(x, infos, device_decode, lambda k, idx=idx: ds._load(idx[k]), fn.device)
        yield idx, (fn(x) if x is not None else None), infos


def feature_model_for(config: ExtractConfig) -> FeatureModel:
    # Random-init models are seeded so that a resumed extraction computes exactly what the first run did.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return FeatureModel(config.model, layer=config.layer, pooling=config.pooling, weights=config.weights,
                            input_shape=config.input_shape, capture=config.capture)


def _fingerprint(config: ExtractConfig, items: Sequence[Item]) -> dict[str, Any]:
    h = hashlib.sha256()
    for it in items:
        try:
            st = os.stat(it.path)
            sig = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            sig = "missing"
        h.update(f"{it.path}\0{it.label}\0{sig}\n".encode("utf-8", "surrogateescape"))
    spec = get_spec(config.model)
    if config.weights == "imagenet":
        weights_id = spec.weights.sha256 if spec.weights else "timm"
    elif config.weights is None:
        weights_id = "random(seed=0)"
    else:
        weights_id = sha256_file(config.weights)
    return {"config": {**config.identity(), "model": spec.name}, "weights_sha256": weights_id,
            "inputs_sha256": h.hexdigest(), "n": len(items)}


def _prepare_out(out: Path, fingerprint: dict[str, Any], overwrite: bool) -> FeatureSet | None:
    """Return the existing store on a cache hit; clear or refuse a store that does not match."""
    if (out / META).is_file():
        meta = json.loads((out / META).read_text())
        if meta.get("complete") and meta.get("fingerprint") == fingerprint:
            return FeatureSet.load(out)
        if not overwrite:
            raise HeadstartError(
                f"{out} already holds features of other inputs or another configuration (model, layer, pooling, "
                f"dtype, or the files changed). Pass --overwrite (overwrite=True) to replace them, or another --out.")
        for name in ("meta.json", "features.npy", "index.csv", "skipped.csv"):
            (out / name).unlink(missing_ok=True)
    elif out.is_dir() and any(p.name != WORK for p in out.iterdir()):
        raise HeadstartError(f"{out} exists and is not a feature store; refusing to write into it. Choose an "
                             f"empty or new --out folder.")
    if overwrite and (out / WORK).is_dir():
        shutil.rmtree(out / WORK)
    out.mkdir(parents=True, exist_ok=True)
    return None


def extract(source: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike,
            config: ExtractConfig | None = None, *, overwrite: bool = False, progress: bool = True,
            **overrides: Any) -> FeatureSet:
    """Extract features for every image of ``source`` into the store ``out`` and return it.

    Args:
        source: a folder (recursive; class subfolders become labels), a CSV with ``path[,label]``, or files.
        out: the store directory (created). Rerunning with the same inputs and configuration does no model work;
            after an interruption it resumes.
        config: an :class:`ExtractConfig`; keyword ``overrides`` (``model=``, ``layer=``, ``pooling=`` …)
            replace its fields.
        overwrite: replace a store that holds other inputs or another configuration.
        progress: show a progress bar (only on an interactive terminal).

    Returns:
        The :class:`FeatureSet`; ``.stats`` tells what this call did (cached, resumed, computed, skipped).
    """
    config = replace(config or ExtractConfig(), **overrides)
    if config.dtype not in DTYPES:
        raise HeadstartError(f"dtype must be one of {', '.join(DTYPES)}; received {config.dtype!r}.")
    if config.batch_size is not None and config.batch_size < 1:
        raise HeadstartError(f"batch_size must be at least 1; received {config.batch_size}.")
    if config.workers is not None and config.workers < 0:
        raise HeadstartError(f"workers must be ≥ 0 (0: decode in this process); received {config.workers}.")
    t0 = time.perf_counter()
    items = read_source(source)
    out = Path(out)
    fingerprint = _fingerprint(config, items)
    cached = _prepare_out(out, fingerprint, overwrite)
    if cached is not None:
        cached.stats = ExtractStats(len(items), len(cached), len(cached.skipped), 0, True,
                                    seconds=time.perf_counter() - t0)
        _logger.info("%s is up to date: no model work done", out)
        return cached
    fm = feature_model_for(config)
    fn, info = _backend_for(fm, config)
    if config.gpu_decode and fn.runs_in_workers:
        raise HeadstartError("--gpu-decode needs the network on a GPU (--device cuda); this run uses "
                             f"{info.name} on the CPU workers.")
    config = replace(config, batch_size=config.batch_size or batch_size_for(fn, (3, *fm.model.input_size), 4))
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    writer = StoreWriter(out, fingerprint, len(items), fm.feature_shape, config.dtype, config.batch_size,
                         config.chunk_batches, created)
    stats = _run(fm, fn, items, writer, config, progress)
    meta = _meta(fm, config, fingerprint)
    meta["backend"] = info.to_dict()
    counts = writer.finalize(meta)
    stats.images, stats.extracted, stats.skipped = counts["images"], counts["extracted"], counts["skipped"]
    stats.seconds = time.perf_counter() - t0
    fs = FeatureSet.load(out)
    fs.stats = stats
    return fs


def _backend_for(fm: FeatureModel, config: ExtractConfig):
    from ..backends import prepare

    fn, info = prepare(fm.as_module(), (3, *fm.model.input_size), backend=config.backend, device=config.device,
                       compile=config.compile)
    parity = f", parity {info.parity:.1e}" if info.parity is not None else ""
    _logger.info("backend: %s on %s (%s%s; single-threaded img/s %s)", info.name, info.device, info.reason, parity,
                 info.speed or "not measured")
    return fn, info


def _run(fm: FeatureModel, fn: Callable, items: Sequence[Item], writer: StoreWriter, config: ExtractConfig,
         progress: bool) -> ExtractStats:
    done = writer.done_chunks()
    stats = ExtractStats(resumed_chunks=len(done))
    cs = writer.chunk_size
    batches, batch_chunk = [], []
    for c in range(writer.n_chunks):
        if c in done:
            continue
        rows = list(range(c * cs, min((c + 1) * cs, len(items))))
        for b in range(0, len(rows), writer.batch_size):
            batches.append(rows[b:b + writer.batch_size])
            batch_chunk.append(c)
    if not batches:
        return stats
    draft = (DRAFT_FACTOR * min(fm.preprocessing.resize_size),) * 2 if config.draft else None
    device_decode = fm.preprocessing.tensor_transform() if config.gpu_decode else None
    loader = batch_loader(items, fm.preprocessing.transform(), fn, batches, workers=config.workers, draft=draft,
                          device_decode=device_decode)
    np_dtype = np.dtype(config.dtype)
    pending_rows: dict[int, list] = {}
    pending_feats: dict[int, dict[int, np.ndarray]] = {}
    left = {c: batch_chunk.count(c) for c in set(batch_chunk)}
    with _progress_bar(progress, len(items), len(items) - sum(len(b) for b in batches)) as advance:
        for b, (idx, feats, infos) in enumerate(loader):
            c = batch_chunk[b]
            feats = feats if feats is not None else []
            good = iter(feats)
            rows, store = pending_rows.setdefault(c, []), pending_feats.setdefault(c, {})
            for i, (sha, w, h, err) in zip(idx, infos):
                rows.append({"item": i, "path": items[i].path, "label": items[i].label, "sha256": sha,
                             "width": w, "height": h, "error": err})
                if err is None:
                    store[i] = next(good).astype(np_dtype)
                else:
                    stats.skipped_reasons.append((items[i].path, err))
            stats.computed += len(feats)
            left[c] -= 1
            if left[c] == 0:
                writer.write_chunk(c, pending_rows.pop(c), pending_feats.pop(c))
            advance(len(idx))
    return stats


class _progress_bar:
    """A rich progress bar with images/s and ETA on a terminal; silent in logs and with progress=False."""

    def __init__(self, enabled: bool, total: int, completed: int):
        from rich.console import Console

        self.enabled = enabled and Console(stderr=True).is_terminal
        self.total, self.completed = total, completed

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.bar = Progress(TextColumn("extracting"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                            TextColumn("{task.fields[rate]} img/s"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), console=Console(stderr=True))
        self.bar.start()
        self.task = self.bar.add_task("extract", total=self.total, completed=self.completed, rate="-")
        self.t0, self.n = time.perf_counter(), 0

        def advance(n: int) -> None:
            self.n += n
            rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.update(self.task, advance=n, rate=f"{rate:.1f}")

        return advance

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self.bar.stop()


def _meta(fm: FeatureModel, config: ExtractConfig, fingerprint: dict[str, Any]) -> dict[str, Any]:
    from .. import __version__

    return {
        "format": "headstart-features/1",
        "model": fm.model.config.name, "architecture": fm.model.config.arch,
        "weights": config.weights, "weights_sha256": fingerprint["weights_sha256"],
        "layer": fm.layer_name or "(pooled pre-classifier features)", "pooling": config.pooling,
        "preprocessing": fm.preprocessing.to_dict(), "draft_decoding": config.draft,
        "feature_shape": list(fm.feature_shape), "layout": "channels_last" if len(fm.feature_shape) == 3 else "flat",
        "dtype": config.dtype, "headstart_version": __version__,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "fingerprint": fingerprint,
    }
