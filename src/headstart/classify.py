"""Classify many images with a pretrained model; a bad file is reported and the others are still classified."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from .data import ImageInput, load_image
from .errors import ImageLoadError
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
             batch_size: int = 16) -> list[ClassifyResult]:
    """Top-``top`` predictions for each image, in input order; unreadable images carry ``error`` instead."""
    if isinstance(model, str):
        model = create_model(model)
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
