"""How a network runs: eager PyTorch (CPU or CUDA), or ONNX Runtime from a cached, parity-checked ONNX export.

Every image-reading command (extract, classify, predict, evaluate, and train's cached activations) hands a torch
module that maps a preprocessed batch (N, 3, H, W) to an array to :func:`prepare`, and gets back a callable that
returns numpy plus a :class:`BackendInfo` saying what runs and why. ``backend="auto"`` picks ONNX Runtime on a CPU
when it is installed, the export matches PyTorch within :data:`PARITY_TOL` and it measured faster; otherwise
PyTorch, with the reason. Exports are cached under ``$HEADSTART_HOME/onnx`` keyed by a hash of the module's
structure, its weights and the input size, so a model is exported once.

A caller that knows what identifies its network without building it (weights SHA-256, model, layer, pooling,
input size, versions) passes that ``identity`` to :func:`prepare`; the export is then also recorded under
``onnx/by-id/``, and :func:`find_export` finds it next time **without importing torch**: ``classify``,
``predict``, ``extract`` and ``evaluate`` then run on ONNX Runtime from the first line (start-up in a blink).

ONNX files are protobuf data: loading one executes no Python code (unlike a pickle). This module imports torch
only inside the functions that need it.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .atomic import atomic_write_bytes, atomic_write_json
from .config import BACKENDS
from .errors import HeadstartError
from .home import onnx_dir
from .weights import sha256_file

if TYPE_CHECKING:
    import torch

__all__ = ["BACKENDS", "PARITY_TOL", "BackendInfo", "TorchFn", "OrtFn", "prepare", "export_onnx", "batch_size_for",
           "onnxruntime_available", "resolve_device", "find_export", "identity_key", "runs_on_cpu", "choose_ort",
           "check_record"]

_logger = logging.getLogger(__name__)

# Largest accepted max|torch − onnxruntime| relative to max|torch output| on the parity batch (issue 5).
PARITY_TOL = 1e-4
OPSET = 17
_FORMAT = "headstart-onnx/1"


@dataclass
class BackendInfo:
    """What runs the network, and the evidence: parity at export and the speeds that decided ``auto``."""

    name: str  # "torch" | "onnxruntime"
    device: str = "cpu"
    reason: str = ""
    parity: float | None = None  # max|Δ| / max|f| on the parity batch
    onnx_path: str | None = None
    speed: dict[str, float] = field(default_factory=dict)  # images/s, single-threaded, measured at export

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def log(self, source: str = "") -> None:
        """Say (at INFO level: shown with -v) what runs the network and why."""
        parity = f", parity {self.parity:.1e}" if self.parity is not None else ""
        via = f"; {source}" if source else ""
        _logger.info("backend: %s on %s (%s%s; single-threaded img/s %s%s)", self.name, self.device, self.reason,
                     parity, self.speed or "not measured", via)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return bool(onnxruntime.__version__)


def runs_on_cpu(device: str | None) -> bool:
    """Whether ``device`` means the CPU, decided without importing torch where possible: "auto" on a machine with
    no NVIDIA device node cannot find CUDA (torch's CUDA needs the driver's /dev/nvidia*)."""
    if device in (None, "auto"):
        return sys.platform.startswith("linux") and not any(Path("/dev").glob("nvidia[0-9]*"))
    return str(device) == "cpu"


def resolve_device(device: "str | torch.device | None") -> "torch.device":
    """``None``/"auto": CUDA when available, else CPU. An explicit "cuda" without a GPU is an error, not a fallback."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HeadstartError(f"device {device!r} was requested but PyTorch sees no CUDA GPU on this machine. "
                             f"Use --device cpu (or auto).")
    return dev


class TorchFn:
    """Eager PyTorch: channels_last, inference mode; on CUDA bf16 autocast, non-blocking copies, optional compile.

    Takes a batch as a numpy array or a tensor; returns numpy.
    """

    runs_in_workers = True  # CPU: one single-threaded network per worker process (see runner.py)

    def __init__(self, module: "torch.nn.Module", device: "torch.device | str" = "cpu", *, compile: bool = False):
        import torch

        self.device = torch.device(device)
        self.module = module.eval().to(self.device).to(memory_format=torch.channels_last)
        if compile:
            self.module = torch.compile(self.module)
        # On a GPU the workers only decode; the main process owns the device.
        self.runs_in_workers = self.device.type == "cpu"

    def __call__(self, x: "torch.Tensor | np.ndarray") -> np.ndarray:
        import torch

        x = torch.as_tensor(x).to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    y = self.module(x)
            else:
                y = self.module(x)
            return y.float().cpu().numpy()


