"""``headstart export RUN --format onnx``: a trained run as an ONNX file, checked against PyTorch.

The file maps a preprocessed batch (N, 3, H, W; see ``config.json``'s preprocessing) to class probabilities.
Next to it, ``<file>.json`` records the parity with PyTorch, the input size, the versions, the file's SHA-256 and
the SHA-256 of the run files it was made from and the run's views (the file itself is the one-view network:
average its probabilities over those views, :func:`headstart.views.apply_views`, to reproduce ``predict``); ``predict`` / ``evaluate`` on the run use the export (on the CPU,
``--backend auto|onnxruntime``, without importing torch) only while those checksums still match.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import HeadstartError
from .run import ONNX, export_source, load

__all__ = ["FORMATS", "export_run"]

FORMATS = ("onnx",)


def export_run(run_dir: str | os.PathLike, *, format: str = "onnx", out: str | os.PathLike | None = None
               ) -> dict[str, Any]:
    """Export the trained run in ``run_dir``; returns the record (path, parity, input size, speed).

    ``out`` defaults to ``RUN/model.onnx``, the place ``predict`` looks for it.
    """
    from .backends import export_onnx, onnxruntime_available
    from .models import Probabilities

    if format not in FORMATS:
        raise HeadstartError(f"format must be one of {', '.join(FORMATS)}; received {format!r}.")
    if not onnxruntime_available():
        raise HeadstartError("Exporting to ONNX needs onnxruntime for the parity check: "
                             "pip install 'headstart[onnx]'.")
    run = load(run_dir)
    module = Probabilities(run.model).eval()
    path = Path(out) if out is not None else run.root / ONNX
    # The views (config.json "views") are not in the graph: predict/evaluate apply them to the input batch in numpy
    # before ONNX Runtime, the one function the torch path uses too. The record says so for other consumers.
    record = export_onnx(module, (3, *run.model.input_size), path,
                         extra={"source": export_source(run.root), "views": run.views})
    return {"path": str(path), **record}
