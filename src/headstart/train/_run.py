"""``train``: data → strategies → the winner on validation → test once → a self-contained run directory.

A run directory holds ``model.safetensors`` and ``config.json`` (architecture, class names, preprocessing, head,
version) — enough for :func:`load` to rebuild the model with no training code and no pickle — plus
``metrics.json``, ``classification_report.txt``, ``confusion_matrix.png``, ``training_curves.png`` and
``train_config.json`` (the resolved configuration).
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file

from ..atomic import atomic_write_json, atomic_write_safetensors, atomic_write_text
from ..classify import ClassifyResult, classify
from ..data import ImageInput, Preprocessing, Splits, read_source
from ..data._dataset import load_splits
from ..errors import HeadstartError
from ..evaluate import evaluate_items, plot_confusion_matrix, plot_training_curves
from ..models import HeadstartModel, create_model
from ._checkpoint import Checkpoints, checkpointing
from ._checkpoint import current as current_checkpoints
from ._strategies import STRATEGIES, StrategyResult, TrainConfig, run_strategy

__all__ = ["train", "TrainResult", "TrainedModel", "load", "choose_winner"]

_logger = logging.getLogger(__name__)
FORMAT = "headstart-run/1"


@dataclass
class TrainResult:
    run_dir: Path
    strategy: str
    val_accuracy: float
    test: dict[str, Any] | None
    table: list[dict[str, Any]] = field(default_factory=list)
    model: HeadstartModel | None = None


def choose_winner(results: Sequence[StrategyResult]) -> StrategyResult:
    """Highest validation accuracy; on a tie the earlier (cheaper) strategy. Uses validation data only."""
    return max(results, key=lambda r: (round(r.val_acc, 6), -STRATEGIES.index(r.name)))


def train(data: str | os.PathLike, out: str | os.PathLike, config: TrainConfig | None = None, *,
          progress: bool = True, log=None, resume: bool = False, **overrides) -> TrainResult:
    """Train on the labelled images in ``data`` and write the run directory ``out``.

    ``config.strategy`` is one of probe, head, partial, finetune, or auto (all within ``config.budget`` seconds,
    chosen on the validation split; the test split is scored once, for the winner). Every epoch is checkpointed
    in ``out/.checkpoints``; after an interruption, ``resume=True`` with the same arguments continues from the
    last finished epoch (finished training loops are not repeated). The checkpoints are removed on success.
    """
    config = replace(config or TrainConfig(), **overrides)
    say = log or (lambda msg: _logger.info(msg))
    config.check()
    splits = load_splits(data, val_split=config.val_split, test_split=config.test_split, seed=config.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoints.open(out, {"config": {k: v for k, v in config.to_dict().items() if k != "workers"},
                                  "data": splits.source, "counts": splits.counts(), "classes": splits.classes},
                            resume)
    if resume:
        say(f"resuming from the checkpoints in {ckpt.root}")
    say(f"data: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test images, classes "
        f"{', '.join(splits.classes)} (imbalance {splits.imbalance():.2f}×)")
    with checkpointing(ckpt):
        results = _run_strategies(splits, config, progress, say)
    winner = choose_winner(results)
    test = None
    if splits.test:
        say(f"scoring the winner ({winner.name}) on the {len(splits.test)} test images, once")
        test = evaluate_items(winner.model, splits.test, splits.classes, workers=config.workers)
    table = [{"strategy": r.name, "val_accuracy": r.val_acc, "seconds": round(r.seconds, 1), **r.details}
             for r in results]
    _save(out, winner, results, splits, config, test, table)
    ckpt.clear()
    return TrainResult(out, winner.name, winner.val_acc, test, table, winner.model)


def _run_strategies(splits: Splits, config: TrainConfig, progress: bool, say) -> list[StrategyResult]:
    torch.manual_seed(config.seed)
    if config.strategy != "auto":
        return [run_strategy(config.strategy, splits, config, progress)]
    start = time.perf_counter()
    ckpt = current_checkpoints()
    deadline = start + config.budget - (ckpt.spent() if ckpt is not None else 0.0)  # a resumed run keeps its budget
    results = []
    for name in STRATEGIES:
        left = deadline - time.perf_counter()
        if left <= 0 and results:  # the first strategy always runs: auto must return a model
            say(f"auto: budget of {config.budget:.0f} s spent; skipping {name}")
            continue
        say(f"auto: {name} ({left:.0f} s of budget left)")
        kw = {"head_from": next((r for r in results if r.name == "head"), None)} if name == "finetune" else {}
        r = run_strategy(name, splits, config, progress, deadline=deadline, **kw)
        say(f"auto: {name}: val accuracy {r.val_acc:.2%} in {r.seconds:.0f} s")
        results.append(r)
    return results


def _save(out: Path, winner: StrategyResult, results: Sequence[StrategyResult], splits: Splits,
          config: TrainConfig, test: dict[str, Any] | None, table: list[dict]) -> None:
    from .. import __version__

    model = winner.model
    # Atomic: a failed write (disk full) leaves the previous model.safetensors and no stray temporary file.
    atomic_write_safetensors(out / "model.safetensors", model.state_dict(), {"format": FORMAT})
    for stale in ("model.onnx", "model.onnx.json"):  # an export of the previous model in this folder
        (out / stale).unlink(missing_ok=True)
    atomic_write_json(out / "config.json", {
        "format": FORMAT, "model": model.config.to_dict(), "class_names": model.class_names,
        "preprocessing": model.preprocessing.to_dict(), "strategy": winner.name, "headstart_version": __version__})
    atomic_write_json(out / "train_config.json", {**config.to_dict(), "data": splits.source,
                                                  "split_counts": splits.counts(), "classes": splits.classes})
    metrics = {"strategy": winner.name, "val_accuracy": winner.val_acc, "strategies": table, "test": test,
               "histories": {r.name: r.history.to_dict() for r in results if r.history}}
    atomic_write_json(out / "metrics.json", metrics)
    if test:
        plot_confusion_matrix(test, out / "confusion_matrix.png", f"{winner.name} on test: {test['accuracy']:.1%}")
        atomic_write_text(out / "classification_report.txt", _report(test))
    plot_training_curves(metrics["histories"], out / "training_curves.png")


def _report(m: dict[str, Any]) -> str:
    lines = [f"{'class':<20}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for c, v in m["per_class"].items():
        lines.append(f"{c:<20}{v['precision']:>10.3f}{v['recall']:>10.3f}{v['f1']:>10.3f}{v['support']:>10d}")
    lines += ["", f"accuracy {m['accuracy']:.4f}   balanced accuracy {m['balanced_accuracy']:.4f}   n={m['n']}"]
    return "\n".join(lines) + "\n"


class TrainedModel:
    """A trained run loaded from disk: ``predict`` images, ``evaluate`` labelled data."""

    def __init__(self, model: HeadstartModel, config: dict[str, Any], root: Path):
        self.model, self.config, self.root = model, config, root

    @property
    def class_names(self) -> list[str]:
        return self.model.class_names

    @property
    def onnx_path(self) -> Path | None:
        """The run's ONNX export (``headstart export``), used on the CPU by backend auto/onnxruntime."""
        path = self.root / "model.onnx"
        return path if path.is_file() else None

    def predict(self, images: Sequence[ImageInput], top: int = 1, *, backend: str = "auto",
                device: str | None = None) -> list[ClassifyResult]:
        return classify(images, self.model, top=min(top, len(self.class_names)), backend=backend, device=device,
                        onnx=self.onnx_path)

    def evaluate(self, data: str | os.PathLike, **kw) -> dict[str, Any]:
        """Metrics on a labelled folder/CSV; for a folder with a test/ subfolder, on that split.

        Keyword arguments go to :func:`headstart.evaluate.predict_items` (``backend``, ``device``, ``workers``).
        """
        kw.setdefault("onnx", self.onnx_path)
        root = Path(data)
        items = read_source(root / "test" if (root / "test").is_dir() else root)
        if any(not it.label for it in items):
            raise HeadstartError(f"{data}: evaluation needs labelled images (class subfolders or a label column).")
        return evaluate_items(self.model, items, self.class_names, **kw)