class OrtFn:
    """ONNX Runtime on the CPU. The session is created lazily in the process that calls it (a forked DataLoader
    worker gets its own), single-threaded by default: one session per core is the fast layout on few cores."""

    runs_in_workers = True

    def __init__(self, path: str | os.PathLike, threads: int = 1):
        self.path, self.threads = str(path), threads
        self._session, self._pid = None, None

    def _get(self):
        if self._session is None or self._pid != os.getpid():
            self._session, self._pid = _session(self.path, self.threads), os.getpid()
        return self._session

    def open(self) -> "OrtFn":
        """Load the model now, in this process: a damaged file is a clear error here, not a crash in a worker
        (and a single batch run in this process reuses the session)."""
        try:
            self._get()
        except Exception as exc:
            raise HeadstartError(f"{self.path}: not a loadable ONNX model ({type(exc).__name__}: "
                                 f"{str(exc)[:200]}). Export again (`headstart export RUN --format onnx`).") from None
        return self

    def __call__(self, x: "torch.Tensor | np.ndarray") -> np.ndarray:
        x = np.ascontiguousarray(x.numpy() if hasattr(x, "numpy") else x, np.float32)
        return self._get().run(None, {"x": x})[0]

    def __getstate__(self) -> dict[str, Any]:  # sessions are not shared across processes
        return {"path": self.path, "threads": self.threads, "_session": None, "_pid": None}


