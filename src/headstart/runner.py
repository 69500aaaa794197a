"""The runner: batching, worker processes and device placement for every command that reads images.

``run_batches(items, transform, fn, batches)`` yields, batch by batch and in order, the network's output for the
readable images and a per-item ``(sha256, width, height, error)``. Three engines, chosen from ``fn`` and the work:

- **in-process** (``workers=0``, or a single batch such as ``classify one.jpg``): no process start-up at all;
- **CPU workers** (the default on a CPU): one process per core, each reading, decoding, transforming *and* running
  the network single-threaded. On a few-core CPU this beats one multi-threaded network fed by decoding workers
  (no thread synchronization, no oversubscription; benchmarks/RESULTS.md). Processes are forked, so the network
  is shared copy-on-write; a worker ignores Ctrl-C (the parent stops the pool) and dies with its parent (a
  ``kill -9`` leaves no orphans). Needs neither torch nor a DataLoader: an ONNX Runtime run imports no torch.
- **device** (``fn.runs_in_workers`` false: a network on a GPU): DataLoader workers decode into pinned memory
  while the main process runs the network; with ``device_decode`` they send JPEG bytes and the device decodes.

Batches are numpy arrays (N, 3, H, W) float32 from :meth:`Preprocessing.array_transform`. Sharding across
processes and machines (``torchrun``, ``--shard``) happens before the runner: each rank passes only its own
``batches`` (:mod:`headstart.distributed`, :mod:`headstart.features._shard`).
"""
from __future__ import annotations

import hashlib
import io
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .data import Item, read_image_file
from .errors import ImageLoadError

__all__ = ["default_workers", "plan_batches", "run_batches", "Info"]

Info = tuple[str, int, int, "str | None"]  # (sha256, width, height, error)


