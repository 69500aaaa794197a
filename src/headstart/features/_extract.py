"""``extract``: run a folder / CSV / file list through a network and save one layer's features to a store.

The runner (``headstart.runner``) decodes, preprocesses and runs the network in worker processes; features stream
to a memory-mapped file chunk by chunk, so memory stays flat as the dataset grows and an interrupted run resumes
where it stopped. A rerun on unchanged inputs answers from ``meta.json`` and the inputs' fingerprints alone (no
network, no torch); when the backend is ONNX Runtime and the export of this model, layer and input size is cached,
the extraction itself runs without importing torch.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._version import __version__
from ..atomic import remove_if_failed
from ..backends import BackendInfo, batch_size_for, choose_ort, find_export, onnxruntime_available, runs_on_cpu
from ..data import Item, Preprocessing, read_source
from ..errors import HeadstartError
from ..models import get_spec
from ..runner import run_batches
from ..weights import sha256_file
from ._config import ExtractConfig
from ._store import META, WORK, FeatureSet, StoreWriter

__all__ = ["ExtractConfig", "ExtractStats", "extract", "feature_network", "feature_identity", "cached_features"]

_logger = logging.getLogger(__name__)

# JPEGs are decoded at a reduced scale (Pillow draft mode) only down to DRAFT_FACTOR × the resize target, so the
# final antialiased resize still averages several decoded pixels per output pixel. Measured on 12-MP photos
# (benchmarks/extract.py): 2.6× faster decoding, features within what re-saving the JPEG at quality 95 changes.
DRAFT_FACTOR = 4


@dataclass
class ExtractStats:
    """What one ``extract`` call did."""

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


@dataclass
class _Network:
    """The network side of an extraction: what runs, and what the store records about it."""

    fn: Callable
    info: BackendInfo
    preprocessing: Preprocessing
    feature_shape: tuple[int, ...]
    about: dict[str, Any]  # model, architecture, layer, preprocessing, feature shape (what meta.json records)


def _network_identity(config: ExtractConfig) -> dict[str, Any]:
    """What determines the features, without building anything: settings, model name, weights SHA-256."""
    spec = get_spec(config.model)
    if config.weights == "imagenet":
        weights_id = spec.weights.sha256 if spec.weights else "timm"
    elif config.weights is None:
        weights_id = "random(seed=0)"
    else:
        weights_id = sha256_file(config.weights)
    return {"config": {**config.identity(), "model": spec.name}, "weights_sha256": weights_id}


def feature_identity(config: ExtractConfig) -> dict[str, Any]:
    """The key of a feature network in the caches (ONNX exports by identity, per-image view features)."""
    ident = _network_identity(config)
    return {"task": "features", **ident["config"], "weights_sha256": ident["weights_sha256"]}


def _fingerprint(config: ExtractConfig, items: Sequence[Item]) -> dict[str, Any]:
    h = hashlib.sha256()
    for it in items:
        try:
            st = os.stat(it.path)
            sig = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            sig = "missing"
        h.update(f"{it.path}\0{it.label}\0{sig}\n".encode("utf-8", "surrogateescape"))
    return {**_network_identity(config), "inputs_sha256": h.hexdigest(), "n": len(items)}


def _prepare_out(out: Path, fingerprint: dict[str, Any], overwrite: bool, sharded: bool = False
                 ) -> FeatureSet | None:
    """Return the existing store on a cache hit; clear or refuse a store that does not match.

    ``sharded``: the plan and shard folders of a sharded extraction (:mod:`._shard`) may be there too."""
    from ._shard import LOCK, PLAN, SHARDS

    allowed = {WORK, PLAN, SHARDS, LOCK} if sharded else {WORK}
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
    elif out.is_dir() and any(p.name not in allowed and not p.name.endswith(".tmp") for p in out.iterdir()):
        raise HeadstartError(f"{out} exists and is not a feature store; refusing to write into it. Choose an "
                             f"empty or new --out folder.")
    if (out / PLAN).is_file() and not sharded:
        raise HeadstartError(f"{out} holds an unfinished sharded extraction ({out / PLAN}). Rerun it the same way "
                             f"(torchrun, or --shard R/W for each shard), run `headstart merge {out}` if every shard "
                             f"finished, or choose another --out.")
    if overwrite and (out / WORK).is_dir():
        shutil.rmtree(out / WORK)
    out.mkdir(parents=True, exist_ok=True)
    return None


def extract(source: str | os.PathLike | Sequence[str | os.PathLike], out: str | os.PathLike,
            config: ExtractConfig | None = None, *, overwrite: bool = False, progress: bool = True,
            **overrides: Any) -> FeatureSet | None:
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

    Sharding: under torchrun (``WORLD_SIZE`` > 1) each rank extracts its part and every rank returns the merged
    store (rank 0 merges). With ``shard="R/W"`` (independent jobs, e.g. a SLURM array) the shard that finishes
    last merges and returns the store; the others return None. See :mod:`headstart.features._shard`.
    """
    config = replace(config or ExtractConfig(), **overrides).check()
    t0 = time.perf_counter()
    items = read_source(source)
    out = Path(out)
    fingerprint = _fingerprint(config, items)
    shard, wait = _sharding(config)
    # A failure before the first finished chunk leaves no folder behind (only if this call created it).
    # Shards share the folder: one failing must never remove what the others wrote.
    with remove_if_failed(out, keep=lambda: shard is not None or any((out / WORK / "chunks").glob("*.json"))):
        cached = _prepare_out(out, fingerprint, overwrite, sharded=shard is not None)
        if cached is not None:
            cached.stats = ExtractStats(len(items), len(cached), len(cached.skipped), 0, True,
                                        seconds=time.perf_counter() - t0)
            _logger.info("%s is up to date: no model work done", out)
            return cached
        if shard is not None:
            return _extract_shard(items, out, config, fingerprint, shard, wait, overwrite, progress)
        net = feature_network(config)
        if config.gpu_decode and net.fn.runs_in_workers:
            raise HeadstartError("--gpu-decode needs the network on a GPU (--device cuda); this run uses "
                                 f"{net.info.name} on the CPU workers.")
        input_size = (3, *net.preprocessing.input_size)
        config = replace(config, batch_size=config.batch_size or batch_size_for(net.fn, input_size, 4))
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        writer = StoreWriter(out, fingerprint, len(items), net.feature_shape, config.dtype, config.batch_size,
                             config.chunk_batches, created)
        stats = _run(net, items, writer, config, progress)
        counts = writer.finalize({**_meta(net.about, config, fingerprint), "backend": net.info.to_dict()})
    stats.images, stats.extracted, stats.skipped = counts["images"], counts["extracted"], counts["skipped"]
    stats.seconds = time.perf_counter() - t0
    fs = FeatureSet.load(out)
    fs.stats = stats
    return fs


