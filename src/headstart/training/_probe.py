"""The ``probe`` strategy's fit: logistic regression on cached pooled features, folded into the model's head."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._data import cached_activations
from ._loop import class_weights, score

if TYPE_CHECKING:
    from ..models import HeadstartModel
    from ._strategies import TrainContext

__all__ = ["fit_probe", "C_GRID"]

C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # inverse regularization, chosen on the validation split


def fit_probe(model: "HeadstartModel", ctx: "TrainContext", ecfg) -> tuple[dict[str, Any], float, float]:
    """Fit, choose C on validation, write the winner into ``model``'s final layer.

    Returns (details, validation score by ``config.metric``, validation accuracy). Ties on the score are broken by
    the validation log-loss: on small data several C give the same accuracy, and the smallest C (the old
    tie-break) gives timid probabilities (54–70 %) where a better-calibrated C exists.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.preprocessing import StandardScaler

    s = ctx.splits
    xtr, ytr, _ = cached_activations(s.train, s.classes, ecfg, progress=ctx.progress)
    xva, yva, _ = cached_activations(s.val, s.classes, ecfg, progress=ctx.progress)
    scaler = StandardScaler().fit(xtr.numpy())
    a, b = scaler.transform(xtr.numpy()), scaler.transform(xva.numpy())
    weighted = class_weights(s, ctx.config.balance) is not None
    labels = list(range(len(s.classes)))
    best = None
    for c in C_GRID:
        clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced" if weighted else None).fit(a, ytr.numpy())
        proba = clf.predict_proba(b)
        pred = proba.argmax(1)
        key = (score(yva.numpy(), pred, ctx.config.metric, len(labels)), -log_loss(yva.numpy(), proba, labels=labels))
        if best is None or key > best[0]:
            best = (key, c, clf, float((pred == yva.numpy()).mean()))
    (val_score, neg_loss), c, clf, acc = best
    _load_linear(model, clf, scaler, len(s.classes))
    return {"C": c, "val_log_loss": round(-neg_loss, 4)}, val_score, acc


def _load_linear(model: "HeadstartModel", clf, scaler, n_classes: int) -> None:
    """Fold the scaler into the logistic regression and write it into the model's final Dense layer."""
    w = clf.coef_ / scaler.scale_
    b = clf.intercept_ - (clf.coef_ * scaler.mean_ / scaler.scale_).sum(1)
    if n_classes == 2 and w.shape[0] == 1:  # binary LR: logit of class 1; class 0 gets 0 → same softmax
        w, b = np.concatenate([np.zeros_like(w), w]), np.concatenate([[0.0], b])
    linear = model.head.predictions.linear
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w).float())
        linear.bias.copy_(torch.from_numpy(b).float())