def default_workers() -> int:
    """One worker process per core, each decoding and running the network single-threaded. Under torchrun the
    node's cores are shared by its ranks (LOCAL_WORLD_SIZE), so that N ranks do not start N × cores workers."""
    ranks_here = max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    return max(1, (os.cpu_count() or 1) // ranks_here)


def plan_batches(n: int, batch_size: int) -> list[list[int]]:
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


class _Job:
    """What a worker needs to turn a list of item indices into (indices, outputs, infos)."""

    def __init__(self, items: Sequence[Item], transform: Callable, fn: Callable | None,
                 draft: tuple[int, int] | None, raw_jpeg: bool = False):
        self.items, self.transform, self.fn, self.draft, self.raw_jpeg = items, transform, fn, draft, raw_jpeg

    def load(self, i: int) -> tuple[np.ndarray | None, Info]:
        try:
            im, sha, (w, h) = read_image_file(self.items[i].path, draft_size=self.draft)
            return self.transform(im), (sha, w, h, None)
        except ImageLoadError as exc:
            return None, ("", 0, 0, exc.cause)
        except Exception as exc:  # a decoder bug must not end a 20,000-image run; the image is skipped
            return None, ("", 0, 0, f"{type(exc).__name__}: {exc}")

    def batch(self, idx: list[int], run: bool = True) -> tuple[list[int], Any, list[Info]]:
        if self.raw_jpeg:
            loaded = [read_raw_jpeg(self.items[i].path) or self.load(i) for i in idx]
            return idx, [x for x, _ in loaded], [info for _, info in loaded]
        loaded = [self.load(i) for i in idx]
        good = [np.asarray(x) for x, _ in loaded if x is not None]
        x = np.stack(good) if good else None
        if x is not None and run and self.fn is not None:
            x = np.asarray(self.fn(x))
        return idx, x, [info for _, info in loaded]


_JOBS: dict[int, _Job] = {}  # set before the workers fork; each worker reads its job from its copy
_LOCK = threading.Lock()


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    _die_with_parent()
    if "torch" in sys.modules:
        # A forked child that enters an OpenMP parallel region set up by the parent can deadlock; one thread per
        # worker is also the fast layout (one network per core).
        sys.modules["torch"].set_num_threads(1)


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the parent dies (kill -9 of the command leaves no orphans)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


def _work(job_id: int, idx: list[int]):
    return _JOBS[job_id].batch(idx)


def run_batches(items: Sequence[Item], transform: Callable, fn: Callable | None, batches: list[list[int]], *,
                workers: int | None = None, draft: tuple[int, int] | None = None,
                device_decode: Callable | None = None) -> Iterator[tuple[list[int], Any, list[Info]]]:
    """Yields (indices, fn(batch) as numpy, per-item (sha256, width, height, error)) for each batch, in order.

    ``fn`` (a backend from :func:`headstart.backends.prepare`, or None to get the preprocessed batch) runs where
    its ``runs_in_workers`` says: in the CPU workers, or in this process on its device. ``device_decode`` (a
    tensor transform; device ``fn`` only) makes the workers send JPEGs undecoded and decodes them on the device.
    """
    workers = default_workers() if workers is None else workers
    if fn is not None and not getattr(fn, "runs_in_workers", True):
        yield from _device_engine(items, transform, fn, batches, workers, draft, device_decode)
        return
    job = _Job(items, transform, fn, draft)
    if workers == 0 or len(batches) <= 1:
        for idx in batches:
            yield job.batch(idx)
        return
    with _LOCK:
        job_id = max(_JOBS, default=0) + 1
        _JOBS[job_id] = job
    pool = ProcessPoolExecutor(min(workers, len(batches)), mp_context=_fork(), initializer=_worker_init)
    try:
        yield from pool.map(_work, [job_id] * len(batches), batches)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _JOBS.pop(job_id, None)


def _fork():
    import multiprocessing

    return multiprocessing.get_context("fork")


# -- the device engine ----------------------------------------------------------------------------------------

def _device_engine(items, transform, fn, batches, workers, draft, device_decode):
    import torch
    from torch.utils.data import DataLoader, Dataset

    job = _Job(items, transform, None, draft, raw_jpeg=device_decode is not None)

    class Batches(Dataset):
        def __len__(self) -> int:
            return len(items)

        def __getitems__(self, idx: list[int]):
            i, x, infos = job.batch(idx, run=False)
            return i, (torch.from_numpy(x) if isinstance(x, np.ndarray) else x), infos

    loader = DataLoader(Batches(), batch_sampler=batches, num_workers=workers, collate_fn=lambda b: b,
                        worker_init_fn=lambda _: torch.set_num_threads(1), prefetch_factor=2 if workers else None,
                        pin_memory=torch.cuda.is_available())
    for idx, x, infos in loader:
        if device_decode is not None:
            x = decode_batch(x, infos, device_decode, lambda k, idx=idx: job.load(idx[k]), fn.device)
        yield idx, (fn(x) if x is not None else None), infos


class RawJpeg:
    """The undecoded bytes of a JPEG, carried from a worker to the device."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        import torch

        self.data = torch.frombuffer(bytearray(data), dtype=torch.uint8)


def read_raw_jpeg(path: str) -> tuple[RawJpeg, Info] | None:
    """(bytes, (sha256, width, height, None)) for a file the device can decode, or None: decode it with Pillow.

    Only plain JPEGs (RGB or grayscale, within Pillow's pixel limit) take the device path; every other file, and
    any JPEG the device decoder rejects, is decoded by Pillow exactly as without it, so errors read the same.
    """
    from PIL import Image

    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            fmt, mode, (w, h) = im.format, im.mode, im.size
    except Exception:  # any problem: the Pillow path reads it again and reports the cause
        return None
    limit = Image.MAX_IMAGE_PIXELS
    if fmt != "JPEG" or mode not in ("RGB", "L") or (limit is not None and w * h > limit):
        return None
    return RawJpeg(data), (hashlib.sha256(data).hexdigest(), w, h, None)


def decode_batch(xs: Sequence, infos: list, tensor_transform: Callable, pil_load: Callable[[int], tuple],
                 device) -> Any:
    """Stack a worker's batch on ``device``: RawJpeg entries decoded there (nvJPEG on CUDA), ready arrays moved.

    ``xs`` is aligned with ``infos`` (None where the file could not be read). ``pil_load(k)`` decodes entry ``k``
    with Pillow ((array, info) or (None, info with the error)); it is used for any JPEG the device decoder
    rejects, and ``infos[k]`` is replaced by its result.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    def to_device(x):
        return torch.as_tensor(x).to(device)

    out = [to_device(x) if isinstance(x, (torch.Tensor, np.ndarray)) else None for x in xs]
    raw = [k for k, x in enumerate(xs) if isinstance(x, RawJpeg)]
    if raw:
        try:
            decoded = decode_jpeg([xs[k].data for k in raw], mode=ImageReadMode.RGB, device=device,
                                  apply_exif_orientation=True)
        except RuntimeError:  # one bad file fails the batch call: decode one by one to find it
            decoded = [_decode_one(xs[k].data, device) for k in raw]
        for k, im in zip(raw, decoded):
            if im is None:
                t, infos[k] = pil_load(k)
                out[k] = to_device(t) if t is not None else None
            else:
                out[k] = tensor_transform(im)
    good = [t for t in out if t is not None]
    return torch.stack(good) if good else None


def _decode_one(data, device):
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
    except RuntimeError:
        return None
