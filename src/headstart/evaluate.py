"""Scoring a classifier on labelled images: metrics as JSON, and the plots people would rather look at."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .data import Item
from .errors import HeadstartError

if TYPE_CHECKING:
    from .inference import Predictor

__all__ = ["evaluate_items", "classification_metrics", "plot_confusion_matrix", "plot_training_curves"]


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


def evaluate_items(predictor: "Predictor", items: Sequence[Item], **kw) -> dict[str, Any]:
    """Predict ``items`` and score against their labels; unreadable images are listed, not scored.

    Keyword arguments go to :func:`headstart.inference.predict_items` (``batch_size``, ``workers``). The result
    also holds ``probabilities`` (per scored item, in ``paths`` order) for reports.
    """
    from .inference import predict_items

    probs, errors = predict_items(predictor, items, **kw)
    lookup = {c: i for i, c in enumerate(predictor.class_names)}
    unknown = sorted({it.label for it in items} - set(lookup))
    if unknown:
        raise HeadstartError(f"Labels {unknown} are not classes of this model ({', '.join(predictor.class_names)}).")
    ok = [i for i, e in enumerate(errors) if e is None]
    y_true = [lookup[items[i].label] for i in ok]
    y_pred = probs[ok].argmax(1).tolist() if ok else []
    out = classification_metrics(y_true, y_pred, list(predictor.class_names))
    out["skipped"] = [{"path": items[i].path, "reason": e} for i, e in enumerate(errors) if e is not None]
    out["predictions"] = [{"path": items[i].path, "label": items[i].label,
                           "predicted": predictor.class_names[int(np.argmax(probs[i]))] if errors[i] is None else None,
                           "probabilities": [round(float(v), 6) for v in probs[i]] if errors[i] is None else None,
                           "error": errors[i]} for i in range(len(items))]
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