def cached_features(items: Sequence[Item], config: ExtractConfig, *, progress: bool,
                    cache_root: Path | None = None) -> FeatureSet:
    """The feature store of ``items`` under ``$HEADSTART_HOME/cache`` (extracted once, then reused): one store per
    (configuration, list of path + label), so `train`'s strategies and `doctor` read the same one."""
    from ..cache import note_used, note_written
    from ..home import activations_dir

    key = json.dumps([config.identity(), [(it.path, it.label) for it in items]], sort_keys=True)
    root = (cache_root or activations_dir()) / hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    fs = extract(list(items), root, config, progress=progress, overwrite=True)
    if fs.stats.cached:
        note_used(root)
    else:
        note_written(root, f"cached activations of {config.model} ({len(items)} images)")
    if len(fs) == 0:
        raise HeadstartError(f"None of the {len(items)} images could be read; see {root / 'skipped.csv'}.")
    return fs


def _sharding(config: ExtractConfig):
    """(this process's Shard, whether to wait for the others), or (None, False) for an ordinary extraction."""
    from ..distributed import launched, parse_shard, this_shard

    explicit = parse_shard(config.shard)
    if explicit is not None:  # an independent job (SLURM array task): no waiting for the others
        return (explicit, False) if explicit.world > 1 else (None, False)
    return (this_shard(), True) if launched() else (None, False)


def _extract_shard(items, out: Path, config: ExtractConfig, fingerprint, shard, wait: bool, overwrite: bool,
                   progress: bool) -> FeatureSet | None:
    from ..distributed import use_local_gpu
    from ._shard import extract_sharded

    if not runs_on_cpu(config.device):
        use_local_gpu()  # `cuda` means this rank's GPU (LOCAL_RANK), not GPU 0 for every rank
    return extract_sharded(items, out, config, fingerprint, shard, wait=wait, overwrite=overwrite,
                           progress=progress and shard.rank == 0)


