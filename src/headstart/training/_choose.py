"""The choice between strategies: the one-standard-error rule, cross-validated scores meeting validation scores
through the train-only twin, and the sentence that explains the choice. Pure: nothing here trains."""
from __future__ import annotations

import math
from typing import Sequence

from ._config import STRATEGY_NAMES
from ._context import StrategyResult

__all__ = ["choose_winner", "one_se_margin", "say_choice", "scored"]


def choose_winner(results: Sequence[StrategyResult]) -> StrategyResult:
    """The cheapest strategy whose score is within one standard error of the best score (the one-standard-error
    rule), comparing scores measured on the same images; validation or cross-validation only.

    A lead smaller than the noise of its measurement is no reason to take the costlier model, whose validation
    score is also the best of its epochs (chosen on those same images): on ELPV's 295 validation images the
    standard error of an 88 % accuracy is 1.9 points, while the probe's 5-fold score rests on all 1,968 training
    images. The cross-validated strategies (same folds) are compared first; the best of them then meets the
    strategies scored on the validation split with its twin's score there (:mod:`._cv`): a cross-validated mean
    and one easy validation split are not the same measurement (Fashion-MNIST, split 3: a head's 88.0 % on val
    beat the probe's 86.1 % CV, and lost on test).
    """
    cv = [r for r in results if r.cross_validated]
    rest = [r for r in results if not r.cross_validated]
    if not cv or not rest:
        return _one_se(results, {id(r): (r.score, r.n_scored) for r in results})
    cheap = cv_winner(cv)
    held = cheap.holdout()
    if held is None or held.val_score is None:  # no validation split to meet on (--val-split 0)
        return _one_se(results, {id(r): (r.score, r.n_scored) for r in results})
    scores = {id(r): (r.score, r.n_scored) for r in rest}
    scores[id(cheap)] = (held.val_score, max(r.n_scored for r in rest))
    return _one_se([cheap, *rest], scores)


def cv_winner(cv: Sequence[StrategyResult]) -> StrategyResult:
    """The one-standard-error choice among the cross-validated strategies (the same folds)."""
    return _one_se(cv, {id(r): (r.score, r.n_scored) for r in cv})


def one_se_margin(score: float, n: int) -> float:
    """The standard error of an accuracy-like ``score`` measured on ``n`` images: what a costlier strategy must
    lead by to be chosen over a cheaper one."""
    p = min(max(score, 0.0), 1.0)
    return math.sqrt(p * (1 - p) / n) if n else 0.0


def _one_se(results: Sequence[StrategyResult], scores: dict[int, tuple[float, int]]) -> StrategyResult:
    """The one-standard-error rule over ``scores`` (id of a result → its score and the images it rests on)."""
    order = list(STRATEGY_NAMES)
    best = max(results, key=lambda r: (round(scores[id(r)][0], 6), -order.index(r.name)))
    top, n = scores[id(best)]
    se = one_se_margin(top, n)
    return min((r for r in results if scores[id(r)][0] >= top - se - 1e-9), key=lambda r: order.index(r.name))


def scored(r: StrategyResult, metric: str) -> str:
    """What a strategy's score rests on: k-fold cross-validation (mean ± std) or the validation split."""
    cv = r.details.get("cv")
    return f"cross-validated {cv}" if cv else f"val {metric.replace('_', ' ')} {r.score:.2%}"


def say_choice(winner: StrategyResult, results: Sequence[StrategyResult], metric: str, say) -> None:
    """How the winner was chosen, when cross-validated strategies met ones scored on the validation split."""
    cv = [r for r in results if r.cross_validated]
    rest = [r for r in results if not r.cross_validated]
    cheap = cv_winner(cv) if cv else None
    if cheap is None or not rest or cheap.held is None or cheap.held.val_score is None:
        return
    m = metric.replace("_", " ")
    on_val = ", ".join([f"{cheap.name} (fitted on train only) {cheap.held.val_score:.2%}"] +
                       [f"{r.name} {r.score:.2%}" for r in rest])
    say(f"auto: on the validation split ({m}): {on_val}; chose {winner.name} (the cheapest within one standard "
        f"error of the best)")
