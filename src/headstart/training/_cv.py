"""k-fold cross-validation for the strategies that train on cached features, and the twin each one keeps.

A strategy cheap enough to fit k times (``probe``; ``head`` on cached features) is scored over stratified k folds
of the train + validation images and then refitted on all of them, as issue 11 asks: on Fashion-MNIST one
225-image validation split made a head look 2 points better than the cross-validated probe, and it was 1.2 points
worse on test. The refit has seen the validation images, so each such strategy also keeps a *twin*: the same
settings fitted on the train split only. The twin is what partial/finetune start from and what they are compared
with on the validation split (the same images), so neither start nor comparison leaks. The test images are never
read here.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

import numpy as np

from ._context import Holdout, StrategyResult

if TYPE_CHECKING:
    from ._context import Strategy, TrainContext

__all__ = ["Holdout", "folds", "fit_head_cv"]


def folds(y: np.ndarray, n_train: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k folds over train + val (k ≥ 2 and every class present k times), else the one train/val split
    (rows ``[0, n_train)`` train, the rest validate). Every strategy gets the same folds for the same data."""
    counts = np.bincount(y)
    k = min(k, int(counts[counts > 0].min())) if k >= 2 else 0
    if k < 2 or len(np.unique(y)) < 2:
        return [(np.arange(n_train), np.arange(n_train, len(y)))]
    from sklearn.model_selection import StratifiedKFold

    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))


def fit_head_cv(strategy: "Strategy", ctx: "TrainContext", build: Callable, xtr, ytr, xva, yva
                ) -> "StrategyResult | None":
    """The ``head`` strategy on cached features, cross-validated: one fit per fold (early stopping on the fold),
    then a refit on train + val for the folds' median best epoch count. None when there is nothing to fold
    (``--cv-folds`` below 2, no validation split, or a class too small): the caller fits on train and scores on
    val as before.

    The score is each fold's at that common epoch count (what the refit trains for), not each fold's own best
    epoch, which was picked on the very images it is scored on. ``build()`` makes a fresh model; ``x*``/``y*``
    are the cached features and labels (torch tensors).
    """
    import torch

    from ._data import tensor_loader
    from ._loop import fit

    config = ctx.config
    x, y = torch.cat([xtr, xva]), torch.cat([ytr, yva])
    parts = folds(y.numpy(), len(ytr), config.cv_folds, config.seed)
    if len(parts) < 2 or not len(yva):
        return None

    def fit_on(rows, val_rows, name: str, epochs: int | None = None, timed: bool = True):
        model = build()
        val = tensor_loader(x[val_rows], y[val_rows], 256, train=False) if val_rows is not None else None
        # folds and refit are not stopped by auto's rule: their scores are the cross-validation itself
        kw = {**ctx.fit_kw(strategy, epochs=epochs), "name": name, "progress": False, "should_stop": None}
        if not timed:  # bounded by its epochs; a budget cut would leave a head that saw a batch
            kw["deadline"] = None
        hist = fit(model.head, tensor_loader(x[rows], y[rows], config.batch_size, train=True, seed=config.seed),
                   val, strategy.param_groups(model, config), **kw)
        return model, hist

    hists = [fit_on(tr, va, f"{strategy.name}.fold{i}")[1] for i, (tr, va) in enumerate(parts)]
    epochs = max(1, int(np.median([h.best_epoch + 1 for h in hists])))
    scores = [h.val_score[min(epochs, len(h.val_score)) - 1] for h in hists]
    accs = [h.val_acc[min(epochs, len(h.val_acc)) - 1] for h in hists]
    model, hist = fit_on(np.arange(len(y)), None, strategy.name, epochs=epochs, timed=False)
    twin = functools.partial(_head_twin, fit_on, np.arange(len(ytr)), np.arange(len(ytr), len(y)),
                             f"{strategy.name}.twin")
    mean, std = float(np.mean(scores)), float(np.std(scores))
    metric = config.metric.replace("_", " ")
    details = {"cv_folds": len(parts), "cv_mean": round(mean, 4), "cv_std": round(std, 4),
               "cv": f"{mean:.2%} ± {std:.2%} ({len(parts)}-fold {metric})", "refit_epochs": epochs}
    return StrategyResult(strategy.name, model, float(np.mean(accs)), 0.0, hist, details, val_score=mean,
                          n_scored=len(y), twin=twin)


def _head_twin(fit_on, rows, val_rows, name: str) -> Holdout:
    """The head fitted on the train split, early-stopped on the validation split (headstart's head before CV)."""
    model, hist = fit_on(rows, val_rows, name, timed=False)
    return Holdout(model.head.state_dict(), hist.best_val_score, hist.best_val_acc)
