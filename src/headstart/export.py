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

__all__ = ["FORMATS", "export_run", "export_int8", "INT8", "MAX_INT8_DROP"]

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


INT8 = "model.int8.onnx"
MAX_INT8_DROP = 0.01  # int8 may cost at most 1 point of test accuracy against the fp32 export, or it is refused


def export_int8(run_dir: str | os.PathLike, *, calibrate: str | os.PathLike | None = None, samples: int = 128,
                max_drop: float = MAX_INT8_DROP) -> dict[str, Any]:
    """``headstart export RUN --int8``: ONNX Runtime static quantization (QDQ, int8 weights per channel, uint8
    activations) of the run's fp32 export, calibrated on ``samples`` of the user's images (``calibrate``, default:
    the run's own data without its test images), written to ``RUN/model.int8.onnx``.

    Its test accuracy is measured beside the fp32 export's on the run's test split (``test_predictions.json``'s
    images, the run's views applied to both); when int8 loses more than ``max_drop`` the file is not kept and
    the error says by how much. The record (``model.int8.onnx.json``) holds both accuracies and speeds.
    """
    import tempfile

    from .atomic import atomic_write_json
    from .backends import OrtFn, check_record, record_path
    from .weights import sha256_file

    run = load(run_dir)
    fp32 = run.root / ONNX
    if run.onnx_path is None:
        export_run(run.root)
    run.check_export()
    tested = _test_items(run)
    images = _calibration_images(run, calibrate, {p for p, _ in tested}, samples)
    out = run.root / INT8
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / INT8
        _quantize(fp32, staged, images, run.preprocessing)
        acc32, acc8 = (_accuracy(OrtFn(p).open(), run, tested) for p in (fp32, staged))
        if acc32 - acc8 > max_drop:
            raise HeadstartError(f"int8 loses {100 * (acc32 - acc8):.2f} points of test accuracy (fp32 "
                                 f"{acc32:.2%}, int8 {acc8:.2%} on {len(tested)} test images), more than the "
                                 f"{100 * max_drop:.1f} allowed; nothing was written. Keep the fp32 export, or "
                                 f"calibrate on more images (--calibrate DIR).")
        speed = {name: _img_per_s(OrtFn(p).open(), run) for name, p in (("fp32", fp32), ("int8", staged))}
        os.replace(staged, out)
    fp32_record = check_record(fp32)
    record = {"format": fp32_record["format"], "sha256": sha256_file(out), "source": export_source(run.root),
              "views": run.views, "fp32_sha256": fp32_record["sha256"], "calibration_images": len(images),
              "test_images": len(tested), "fp32_accuracy": acc32, "int8_accuracy": acc8, "max_drop": max_drop,
              "speed_img_s_single_thread": speed, "input_size": [3, *run.preprocessing.input_size]}
    atomic_write_json(record_path(out), record)
    return {"path": str(out), **record}


def _test_items(run) -> list[tuple[str, str]]:
    """(path, label) of the run's test images, from its test_predictions.json."""
    import json

    from .run import PREDICTIONS

    try:
        items = json.loads((run.root / PREDICTIONS).read_text())["items"]
    except (OSError, ValueError, KeyError):
        raise HeadstartError(f"{run.root}: no test predictions ({PREDICTIONS}) to check int8 against; train with "
                             f"a test split first.") from None
    return [(it["path"], it["label"]) for it in items if it.get("error") is None and os.path.isfile(it["path"])]


def _calibration_images(run, calibrate, test: set[str], samples: int) -> list[str]:
    import json

    from .data import read_source

    source = calibrate or json.loads((run.root / "train_config.json").read_text()).get("data")
    if not source:
        raise HeadstartError("No images to calibrate on: pass --calibrate DIR (images like the ones served).")
    items = [it.path for it in read_source(source) if it.path not in test]
    if not items:
        raise HeadstartError(f"{source}: no images besides the test split to calibrate on; pass --calibrate DIR.")
    step = max(1, len(items) // samples)
    return items[::step][:samples]


def _quantize(fp32: Path, out: Path, images: list[str], preprocessing) -> None:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .data import load_image

    transform = preprocessing.array_transform()

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(images)

        def get_next(self):
            for path in self.it:
                try:
                    return {"x": transform(load_image(path))[None]}
                except HeadstartError:  # an unreadable calibration image is only one fewer
                    continue
            return None

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    # Only the convolutions (the head — a signed square root before a Dense layer, a softmax — is a sliver of the
    # compute), 7-bit weights (reduce_range: u8×s8 products cannot saturate the 16-bit sums of AVX2 kernels), scales
    # from min/max. Measured on a cats-vs-dogs probe (benchmarks/RESULTS.md): −1.14 points with every op at full
    # range, −1.29 Conv-only with percentile scales, −0.71 and −0.43 with reduce_range (percentile, min/max).
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                    reduce_range=True, calibrate_method=CalibrationMethod.MinMax)
    prepared.unlink(missing_ok=True)


def _accuracy(fn, run, tested: list[tuple[str, str]]) -> float:
    """Test accuracy of the ONNX function ``fn`` on ``tested``, through the path `predict` takes (views included)."""
    from .backends import BackendInfo
    from .data import Item
    from .inference import Predictor, predict_items

    predictor = Predictor(fn, BackendInfo("onnxruntime"), run.preprocessing, run.class_names, run.views)
    probs, _ = predict_items(predictor, [Item(path, label) for path, label in tested])
    names = run.class_names
    return sum(names[int(k)] == label for k, (_, label) in zip(probs.argmax(1), tested)) / max(len(tested), 1)


def _img_per_s(fn, run, batches: int = 8) -> float:
    """Single-threaded images/s on batches of 8: the best of 3 passes of ``batches`` batches after a warm-up."""
    import time

    import numpy as np

    x = np.zeros((8, 3, *run.preprocessing.input_size), np.float32)
    fn(x)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(batches):
            fn(x)
        best = min(best, time.perf_counter() - t)
    return round(8 * batches / best, 1)