def load(run_dir: str | os.PathLike) -> TrainedModel:
    """Rebuild a trained model from its run directory (safetensors + JSON; nothing is unpickled)."""
    root = Path(run_dir)
    if not (root / "config.json").is_file() or not (root / "model.safetensors").is_file():
        raise HeadstartError(f"{root} is not a headstart run: expected config.json and model.safetensors in it.")
    cfg = json.loads((root / "config.json").read_text())
    if cfg.get("format") != FORMAT:
        raise HeadstartError(f"{root}/config.json has format {cfg.get('format')!r}; expected {FORMAT!r}.")
    m = cfg["model"]
    model = create_model(m["name"], weights=None, include_top=m["include_top"],
                         input_shape=tuple(m["input_shape"]) if m["input_shape"] else None, pooling=m["pooling"],
                         classes=m["classes"], head=m["head"])
    try:
        state = load_file(str(root / "model.safetensors"))
    except Exception as exc:  # safetensors only parses a header and raw tensors: a bad file is refused here
        raise HeadstartError(f"{root / 'model.safetensors'}: not a valid safetensors file ({str(exc)[:200]}); "
                             f"refused. Train the run again or restore the file.") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise HeadstartError(f"{root / 'model.safetensors'} does not match config.json's model: "
                             f"{str(exc)[:300]}") from None
    model.preprocessing = Preprocessing.from_dict(cfg["preprocessing"])
    model.class_names = list(cfg["class_names"])
    return TrainedModel(model.eval(), cfg, root)