_ABOUT = ("model", "architecture", "layer", "preprocessing", "feature_shape")  # what meta.json needs


def feature_network(config: ExtractConfig) -> _Network:
    """The network of an extraction, ready to run: the cached ONNX export found by identity (no torch), or the
    model built in PyTorch and prepared (exported once and recorded by identity for next time)."""
    identity = feature_identity(config)
    if config.backend != "torch" and not config.gpu_decode and runs_on_cpu(config.device) \
            and onnxruntime_available():
        found = find_export(identity)
        why = choose_ort(config.backend, found[1]) if found else None
        if found and why and set(_ABOUT) <= set(found[2]):  # an entry missing a field: a cache miss
            from ..backends import OrtFn

            path, record, about = found
            info = BackendInfo("onnxruntime", "cpu", why, record["parity"], str(path),
                               record.get("speed", {}))
            info.log("the cached export, found without building the model")
            return _Network(OrtFn(path), info, Preprocessing.from_dict(about["preprocessing"]),
                            tuple(about["feature_shape"]), about)
    from ..backends import prepare
    from ._model import feature_model_for

    fm = feature_model_for(config)
    about = {"model": fm.model.config.name, "architecture": fm.model.config.arch,
             "layer": fm.layer_name or "(pooled pre-classifier features)", "preprocessing": fm.preprocessing.to_dict(),
             "feature_shape": list(fm.feature_shape)}
    fn, info = prepare(fm.as_module(), (3, *fm.model.input_size), backend=config.backend, device=config.device,
                       compile=config.compile, identity=identity, about=about)
    info.log()
    return _Network(fn, info, fm.preprocessing, fm.feature_shape, about)


def _plan(writer: StoreWriter, n: int) -> tuple[list[list[int]], list[int]]:
    """Batches of the chunks not finished yet, and the chunk of each batch."""
    done = writer.done_chunks()
    cs = writer.chunk_size
    batches, batch_chunk = [], []
    for c in range(writer.n_chunks):
        if c in done:
            continue
        rows = list(range(c * cs, min((c + 1) * cs, n)))
        for b in range(0, len(rows), writer.batch_size):
            batches.append(rows[b:b + writer.batch_size])
            batch_chunk.append(c)
    return batches, batch_chunk


def _run(net: _Network, items: Sequence[Item], writer: StoreWriter, config: ExtractConfig,
         progress: bool) -> ExtractStats:
    stats = ExtractStats(resumed_chunks=len(writer.done_chunks()))
    batches, batch_chunk = _plan(writer, len(items))
    if not batches:
        return stats
    pre = net.preprocessing
    draft = (DRAFT_FACTOR * min(pre.resize_size),) * 2 if config.draft else None
    loader = run_batches(items, pre.array_transform(), net.fn, batches, workers=config.workers, draft=draft,
                         device_decode=pre.tensor_transform() if config.gpu_decode else None)
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
                _fault_point()
            advance(len(idx))
    return stats


_FAULT_ENV = "HEADSTART_FAULT_AFTER_CHUNKS"
_committed = [0]


def _fault_point() -> None:
    """Test hook: with $HEADSTART_FAULT_AFTER_CHUNKS=k this process kills itself (SIGKILL, as a node failure
    would) after committing its k-th chunk, so the resume tests need no timing guesses."""
    limit = os.environ.get(_FAULT_ENV)
    if not limit:
        return
    _committed[0] += 1
    if _committed[0] >= int(limit):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


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


def _meta(about: dict[str, Any], config: ExtractConfig, fingerprint: dict[str, Any]) -> dict[str, Any]:
    shape = about["feature_shape"]
    return {
        "format": "headstart-features/1", "model": about["model"], "architecture": about["architecture"],
        "weights": config.weights, "weights_sha256": fingerprint["weights_sha256"], "layer": about["layer"],
        "pooling": config.pooling, "preprocessing": about["preprocessing"], "draft_decoding": config.draft,
        "feature_shape": list(shape), "layout": "channels_last" if len(shape) == 3 else "flat",
        "dtype": config.dtype, "headstart_version": __version__,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "fingerprint": fingerprint,
    }
