"""Classify many images with a pretrained model; a bad file is reported and the others are still classified."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .data import ImageInput, load_image
from .errors import HeadstartError, ImageLoadError
from .features._extract import default_workers
from .models import HeadstartModel, Prediction, create_model

__all__ = ["ClassifyResult", "classify"]


@dataclass
class ClassifyResult:
    path: str
    predictions: list[Prediction] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path,
                             "predictions": [{"label": p.label, "index": p.index, "probability": p.probability}
                                             for p in self.predictions]}
        if self.error is not None:
            d["error"] = self.error
        return d


def classify(images: Sequence[ImageInput], model: str | HeadstartModel = "lite0", *, top: int = 5,
             batch_size: int = 16, backend: str = "auto", device: str | None = None,
             workers: int | None = None, onnx: str | os.PathLike | None = None) -> list[ClassifyResult]:
    """Top-``top`` predictions for each image, in input order; unreadable images carry ``error`` instead.

    Files are decoded and classified in parallel worker processes on ``backend`` (see
    :func:`headstart.backends.prepare`; ``onnx``: an existing export of this model); in-memory images (PIL,
    arrays) run in this process on PyTorch.
    """
    for name, value in (("top", top), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise HeadstartError(f"{name} must be an integer ≥ 1; received {value!r}.")
    if isinstance(model, str):
        model = create_model(model)
    model.require_classifier()
    if images and all(isinstance(im, (str, os.PathLike)) for im in images):
        return _classify_files([os.fspath(im) for im in images], model, top, batch_size, backend=backend,
                               device=device, workers=workers, onnx=onnx)
    results = [ClassifyResult(path=str(im) if not hasattr(im, "shape") and not hasattr(im, "mode")
                              else f"<image {i}>") for i, im in enumerate(images)]
    good: list[tuple[int, Any]] = []
    for i, im in enumerate(images):
        try:
            good.append((i, load_image(im)))
        except ImageLoadError as exc:
            results[i].error = exc.cause
    for start in range(0, len(good), batch_size):
        chunk = good[start:start + batch_size]
        for (i, _), preds in zip(chunk, model.classify([im for _, im in chunk], top=top, batch_size=batch_size)):
            results[i].predictions = preds
    return results


def _classify_files(paths: list[str], model: HeadstartModel, top: int, batch_size: int, *, workers: int | None,
                    **backend: Any) -> list[ClassifyResult]:
    """Files through predict_items (parallel decode + inference); no more workers than batches."""
    from .data import Item
    from .evaluate import predict_items

    n_batches = -(-len(paths) // batch_size)
    workers = min(default_workers() if workers is None else workers, n_batches)
    probs, errors = predict_items(model, [Item(p, "") for p in paths], batch_size=batch_size, workers=workers,
                                  **backend)
    k = min(top, probs.shape[1])
    results = []
    for path, p, err in zip(paths, probs, errors):
        if err is not None:
            results.append(ClassifyResult(path, error=err))
            continue
        order = np.argsort(-p, kind="stable")[:k]
        results.append(ClassifyResult(path, [Prediction(model.class_names[j], int(j), float(p[j])) for j in order]))
    return results
