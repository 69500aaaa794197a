"""The run directory: what ``train`` writes and what ``load``, ``predict``, ``evaluate`` and ``export`` read.

A run directory holds ``model.safetensors`` and ``config.json`` (architecture, class names, preprocessing, head,
version) — enough for :func:`load` to rebuild the model with no training code and no pickle — plus
``metrics.json``, ``classification_report.txt``, ``confusion_matrix.png``, ``training_curves.png``,
``train_config.json`` (the resolved configuration), ``test_predictions.json`` (per test image: label, prediction,
probabilities), ``seen.json`` (SHA-256 of every image the run trained or validated on, so ``evaluate`` scores
unseen images only; ``seen_copies.safetensors`` lets it report accuracy without their resized or re-encoded copies too)
and, after ``headstart export``, ``model.onnx`` + ``model.onnx.json``.

:class:`TrainedModel` builds its torch model only when it needs it: with a valid export on the CPU, ``predict``
and ``evaluate`` run on ONNX Runtime without importing torch. The export's record holds the SHA-256 of the run
files it was made from; an export whose file or source no longer match is refused.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .atomic import atomic_write_json, atomic_write_safetensors, atomic_write_text
from .backends import BackendInfo, check_record, choose_ort, runs_on_cpu
from .data import ImageInput, Item, Preprocessing, read_source
from .errors import HeadstartError, RunError
from .weights import sha256_file

if TYPE_CHECKING:
    from .inference import ClassifyResult, Predictor
    from .models import HeadstartModel

__all__ = ["FORMAT", "MODEL", "CONFIG", "TRAIN_CONFIG", "METRICS", "ONNX", "PREDICTIONS", "SEEN", "SEEN_COPIES", "TrainedModel",
           "load", "save_run", "export_source", "hash_images"]

FORMAT = "headstart-run/1"
MODEL, CONFIG, TRAIN_CONFIG, METRICS = "model.safetensors", "config.json", "train_config.json", "metrics.json"
REPORT_TXT, CONFUSION_PNG, CURVES_PNG = "classification_report.txt", "confusion_matrix.png", "training_curves.png"
ONNX = "model.onnx"
DATA_CHECKS = "data_checks.json"  # train's checks of the data: copies across splits, label issues, --exclude
PREDICTIONS, SEEN = "test_predictions.json", "seen.json"
SEEN_COPIES = "seen_copies.safetensors"  # perceptual hashes + 16×16 signatures of the seen images (headstart.data._copies)


def save_run(out: Path, model: "HeadstartModel", strategy: str, train_config: dict[str, Any],
             metrics: dict[str, Any], test_predictions: list[dict] | None, seen: dict[str, list[str]]) -> None:
    """Write the run directory (each file atomically; the model first, the plots last)."""
    from ._version import __version__
    from .evaluate import plot_confusion_matrix, plot_training_curves

    # Atomic: a failed write (disk full) leaves the previous model.safetensors and no stray temporary file.
    atomic_write_safetensors(out / MODEL, model.state_dict(), {"format": FORMAT})
    for stale in (ONNX, f"{ONNX}.json", PREDICTIONS):  # what belonged to the previous model in this folder
        (out / stale).unlink(missing_ok=True)
    atomic_write_json(out / CONFIG, {
        "format": FORMAT, "model": model.config.to_dict(), "class_names": model.class_names,
        "preprocessing": model.preprocessing.to_dict(), "strategy": strategy,
        # the views prediction averages over (headstart.views); runs written before views existed have none
        "views": getattr(model, "views", "none"), "headstart_version": __version__})
    atomic_write_json(out / TRAIN_CONFIG, train_config)
    atomic_write_json(out / SEEN, {"format": "headstart-seen/1", "sha256": seen})
    atomic_write_json(out / METRICS, metrics)
    test = metrics.get("test")
    if test:
        atomic_write_json(out / PREDICTIONS, {"format": "headstart-predictions/1", "classes": model.class_names,
                                              "items": test_predictions or []})
        plot_confusion_matrix(test, out / CONFUSION_PNG, f"{strategy} on test: {test['accuracy']:.1%}")
        atomic_write_text(out / REPORT_TXT, _report(test))
    plot_training_curves(metrics.get("histories", {}), out / CURVES_PNG)


def _report(m: dict[str, Any]) -> str:
    lines = [f"{'class':<20}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for c, v in m["per_class"].items():
        lines.append(f"{c:<20}{v['precision']:>10.3f}{v['recall']:>10.3f}{v['f1']:>10.3f}{v['support']:>10d}")
    lines += ["", f"accuracy {m['accuracy']:.4f}   balanced accuracy {m['balanced_accuracy']:.4f}   n={m['n']}"]
    return "\n".join(lines) + "\n"


def hash_images(paths: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(SHA-256 of each file that decodes as an image, (path, cause) of each that does not: never trained on, so
    it stays "unseen").

    A full decode through the loader training uses, not a header check: a truncated file was skipped by training
    too, and ``train`` names it (exit code 1) like every command that reads images.
    """
    from .data import load_image
    from .errors import ImageLoadError

    hashes, failed = [], []
    for p in paths:
        try:
            load_image(p)
            hashes.append(sha256_file(p))
        except ImageLoadError as exc:
            failed.append((str(p), exc.cause))
        except OSError as exc:  # vanished between decoding and hashing
            failed.append((str(p), exc.strerror or str(exc)))
    return hashes, failed


