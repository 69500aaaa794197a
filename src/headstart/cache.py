"""What headstart keeps under ``$HEADSTART_HOME`` (default ``~/.cache/headstart``), clearing it, and its size cap.

``weights/``: downloaded ImageNet weights (hash-checked; a download to get back). ``cache/``: activations cached by
``train`` (recomputed on demand). ``onnx/``: ONNX exports used by the onnxruntime backend (re-exported on demand).

The regenerable parts (activations and ONNX exports) are capped by ``HEADSTART_CACHE_MAX`` (default 4 GiB):
after a new entry is written (:func:`note_written`), the least recently used entries are removed until the total
fits. An entry is an activation store (the folder ``cache/<key>/``) or an ONNX export (``onnx/<key>.onnx`` with
the files named after it, such as ``<key>.onnx.json``). Its last use is the modification time of that folder or
``.onnx`` file, which :func:`note_used` sets. Downloaded weights are never evicted: on a machine without network
they cannot come back, and evicting them to make room for an export that can be recomputed would trade a
recomputation for a failure. ``headstart cache --clear weights`` removes them on request.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, HeadstartError
from .home import PARTS as _LAYOUT
from .home import part_dir

__all__ = ["PARTS", "CAPPED_PARTS", "CacheEntry", "cache_info", "clear_cache", "cache_max", "format_bytes",
           "capped_bytes", "note_used", "note_written", "enforce_cap"]

_logger = logging.getLogger(__name__)

PARTS = {part: what for part, (_, what) in _LAYOUT.items()}
CAPPED_PARTS = ("activations", "onnx")  # regenerable; "weights" is a download to get back, never evicted

DEFAULT_MAX = 4 << 30
LARGE_ENTRY = 100 * 10**6  # a new entry this large is worth a warning: it is a cost the user did not ask for
_RECENT_S = 60.0  # an entry used this recently may be in use by another headstart command: not evicted
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_NO_CAP = ("0", "none", "off", "unlimited")

_mine: set[Path] = set()  # entries this process wrote or used: never evicted under it


@dataclass
class CacheEntry:
    part: str
    path: Path
    files: int
    bytes: int


def cache_info() -> list[CacheEntry]:
    out = []
    for part in PARTS:
        root = part_dir(part)
        files = _files(root)
        out.append(CacheEntry(part, root, len(files), sum(_size(p) for p in files)))
    return out


def clear_cache(parts: list[str]) -> list[CacheEntry]:
    """Remove the named parts (``all`` = every part); returns what was removed."""
    if "all" in parts:
        parts = list(PARTS)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise HeadstartError(f"Unknown cache part(s) {unknown}; expected {', '.join(PARTS)} or all.")
    removed = [e for e in cache_info() if e.part in parts]
    for e in removed:
        shutil.rmtree(e.path, ignore_errors=True)
    return removed


def cache_max() -> int | None:
    """The cap in bytes from ``HEADSTART_CACHE_MAX`` (default 4 GiB); None for no cap.

    Accepts bytes (``4294967296``) or a number with a binary unit (``500M``, ``4G``, ``1.5GiB``, ``2TB``: K, M,
    G and T are powers of 1024); ``0``, ``none``, ``off`` or ``unlimited`` mean no cap.
    """
    raw = os.environ.get("HEADSTART_CACHE_MAX", "").strip()
    if not raw:
        return DEFAULT_MAX
    if raw.lower() in _NO_CAP:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?", raw.lower())
    if not m:
        raise ConfigError(
            f"HEADSTART_CACHE_MAX={raw!r} is not a size: expected bytes or a number with K, M, G or T (e.g. 4G, "
            f"500M), or none for no cap. Fix or unset it (the default is {format_bytes(DEFAULT_MAX)}).")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # unreachable


def capped_bytes() -> int:
    """What the capped (regenerable) parts hold now, in bytes."""
    return sum(e.bytes for e in cache_info() if e.part in CAPPED_PARTS)


def note_used(path: str | os.PathLike) -> None:
    """Mark the cache entry holding ``path`` as just used, so it is evicted last. Never fails the caller.

    ``path`` is an activation store folder, an ONNX export, or any file in either. On a read-only file system
    (or any other error) the mark is skipped: the entry then merely looks older than it is.
    """
    try:
        entry = _entry_of(Path(path))
        if entry is None:
            return
        _mine.add(entry)
        os.utime(entry)
    except (OSError, ValueError) as exc:
        _logger.debug("could not mark %s as used: %s", path, exc)


def note_written(path: str | os.PathLike, what: str) -> list[Path]:
    """After a new cache entry is written: say so if it is large, then keep the cache under its cap.

    ``what`` names it for people (``"ONNX export of vgg16"``). An entry over 100 MB is logged as a warning with
    the cache's total, the cap and the command that frees it. Then least recently used entries are evicted until
    the capped parts fit ``HEADSTART_CACHE_MAX``; ``path``'s entry, and any other this process wrote or used, is
    never evicted. Returns the entries removed. Problems here (a bad ``HEADSTART_CACHE_MAX``, a file that
    cannot be removed) are logged, never raised: the entry itself was written fine.
    """
    entry = _entry_of(Path(path))
    if entry is None:
        _logger.debug("%s is not a cache entry; nothing to account for", path)
        return []
    note_used(entry)
    try:
        cap = cache_max()
    except ConfigError as exc:
        _logger.warning("%s The cache is not capped until then.", exc)
        cap = None
    size = _entry_bytes(entry)
    if size > LARGE_ENTRY:
        part = "onnx" if entry.suffix == ".onnx" else "activations"
        limit = f"HEADSTART_CACHE_MAX={format_bytes(cap)} caps it" if cap else \
            "it is not capped (HEADSTART_CACHE_MAX=none); HEADSTART_CACHE_MAX=4G would cap it"
        _logger.warning("wrote a %s %s to %s; the cache now holds %s of activations and ONNX exports; %s; "
                        "`headstart cache --clear %s` frees it.", _mb(size), what, entry,
                        format_bytes(capped_bytes()), limit, part)
    return enforce_cap(cap) if cap else []


def enforce_cap(cap: int | None = None) -> list[Path]:
    """Evict least recently used entries of the capped parts until they hold at most ``cap`` bytes.

    ``cap`` defaults to :func:`cache_max` (a bad ``HEADSTART_CACHE_MAX`` raises :class:`ConfigError`). Entries
    this process wrote or used, and entries used in the last minute (perhaps by another command), are kept
    even if the total stays above the cap.
    """
    cap = cache_max() if cap is None else cap
    if cap is None:
        return []
    entries = sorted(_entries(), key=lambda e: e[1])  # oldest use first
    total = sum(size for _, _, size in entries)
    now, evicted = time.time(), []
    for path, used, size in entries:
        if total <= cap:
            break
        if path in _mine or now - used < _RECENT_S:
            continue
        if _remove(path):
            total -= size
            evicted.append(path)
    if evicted:
        _logger.warning("removed %d least recently used cache entr%s (%s) to keep activations and ONNX exports "
                        "under HEADSTART_CACHE_MAX=%s; they are recomputed when needed.", len(evicted),
                        "y" if len(evicted) == 1 else "ies", ", ".join(str(p) for p in evicted), format_bytes(cap))
    if total > cap:
        _logger.info("the cache holds %s, over HEADSTART_CACHE_MAX=%s: the rest is in use", format_bytes(total),
                     format_bytes(cap))
    return evicted


def _capped_dirs() -> tuple[Path, Path]:
    # Resolved, so that an entry is the same Path whichever spelling of the folder a caller used.
    return Path(os.path.realpath(part_dir("activations"))), Path(os.path.realpath(part_dir("onnx")))


def _entry_of(path: Path) -> Path | None:
    """The entry (activation store folder or ``.onnx`` file) that ``path`` belongs to, or None."""
    path = Path(os.path.realpath(path))
    acts, onnx = _capped_dirs()
    if path.is_relative_to(acts) and path != acts:
        return acts / path.relative_to(acts).parts[0]
    if path.parent == onnx and ".onnx" in path.name:
        return onnx / (path.name.split(".onnx", 1)[0] + ".onnx")
    return None


def _members(entry: Path) -> list[Path]:
    if entry.suffix == ".onnx":  # the export and the files named after it (record, external data)
        return [p for p in entry.parent.glob(re.sub(r"([*?\[])", r"[\1]", entry.name) + "*")
                if p.is_file() and (p.name == entry.name or p.name.startswith(entry.name + "."))]
    return _files(entry)


def _files(root: Path) -> list[Path]:
    """Every file under ``root``. Other processes change the cache while we look (a torchrun rank removes its
    shard folders right after merging): a folder gone meanwhile is skipped (``os.walk`` ignores it), not an error."""
    return [Path(d) / name for d, _, names in os.walk(root) for name in names]


def _entries() -> list[tuple[Path, float, int]]:
    """Every entry of the capped parts: (path, last use, bytes). Hidden names (atomic writes' temporary files,
    still being written by some process) are not entries."""
    acts, onnx = _capped_dirs()
    candidates = [p for p in acts.iterdir() if p.is_dir() and not p.name.startswith(".")] if acts.is_dir() else []
    if onnx.is_dir():
        candidates += [onnx / (p.name.split(".onnx", 1)[0] + ".onnx") for p in onnx.iterdir()
                       if p.is_file() and ".onnx" in p.name and not p.name.startswith(".")]
    out = []
    for entry in dict.fromkeys(candidates):
        try:
            used = entry.stat().st_mtime if entry.exists() else max(p.stat().st_mtime for p in _members(entry))
        except (OSError, ValueError):  # removed meanwhile by another process
            continue
        out.append((entry, used, _entry_bytes(entry)))
    return out


def _entry_bytes(entry: Path) -> int:
    return sum(_size(p) for p in _members(entry))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size  # the apparent size, as `ls` and the messages show it
    except OSError:
        return 0


def _remove(entry: Path) -> bool:
    try:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            # The record first: an export without its record is never trusted, so a half-done removal is safe.
            for p in sorted(_members(entry), key=lambda p: p.name == entry.name):
                p.unlink(missing_ok=True)
    except OSError as exc:
        _logger.warning("could not remove %s from the cache (%s); it stays", entry, exc)
        return False
    return True


def _mb(n: int) -> str:
    return f"{n / 10**6:,.0f} MB"
