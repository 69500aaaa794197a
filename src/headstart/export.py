"""``headstart export RUN --format onnx``: a trained run as an ONNX file, checked against PyTorch.

The file maps a preprocessed batch (N, 3, H, W; see ``config.json``'s preprocessing) to class probabilities.
Next to it, ``<file>.json`` records the parity with PyTorch, the input size, the versions and the file's SHA-256;
``predict`` / ``evaluate`` on the run use the export (on the CPU, ``--backend auto|onnxruntime``) only while that
checksum and the model it was exported from still match.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .backends import export_onnx, onnxruntime_available
from .errors import HeadstartError

__all__ = ["FORMATS", "export_run"]

FORMATS = ("onnx",)
ONNX_NAME = "model.onnx"


def export_run(run_dir: str | os.PathLike, *, format: str = "onnx", out: str | os.PathLike | None = None
               ) -> dict[str, Any]:
    """Export the trained run in ``run_dir``; returns the record (path, parity, input size, speed).

    ``out`` defaults to ``RUN/model.onnx``, the place ``predict`` looks for it.
    """
    from .evaluate import _Probabilities
    from .train import load

    if format not in FORMATS:
        raise HeadstartError(f"format must be one of {', '.join(FORMATS)}; received {format!r}.")
    if not onnxruntime_available():
        raise HeadstartError("Exporting to ONNX needs onnxruntime for the parity check: "
                             "pip install 'headstart[onnx]'.")
    run = load(run_dir)
    module = _Probabilities(run.model).eval()
    input_size = (3, *run.model.input_size)
    path = Path(out) if out is not None else Path(run_dir) / ONNX_NAME
    return {"path": str(path), **export_onnx(module, input_size, path)}