def export_source(root: Path) -> dict[str, str]:
    """SHA-256 of the run files an export is made from: an export is valid only while these match."""
    return {name: sha256_file(root / name) for name in (MODEL, CONFIG)}


class TrainedModel:
    """A trained run loaded from disk: ``predict`` images, ``evaluate`` labelled data.

    ``model`` (the torch :class:`HeadstartModel`) is built on first use; a valid ONNX export on the CPU serves
    ``predict`` and ``evaluate`` without it.
    """

    def __init__(self, root: Path, config: dict[str, Any]):
        self.root, self.config = root, config
        self._model: HeadstartModel | None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.config["preprocessing"])

    @property
    def views(self) -> str:
        """The views every prediction of this run averages over (``none`` for runs made before views)."""
        return str(self.config.get("views", "none"))

    @property
    def model(self) -> "HeadstartModel":
        if self._model is None:
            self._model = _build(self.root, self.config)
        return self._model

    @property
    def onnx_path(self) -> Path | None:
        """The run's ONNX export (``headstart export``), used on the CPU by backend auto/onnxruntime."""
        path = self.root / ONNX
        return path if path.is_file() else None

    def predictor(self, *, backend: str = "auto", device: str | None = None) -> "Predictor":
        """What predicts for this run: its checked ONNX export on the CPU when present (and faster), else torch."""
        from .inference import Predictor, predictor_for

        if backend == "int8":
            return self._int8_predictor()
        if self.onnx_path is not None and backend != "torch" and runs_on_cpu(device):
            record = self.check_export()
            why = choose_ort(backend, record)
            if why:
                from .backends import OrtFn
                info = BackendInfo("onnxruntime", "cpu", why, record["parity"],
                                   str(self.onnx_path), record.get("speed", {}))
                info.log(f"the run's export {self.onnx_path.name}, checked against {MODEL} and {CONFIG}")
                # The export is the one-view network; the views are applied to its input batch in numpy, by the
                # same function the torch path uses (Predictor.batch_fn), so both average the same views.
                return Predictor(OrtFn(self.onnx_path).open(), info, self.preprocessing, self.class_names,
                                 self.views)
        return predictor_for(self.model, backend=backend, device=device)

    def _int8_predictor(self) -> "Predictor":
        """The run's int8 export (``headstart export RUN --int8``), checked like the fp32 one."""
        from .backends import OrtFn
        from .inference import Predictor

        path = self.root / "model.int8.onnx"
        if not path.is_file():
            raise RunError(f"{self.root} has no int8 export; make it with `headstart export {self.root} --int8`.")
        record = self.check_export(path, again="--int8")
        drop = record["fp32_accuracy"] - record["int8_accuracy"]
        info = BackendInfo("onnxruntime-int8", "cpu", f"int8 export: test accuracy {record['int8_accuracy']:.2%} "
                           f"(fp32 {record['fp32_accuracy']:.2%}, {100 * drop:+.2f} points)", None, str(path),
                           record.get("speed_img_s_single_thread", {}))
        return Predictor(OrtFn(path).open(), info, self.preprocessing, self.class_names, self.views)

    def check_export(self, path: Path | None = None, again: str = "") -> dict[str, Any]:
        """The export's record (``path``: default the fp32 ONNX file) after checking its SHA-256 and that it was
        made from this run's current files. ``again``: the export flag that remakes it, for the error."""
        path = path or self.onnx_path
        record = check_record(path)
        if record.get("source") != export_source(self.root):
            raise RunError(f"{path} was exported from other weights or settings than this run's "
                           f"{MODEL}/{CONFIG}; it is refused. Export again "
                           f"(`headstart export {self.root}{' ' + again if again else ''}`).")
        return record

    def predict(self, images: Sequence[ImageInput], top: int = 1, *, backend: str = "auto",
                device: str | None = None, workers: int | None = None) -> list["ClassifyResult"]:
        from .inference import classify, classify_files, classify_images

        top = min(top, len(self.class_names))
        if images and all(isinstance(im, (str, os.PathLike)) for im in images):
            return classify_files([os.fspath(im) for im in images], self.predictor(backend=backend, device=device),
                                  top, 16, workers)
        if self.views != "none":  # in memory too, every view is predicted and averaged
            return classify_images(images, self.predictor(backend=backend, device=device), top)
        return classify(images, self.model, top=top, backend=backend, device=device)

    def evaluate(self, data: str | os.PathLike, *, include_seen: bool = False, **kw) -> dict[str, Any]:
        """Metrics on a labelled folder/CSV (for a folder with a test/ subfolder, on that split).

        Images this run trained or validated on (by content) are left out unless ``include_seen``; the result says
        how many (``excluded_seen``). Near-identical copies of them (resized, re-encoded) are scored, and also
        counted apart: ``near_copies_of_seen`` lists them and ``without_near_copies`` holds accuracy without them
        (runs trained with the copy check on). Keyword arguments: ``backend``, ``device``, ``workers``,
        ``batch_size``.
        """
        from .evaluate import evaluate_items

        root = Path(data)
        items = read_source(root / "test" if (root / "test").is_dir() else root)
        if any(not it.label for it in items):
            raise HeadstartError(f"{data}: evaluation needs labelled images (class subfolders or a label column).")
        seen = set() if include_seen else self.seen()
        kept = [it for it, h in zip(items, _hashes(items)) if h not in seen]
        if not kept:
            raise HeadstartError(f"{data}: all {len(items)} images were used to train or validate this run; "
                                 f"there is nothing unseen to score. Pass --include-seen (include_seen=True) to "
                                 f"score them anyway (a training score, not an estimate of accuracy).")
        predictor = self.predictor(backend=kw.pop("backend", "auto"), device=kw.pop("device", None))
        m = evaluate_items(predictor, kept, **kw)
        predictions = m.pop("predictions")
        m["excluded_seen"], m["include_seen"] = len(items) - len(kept), include_seen
        if not include_seen:
            m.update(self._without_copies(kept, predictions, workers=kw.get("workers")))
        return m

    def _without_copies(self, items: Sequence[Item], predictions: list[dict], *, workers=None) -> dict[str, Any]:
        """``near_copies_of_seen`` ({path, copy_of_split}) and the metrics of the rest (``without_near_copies``);
        nothing when the run holds no signatures of what it saw."""
        from .data import copies_of, image_stats, load_signatures
        from .evaluate import classification_metrics

        if not (self.root / SEEN_COPIES).is_file():
            return {}
        try:
            phash, signature, split = load_signatures(self.root / SEEN_COPIES)
        except (OSError, ValueError, KeyError) as exc:
            raise RunError(f"{self.root / SEEN_COPIES}: unreadable ({str(exc)[:200]}). Delete it to evaluate "
                           f"without the near-copy check, or train the run again.") from None
        stats, _ = image_stats([it.path for it in items], workers=workers)
        found = copies_of(stats, phash, signature)
        lookup = {c: i for i, c in enumerate(self.class_names)}
        rest = [p for p, f in zip(predictions, found) if f is None and p["error"] is None]
        copies = [{"path": it.path, "copy_of_split": str(split[f])} for it, f in zip(items, found) if f is not None]
        if not rest:  # every scored image is a copy of a seen one
            return {"near_copies_of_seen": copies,
                    "without_near_copies": {"accuracy": None, "balanced_accuracy": None, "n": 0}}
        m = classification_metrics([lookup[p["label"]] for p in rest], [lookup[p["predicted"]] for p in rest],
                                   self.class_names)
        return {"near_copies_of_seen": copies,
                "without_near_copies": {k: m[k] for k in ("accuracy", "balanced_accuracy", "n")}}

    def seen(self) -> set[str]:
        """SHA-256 of the images the run trained or validated on (empty for runs made before this was recorded)."""
        try:
            record = json.loads((self.root / SEEN).read_text())
        except (OSError, ValueError):
            return set()
        return {h for hashes in record.get("sha256", {}).values() for h in hashes}

    def explain(self, images: Sequence[ImageInput], **kw):
        """Class-activation maps for ``images`` (see :meth:`HeadstartModel.explain`)."""
        return self.model.explain(images, **kw)


