"""Prediction: classify images with a pretrained model, or predict with a trained run; a bad file is reported and
the others are still classified.

A :class:`Predictor` is what turns preprocessed batches into class probabilities: a backend function (ONNX Runtime
or PyTorch, see :mod:`headstart.backends`), the preprocessing of its weights, and the class names. It is built from
a torch model (:func:`predictor_for`) or, without importing torch, from a cached or exported ONNX file whose record
carries the class names and preprocessing (:func:`pretrained_predictor`, :meth:`headstart.run.TrainedModel.predict`).
Files then go through the runner (parallel decode + inference).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .backends import BackendInfo, batch_size_for, choose_ort, find_export, onnxruntime_available, runs_on_cpu
from .data import ImageInput, Item, Preprocessing, load_image
from .errors import HeadstartError, ImageLoadError
from .runner import default_workers, plan_batches, run_batches
from .views import view_ops, with_views

if TYPE_CHECKING:
    from .models import HeadstartModel, Prediction

__all__ = ["ClassifyResult", "Predictor", "classify", "classify_images", "predict_items", "predictor_for", "pretrained_predictor",
           "weights_id"]


@dataclass
class ClassifyResult:
    path: str
    predictions: list["Prediction"] = field(default_factory=list)
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


@dataclass
class Predictor:
    """A backend function mapping a preprocessed batch to probabilities, with what feeds and names it."""

    fn: Callable
    info: BackendInfo
    preprocessing: Preprocessing
    class_names: list[str]
    views: str = "none"  # probabilities are averaged over these views of each image (headstart.views)

    def batch_fn(self) -> Callable:
        """Preprocessed batch → probabilities, views included: the one function every prediction path calls."""
        return with_views(self.fn, self.views)


def predictor_for(model: "HeadstartModel", *, backend: str = "auto", device: str | None = None, onnx=None,
                  identity: dict[str, Any] | None = None) -> Predictor:
    """A :class:`Predictor` for a torch model (exported and parity-checked once when ONNX Runtime runs it)."""
    from .backends import prepare
    from .models import Probabilities

    model.require_classifier()
    model.eval()
    views = getattr(model, "views", "none")  # set by the probe's choice, or from a run's config.json
    about = {"class_names": list(model.class_names), "preprocessing": model.preprocessing.to_dict()}
    fn, info = prepare(Probabilities(model), (3, *model.input_size), backend=backend, device=device, onnx=onnx,
                       identity=identity, about=about)
    info.log()
    return Predictor(fn, info, model.preprocessing, list(model.class_names), views)


def weights_id(name: str, weights: str | os.PathLike | None) -> str | None:
    """What identifies a model's weights without loading them (None: random weights, nothing to identify)."""
    from .models import get_spec
    from .weights import sha256_file

    if weights is None:
        return None
    if weights == "imagenet":
        spec = get_spec(name)
        return spec.weights.sha256 if spec.weights else None
    return sha256_file(weights)


def _identity(name: str, weights) -> dict[str, Any] | None:
    from .models import get_spec

    wid = weights_id(name, weights)
    return None if wid is None else {"task": "probabilities", "model": get_spec(name).name, "weights_sha256": wid}


def pretrained_predictor(name: str, weights="imagenet", *, backend: str = "auto",
                         device: str | None = None) -> Predictor | None:
    """The cached ONNX export of a pretrained classifier, found without building it (no torch), or None."""
    if backend == "torch" or not runs_on_cpu(device) or not onnxruntime_available():
        return None
    identity = _identity(name, weights)
    found = find_export(identity) if identity else None
    why = choose_ort(backend, found[1]) if found else None
    if not why:
        return None
    from .backends import OrtFn

    path, record, about = found
    info = BackendInfo("onnxruntime", "cpu", why, record["parity"], str(path),
                       record.get("speed", {}))
    info.log("the cached export, found without building the model")
    return Predictor(OrtFn(path).open(), info, Preprocessing.from_dict(about["preprocessing"]), about["class_names"])