def _session(path: str, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # warnings about unused initializers etc. are noise to a user
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def module_key(module: "torch.nn.Module", input_size: tuple[int, int, int]) -> str:
    """Hash of the module's structure, every parameter and buffer, the input size and the exporter version."""
    import torch

    h = hashlib.sha256()
    h.update(f"{_FORMAT}|{torch.__version__}|{OPSET}|{tuple(input_size)}|{module!r}".encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def _parity_batch(input_size: tuple[int, int, int]) -> "torch.Tensor":
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randn(2, *input_size, generator=g)


def export_onnx(module: "torch.nn.Module", input_size: tuple[int, int, int], path: str | os.PathLike,
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``module`` (dynamic batch size) to ``path`` atomically and check it against PyTorch.

    Returns the record written next to it (``<path>.json``): parity, input size, versions, the module's key, the
    file's SHA-256 (checked before every later use) and both backends' single-threaded speed; ``extra`` is added
    (e.g. the checksums of the run files it was exported from). Raises :class:`HeadstartError` when the export
    fails or parity exceeds :data:`PARITY_TOL` (nothing is kept then).
    """
    import onnxruntime as ort
    import torch

    module = module.eval().cpu().to(memory_format=torch.contiguous_format)
    x = _parity_batch(input_size)
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The TorchScript-based exporter: it traces the exact forward pass that ran (hooks that stop early
            # at a layer included) and needs no extra packages.
            torch.onnx.export(module, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=OPSET)
    except Exception as exc:  # any exporter failure means "use PyTorch", never a failed run
        raise HeadstartError(f"ONNX export failed ({type(exc).__name__}: {str(exc)[:200]})") from exc
    data = buf.getvalue()
    with torch.inference_mode():
        ref = module(x).float().numpy()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    got = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    if got.shape != ref.shape:
        raise HeadstartError(f"ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
    parity = float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1e-12))
    if not parity <= PARITY_TOL:
        raise HeadstartError(f"ONNX output differs from PyTorch by {parity:.2e} of the feature scale "
                             f"(allowed {PARITY_TOL:.0e})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "format": _FORMAT, "key": module_key(module, input_size), "parity": parity, "parity_tolerance": PARITY_TOL,
        "input_size": list(input_size), "output_shape": list(ref.shape[1:]), "opset": OPSET,
        "torch": torch.__version__, "onnxruntime": ort.__version__, "sha256": hashlib.sha256(data).hexdigest(),
        **(extra or {})}
    atomic_write_bytes(path, data)
    record["speed"] = _measure(module, path, input_size)
    atomic_write_json(record_path(path), record)  # last: a file without its record is never used
    return record


def record_path(onnx_path: str | os.PathLike) -> Path:
    return Path(f"{onnx_path}.json")


def check_record(onnx_path: str | os.PathLike) -> dict[str, Any]:
    """The record of an export after checking that the file is the one exported (SHA-256). No torch needed."""
    path = Path(onnx_path)
    how = "Export again (`headstart export RUN --format onnx`)."
    try:
        record = json.loads(record_path(path).read_text())
    except (OSError, ValueError) as exc:
        raise HeadstartError(f"{path}: its record {record_path(path).name} is missing or unreadable ({exc}). "
                             f"{how}") from exc
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise HeadstartError(f"{path}: cannot read the export ({exc.strerror or exc}). {how}") from exc
    if not isinstance(record, dict) or record.get("format") != _FORMAT or record.get("sha256") != digest:
        raise HeadstartError(f"{path}: checksum mismatch with {record_path(path).name}; the file was changed after "
                             f"export and is refused. {how}")
    return record


def check_export(onnx_path: str | os.PathLike, module: "torch.nn.Module", input_size: tuple[int, int, int]
                 ) -> dict[str, Any]:
    """The record of an existing export after checking that the file is intact and is an export of ``module``."""
    record = check_record(onnx_path)
    if record.get("key") != module_key(module, input_size):
        raise HeadstartError(f"{onnx_path} was exported from other weights or another input size than this model. "
                             f"Export again (`headstart export RUN --format onnx`).")
    return record


def _images_per_second(fn: Callable, x, reps: int = 3) -> float:
    """Best of ``reps`` timed calls after a warm-up (the best is the least disturbed by other processes)."""
    fn(x)  # warm-up: first calls allocate and (for onnxruntime) finish optimizing
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def _measure(module: "torch.nn.Module", onnx_path: Path, input_size: tuple[int, int, int]) -> dict[str, float]:
    """Single-threaded images/s of both backends at the extraction batch size: the layout they will run in."""
    import torch

    x = torch.randn(4, *input_size, generator=torch.Generator().manual_seed(1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        eager = _images_per_second(TorchFn(module), x)
    finally:
        torch.set_num_threads(threads)
    return {"torch": round(eager, 2), "onnxruntime": round(_images_per_second(OrtFn(onnx_path), x), 2)}


def _cached_export(module: "torch.nn.Module", input_size: tuple[int, int, int], cache_dir: Path
                   ) -> tuple[Path, dict[str, Any]]:
    from .cache import note_used, note_written

    path = cache_dir / f"{module_key(module, input_size)}.onnx"
    if path.is_file():
        try:
            record = check_export(path, module, input_size)
            note_used(path)
            return path, record
        except HeadstartError:  # a cached file edited or truncated since export is exported again, never trusted
            pass
    _logger.info("exporting %s to ONNX (once; cached in %s)", type(module).__name__, cache_dir)
    record = export_onnx(module, input_size, path)
    note_written(path, f"ONNX export of {_describe(module)}")  # says so when it is large; keeps the cache capped
    return path, record


def _describe(module: "torch.nn.Module") -> str:
    net = getattr(module, "net", module)
    config = getattr(net, "config", None)
    return getattr(config, "name", type(net).__name__)


# -- exports found by identity, without building the model ----------------------------------------------------

def identity_key(identity: dict[str, Any]) -> str:
    """A stable key for what identifies a network without building it (see :func:`prepare`)."""
    from ._version import __version__, dist_version

    full = {**identity, "headstart": __version__, "timm": dist_version("timm"), "torch": dist_version("torch"),
            "format": _FORMAT}
    return hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _by_id(cache_dir: Path, key: str) -> Path:
    return cache_dir / "by-id" / f"{key}.json"


def find_export(identity: dict[str, Any], *, cache_dir: str | os.PathLike | None = None
                ) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """(export path, its checked record, what the caller stored with it) for ``identity``, or None. No torch.

    A missing, edited or damaged file is treated as absent (the caller then builds the model and exports again).
    """
    cache = Path(cache_dir) if cache_dir else onnx_dir()
    entry_path = _by_id(cache, identity_key(identity))
    try:
        entry = json.loads(entry_path.read_text())
        path = cache / entry["onnx"]
        record = check_record(path)
    except (OSError, ValueError, KeyError, TypeError, HeadstartError):
        return None  # evicted, edited or damaged: a cache miss (the caller builds the model and exports again)
    from .cache import note_used

    note_used(path)
    return path, record, entry.get("about", {})


def choose_ort(backend: str, record: dict[str, Any]) -> str | None:
    """Why ONNX Runtime runs this export ("requested" / "faster on this CPU"), or None when auto prefers torch."""
    speed = record.get("speed", {})
    if backend == "onnxruntime":
        return "requested"
    if backend == "auto" and speed.get("onnxruntime", 0) >= speed.get("torch", 0):
        return "faster on this CPU"
    return None


def prepare(module: "torch.nn.Module", input_size: tuple[int, int, int], *, backend: str = "auto",
            device: str | None = None, compile: bool = False, cache_dir: str | os.PathLike | None = None,
            onnx: str | os.PathLike | None = None, identity: dict[str, Any] | None = None,
            about: dict[str, Any] | None = None, say: Callable[[str], None] | None = None
            ) -> tuple[Callable, BackendInfo]:
    """A callable ``fn(batch) -> np.ndarray`` running ``module``, and what it is.

    Args:
        backend: "torch", "onnxruntime" (an error if it cannot be used) or "auto" (onnxruntime on a CPU when
            installed, within parity and faster; else torch, and ``say`` is told why).
        device: "cpu", "cuda", or None/"auto" (CUDA when available). onnxruntime runs on the CPU only.
        compile: ``torch.compile`` the module (torch backend).
        onnx: an existing export of ``module`` (``headstart export``) to use instead of the cache; it is checked
            (SHA-256 and model key) and a mismatch is an error.
        identity: what identifies ``module`` without building it; the cached export is then also recorded under
            it (with ``about``: what a torch-free caller needs, e.g. labels, preprocessing) for :func:`find_export`.
    """
    if backend not in BACKENDS:
        raise HeadstartError(f"backend must be one of {', '.join(BACKENDS)}; received {backend!r}.")
    dev = resolve_device(device)
    if backend == "torch" or (backend == "auto" and dev.type != "cpu"):
        why = "requested" if backend == "torch" else f"{dev.type} device"
        return TorchFn(module, dev, compile=compile), BackendInfo("torch", str(dev), why)
    if dev.type != "cpu":
        raise HeadstartError(f"backend 'onnxruntime' runs on the CPU; received device {str(dev)!r}. "
                             f"Use --device cpu, or --backend torch on the GPU.")
    fallback, quiet = None, False
    if not onnxruntime_available():
        fallback, quiet = "onnxruntime is not installed (pip install 'headstart[onnx]')", True
    else:
        cache = Path(cache_dir) if cache_dir else onnx_dir()
        try:
            if onnx is not None:
                path, record = Path(onnx), check_export(onnx, module, input_size)
                OrtFn(path).open()
            else:
                path, record = _cached_export(module, input_size, cache)
                if identity is not None:
                    entry = _by_id(cache, identity_key(identity))
                    entry.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_json(entry, {"onnx": path.name, "identity": identity, "about": about or {}})
        except (HeadstartError, OSError) as exc:
            if onnx is not None:
                raise
            fallback = str(exc)
        else:
            why = choose_ort(backend, record)
            if why:
                return OrtFn(path), BackendInfo("onnxruntime", "cpu", why, record["parity"], str(path),
                                                record.get("speed", {}))
            speed = record.get("speed", {})
            fallback, quiet = (f"onnxruntime measured slower for this model ({speed.get('onnxruntime')} vs "
                               f"{speed.get('torch')} img/s)"), True
    if backend == "onnxruntime":
        raise HeadstartError(f"backend 'onnxruntime' cannot be used: {fallback}. Use --backend torch or auto.")
    # A failed export or parity check is worth a warning; a missing optional package or a slower measurement is
    # the expected case on some machines (shown with -v).
    (say or (_logger.info if quiet else _logger.warning))(f"Using PyTorch: {fallback}.")
    return TorchFn(module, dev, compile=compile), BackendInfo("torch", "cpu", fallback)


def batch_size_for(fn: Callable, input_size: tuple[int, int, int], cpu: int) -> int:
    """``cpu`` for a backend that runs in the CPU workers (small batches run fastest single-threaded); on a GPU,
    at least that and as large as its memory allows."""
    if fn.runs_in_workers:
        return cpu
    return max(cpu, gpu_batch_size(fn, input_size))


def gpu_batch_size(fn: TorchFn, input_size: tuple[int, int, int], *, start: int = 32, limit: int = 1024,
                   headroom: float = 0.5) -> int:
    """The largest power-of-two batch (≤ ``limit``) whose forward pass fits in ``headroom`` of free GPU memory.

    Measured, not guessed: one forward pass per candidate, peak memory read from the allocator.
    """
    if fn.device.type != "cuda":
        return start
    import torch

    free, _ = torch.cuda.mem_get_info(fn.device)
    best, bs = start, start
    while bs <= limit:
        torch.cuda.reset_peak_memory_stats(fn.device)
        base = torch.cuda.memory_allocated(fn.device)
        try:
            fn(torch.zeros(bs, *input_size))
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
        if torch.cuda.max_memory_allocated(fn.device) - base > headroom * free:
            break
        best, bs = bs, bs * 2
    return best
