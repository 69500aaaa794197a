"""Scoring a classifier on labelled images: metrics as JSON, and the plots people would rather look at."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .data import Item
from .features._extract import batch_loader

__all__ = ["predict_items", "classification_metrics", "plot_confusion_matrix", "plot_training_curves"]


class _Probabilities(torch.nn.Module):
    """Softmax of a model's logits: what the backends export and run for classify / predict / evaluate."""

    def __init__(self, model):
        super().__init__()
        self.net = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).float().softmax(-1)


def predict_items(model, items: Sequence[Item], *, batch_size: int = 8, workers: int | None = None,
                  backend: str = "auto", device: str | None = None, onnx=None
                  ) -> tuple[np.ndarray, list[str | None]]:
    """Class probabilities (N × classes; NaN rows for unreadable images) and per-image errors, in input order.

    ``backend``/``device``/``onnx``: see :func:`headstart.backends.prepare`.
    """
    from .backends import batch_size_for, prepare

    model.eval()
    size = (3, *model.input_size)
    fn, _ = prepare(_Probabilities(model), size, backend=backend, device=device, onnx=onnx)
    batch_size = batch_size_for(fn, size, batch_size)
    batches = [list(range(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)]
    probs = np.full((len(items), len(model.class_names)), np.nan, np.float32)
    errors: list[str | None] = [None] * len(items)
    for idx, p, infos in batch_loader(items, model.preprocessing.transform(), fn, batches,
                                      workers=workers):
        good = iter(p if p is not None else [])
        for i, (_, _, _, err) in zip(idx, infos):
            if err is None:
                probs[i] = next(good)
            else:
                errors[i] = err
    return probs, errors


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], classes: list[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, c in enumerate(classes)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": list(classes),
    }


def evaluate_items(model, items: Sequence[Item], classes: list[str], **kw) -> dict[str, Any]:
    """Predict ``items`` with ``model`` and score against their labels; unreadable images are listed, not scored."""
    probs, errors = predict_items(model, items, **kw)
    lookup = {c: i for i, c in enumerate(model.class_names)}
    unknown = sorted({it.label for it in items} - set(lookup))
    if unknown:
        from .errors import HeadstartError

        raise HeadstartError(f"Labels {unknown} are not classes of this model ({', '.join(model.class_names)}).")
    ok = [i for i, e in enumerate(errors) if e is None]
    y_true = [lookup[items[i].label] for i in ok]
    y_pred = probs[ok].argmax(1).tolist() if ok else []
    out = classification_metrics(y_true, y_pred, list(model.class_names))
    out["skipped"] = [{"path": items[i].path, "reason": e} for i, e in enumerate(errors) if e is not None]
    return out


def plot_confusion_matrix(metrics: dict[str, Any], path: str | Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    cm = np.array(metrics["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(2.5 + 0.6 * len(cm), 2 + 0.6 * len(cm)))
    ConfusionMatrixDisplay(cm, display_labels=metrics["classes"]).plot(ax=ax, colorbar=False, cmap="Blues")
    ax.set_title(title or f"accuracy {metrics['accuracy']:.1%} (n={metrics['n']})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_training_curves(histories: dict[str, dict], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    drawn = [name for name, h in histories.items() if h and h.get("val_acc")]
    if not drawn:  # e.g. only the probe ran: a closed-form fit has no epochs to plot
        for ax in (a, b):
            ax.text(0.5, 0.5, "no epoch-based training in this run\n(probe: logistic regression)", ha="center",
                    va="center", transform=ax.transAxes)
    for name in drawn:
        h = histories[name]
        ep = range(1, len(h["val_acc"]) + 1)
        a.plot(ep, h["train_loss"], label=f"{name} train")
        a.plot(ep, h["val_loss"], "--", label=f"{name} val")
        b.plot(ep, h["val_acc"], label=f"{name} val")
        b.plot(ep, h["train_acc"], ":", label=f"{name} train")
    a.set(xlabel="epoch", ylabel="loss", title="loss")
    b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (a, b):
        if drawn:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