def _hashes(items: Sequence[Item]) -> list[str | None]:
    out: list[str | None] = []
    for it in items:
        try:
            out.append(sha256_file(it.path))
        except OSError:
            out.append(None)  # unreadable: it is scored (and reported) as such
    return out


def load(run_dir: str | os.PathLike) -> TrainedModel:
    """Open a trained run directory (JSON only; the model is built, from safetensors, when first needed)."""
    root = Path(run_dir)
    if not (root / CONFIG).is_file() or not (root / MODEL).is_file():
        raise RunError(f"{root} is not a headstart run: expected {CONFIG} and {MODEL} in it.")
    try:
        cfg = json.loads((root / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"{root / CONFIG}: unreadable ({exc}). Train the run again or restore the file.") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise RunError(f"{root / CONFIG} has format {got!r}; expected {FORMAT!r}.")
    return TrainedModel(root, cfg)


def _build(root: Path, cfg: dict[str, Any]) -> "HeadstartModel":
    """The torch model of a run: architecture from config.json, weights from safetensors (nothing unpickled)."""
    from safetensors.torch import load_file

    from .models import create_model

    m = cfg["model"]
    model = create_model(m["name"], weights=None, include_top=m["include_top"],
                         input_shape=tuple(m["input_shape"]) if m["input_shape"] else None, pooling=m["pooling"],
                         classes=m["classes"], head=m["head"])
    try:
        state = load_file(str(root / MODEL))
    except Exception as exc:  # safetensors only parses a header and raw tensors: a bad file is refused here
        raise RunError(f"{root / MODEL}: not a valid safetensors file ({str(exc)[:200]}); "
                       f"refused. Train the run again or restore the file.") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise RunError(f"{root / MODEL} does not match {CONFIG}'s model: {str(exc)[:300]}") from None
    model.preprocessing = Preprocessing.from_dict(cfg["preprocessing"])
    model.class_names = list(cfg["class_names"])
    model.views = str(cfg.get("views", "none"))
    return model.eval()