def predict_items(predictor: Predictor, items: Sequence[Item], *, batch_size: int = 8, workers: int | None = None
                  ) -> tuple[np.ndarray, list[str | None]]:
    """Class probabilities (N × classes; NaN rows for unreadable images) and per-image errors, in input order."""
    size = (3, *predictor.preprocessing.input_size)
    batch_size = batch_size_for(predictor.fn, size, batch_size)
    if not predictor.fn.runs_in_workers:  # a GPU batch sized for one view: each image runs V times
        batch_size = max(1, batch_size // len(view_ops(predictor.views)))
    from .distributed import gather_rows, my_batches

    batches = my_batches(plan_batches(len(items), batch_size))  # under torchrun: this rank's share
    workers = min(default_workers() if workers is None else workers, len(batches))
    probs = np.full((len(items), len(predictor.class_names)), np.nan, np.float32)
    errors: list[str | None] = [None] * len(items)
    for idx, p, infos in run_batches(items, predictor.preprocessing.array_transform(), predictor.batch_fn(),
                                     batches, workers=workers):
        good = iter(p if p is not None else [])
        for i, (_, _, _, err) in zip(idx, infos):
            if err is None:
                probs[i] = next(good)
            else:
                errors[i] = err
    return gather_rows(probs, errors, batches)


def classify(images: Sequence[ImageInput], model: "str | HeadstartModel" = "lite0", *, top: int = 5,
             batch_size: int = 16, backend: str = "auto", device: str | None = None, workers: int | None = None,
             onnx: str | os.PathLike | None = None, weights: str | os.PathLike | None = "imagenet"
             ) -> list[ClassifyResult]:
    """Top-``top`` predictions for each image, in input order; unreadable images carry ``error`` instead.

    ``model`` is a name (built with ``weights``) or a model. Files are decoded and classified in parallel worker
    processes on ``backend`` (see :func:`headstart.backends.prepare`; ``onnx``: an existing export of this
    model); when the model is named and its export is cached, no torch model is built at all. In-memory images
    (PIL, arrays) run in this process on PyTorch.
    """
    for name, value in (("top", top), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise HeadstartError(f"{name} must be an integer ≥ 1; received {value!r}.")
    files = bool(images) and all(isinstance(im, (str, os.PathLike)) for im in images)
    if files and isinstance(model, str) and onnx is None:
        predictor = pretrained_predictor(model, weights, backend=backend, device=device)
        if predictor is not None:
            return classify_files([os.fspath(im) for im in images], predictor, top, batch_size, workers)
    identity = _identity(model, weights) if isinstance(model, str) else None
    if isinstance(model, str):
        from .models import create_model

        model = create_model(model, weights=weights)
    model.require_classifier()
    if files:
        predictor = predictor_for(model, backend=backend, device=device, onnx=onnx, identity=identity)
        return classify_files([os.fspath(im) for im in images], predictor, top, batch_size, workers)
    return _classify_in_memory(images, model, top, batch_size)


def classify_files(paths: list[str], predictor: Predictor, top: int, batch_size: int, workers: int | None
                   ) -> list[ClassifyResult]:
    """Top-``top`` of each file through :func:`predict_items` (parallel decode + inference)."""
    from .models import Prediction

    probs, errors = predict_items(predictor, [Item(p, "") for p in paths], batch_size=batch_size, workers=workers)
    k = min(top, probs.shape[1])
    names = predictor.class_names
    results = []
    for path, p, err in zip(paths, probs, errors):
        if err is not None:
            results.append(ClassifyResult(path, error=err))
            continue
        order = np.argsort(-p, kind="stable")[:k]
        results.append(ClassifyResult(path, [Prediction(names[j], int(j), float(p[j])) for j in order]))
    return results


def classify_images(images: Sequence[ImageInput], predictor: Predictor, top: int, batch_size: int = 16
                    ) -> list[ClassifyResult]:
    """Top-``top`` of in-memory images (PIL, arrays) or files, in this process, through ``predictor.batch_fn()``:
    the same transform and views as :func:`predict_items`."""
    from .models import Prediction

    transform, fn = predictor.preprocessing.array_transform(), predictor.batch_fn()
    results = [ClassifyResult(path=str(im) if isinstance(im, (str, os.PathLike)) else f"<image {i}>")
               for i, im in enumerate(images)]
    good: list[tuple[int, np.ndarray]] = []
    for i, im in enumerate(images):
        try:
            good.append((i, transform(load_image(im))))
        except ImageLoadError as exc:
            results[i].error = exc.cause
    names, k = predictor.class_names, min(top, len(predictor.class_names))
    for start in range(0, len(good), batch_size):
        chunk = good[start:start + batch_size]
        probs = np.asarray(fn(np.stack([x for _, x in chunk])))
        for (i, _), p in zip(chunk, probs):
            order = np.argsort(-p, kind="stable")[:k]
            results[i].predictions = [Prediction(names[j], int(j), float(p[j])) for j in order]
    return results


def _classify_in_memory(images: Sequence[ImageInput], model: "HeadstartModel", top: int, batch_size: int
                        ) -> list[ClassifyResult]:
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
