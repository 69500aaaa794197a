"""The one owner of what lies under ``$HEADSTART_HOME`` (default ``~/.cache/headstart``).

Every module that reads or writes the cache asks this module for the folder, so the layout is written once:

- ``weights/``: downloaded ImageNet weights (hash-checked; a download to get back);
- ``cache/``: activations cached by ``train`` (recomputed on demand);
- ``onnx/``: ONNX exports used by the onnxruntime backend (re-exported on demand), with ``onnx/by-id/``: small
  records that find the export of a pretrained model from what identifies it, without building it.

Importing this module costs nothing (no torch): the command line asks it for paths before deciding what to load.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PARTS", "headstart_home", "part_dir", "weights_dir", "activations_dir", "onnx_dir"]

# part name (as `headstart cache --clear` takes it) → (folder under $HEADSTART_HOME, what it holds)
PARTS: dict[str, tuple[str, str]] = {
    "weights": ("weights", "downloaded ImageNet weights"),
    "activations": ("cache", "cached activations (train)"),
    "onnx": ("onnx", "ONNX exports (onnxruntime backend)"),
}


def headstart_home() -> Path:
    """The cache root: ``$HEADSTART_HOME`` or ``~/.cache/headstart``."""
    return Path(os.environ.get("HEADSTART_HOME") or Path.home() / ".cache" / "headstart")


def part_dir(part: str) -> Path:
    """The folder of one part of the cache (see :data:`PARTS`)."""
    return headstart_home() / PARTS[part][0]


def weights_dir() -> Path:
    return part_dir("weights")


def activations_dir() -> Path:
    return part_dir("activations")


def onnx_dir() -> Path:
    return part_dir("onnx")
