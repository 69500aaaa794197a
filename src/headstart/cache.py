"""What headstart keeps under ``$HEADSTART_HOME`` (default ``~/.cache/headstart``), and clearing it.

``weights/``: downloaded ImageNet weights (hash-checked; a download to get back). ``cache/``: activations cached by
``train`` (recomputed on demand). ``onnx/``: ONNX exports used by the onnxruntime backend (re-exported on demand).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import HeadstartError
from .home import PARTS as _LAYOUT
from .home import part_dir

__all__ = ["PARTS", "CacheEntry", "cache_info", "clear_cache"]

PARTS = {part: what for part, (_, what) in _LAYOUT.items()}


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
        files = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
        out.append(CacheEntry(part, root, len(files), sum(p.stat().st_size for p in files)))
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
