"""``auto``: the search. Measure this machine on these images (:mod:`._cost`), plan which candidates fit the budget
and why, run them cheapest first, stop the ones that can no longer win, and hand the results to the choice
(:mod:`._choose`). Only this module knows there are several candidates; strategies see the search through
``TrainContext.deadline`` and ``TrainContext.should_stop`` alone.

Measured reasons for the plan's rules (benchmarks/RESULTS.md):
- On a CPU, a whole-network fine-tune gets the few epochs the budget leaves (3 at 224 px on ELPV, ~280 s). It lost
  on every ELPV split (val 79.7–81.7 % against the probe twin's 85.1–86.4 %) and to partial on natural photos
  (86.8 against 90.9 %); the GPU recipe that wins trains 30 epochs. So on a CPU it runs only when it would train
  at least :data:`CPU_FINETUNE_MIN_EPOCHS` epochs (its own limit and the budget's; with the default 3, never) or
  ``--finetune-epochs`` was given, and its time goes to the rest.
- A candidate trained by epochs is stopped once its validation curve cannot reach what it must beat to be chosen
  (:class:`LosingBound`).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Sequence

from ._choose import choose_winner, one_se_margin, scored
from ._context import StrategyResult, TrainContext
from ._cost import HEAD_SECONDS_PER_IMAGE_EPOCH, LR_SECONDS_PER_ROW, Measured, measure

if TYPE_CHECKING:
    from ._loop import History

__all__ = ["AUTO_HELP", "Candidate", "Plan", "make_plan", "run_auto", "LosingBound", "CPU_FINETUNE_MIN_EPOCHS"]

AUTO_HELP = ("measure this machine on these images, plan what fits --budget (printed, and saved in "
             "metrics.json), run the candidates cheapest first, stop those that can no longer win, and keep the "
             "cheapest within one standard error of the best")
CPU_FINETUNE_MIN_EPOCHS = 10  # fewer epochs of every layer never beat the probe on a CPU (see the module doc)
MIN_EPOCHS = 2  # an epoch-trained candidate is in the plan only when its caching and this many epochs fit


@dataclass
class Candidate:
    """One strategy at one input size, what it should cost here, and whether the plan runs it (and why)."""

    strategy: str
    side: int
    what: str  # e.g. "8 views" or "from blocks.6"
    estimate: float  # seconds for the whole candidate, at most its epochs
    minimum: float  # seconds for its fixed costs plus MIN_EPOCHS epochs (closed-form: its estimate)
    epoch_seconds: float | None  # one epoch (None: closed-form)
    run: bool = True
    why: str = ""
    seconds: float | None = None  # what it took
    outcome: str | None = None  # its score, or why it stopped

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("estimate", "minimum", "epoch_seconds", "seconds"):
            d[k] = None if d[k] is None else round(d[k], 1)
        return d


@dataclass
class Plan:
    budget: float
    measured: Measured
    candidates: list[Candidate] = field(default_factory=list)
    interrupted: str | None = None  # the candidate Ctrl-C or SIGTERM stopped (the run keeps the best so far)

    def lines(self) -> list[str]:
        m = self.measured
        fwd = ", ".join(f"{s} px {r:.0f}" for s, r in sorted(m.forward.items()))
        steps = ", ".join([f"every layer {s} px {r:.0f}" for s, r in m.train_step.items()] +
                          [f"partial {s} px {r:.0f}" for s, r in m.partial_step.items()])
        out = [f"auto: plan for {self.budget:.0f} s on {m.device} (measured in {m.seconds:.1f} s, images/s: decode "
               f"{m.decode:.0f}; forward {fwd}" + (f"; training step {steps}" if steps else "") + ")"]
        for c in self.candidates:
            out.append(f"  {c.strategy:<9} {c.side:>4} px  {c.what:<16} ~{c.estimate:>6.0f} s  "
                       f"{'run ' if c.run else 'skip'}  {c.why}")
        return out

    def to_dict(self) -> dict:
        return {"budget": self.budget, "measured": self.measured.to_dict(),
                "candidates": [c.to_dict() for c in self.candidates], "interrupted": self.interrupted}


def make_plan(ctx: TrainContext, budget: float, given: frozenset[str] = frozenset()) -> Plan:
    """Measure, estimate each strategy's cost at the size it trains at, and decide what runs."""
    from ..views import VIEW_SETS
    from ._probe import norm_candidates, view_candidates
    from ._strategies import _base, _native, cut_point

    from ._recipes import recipe_for

    c, s = ctx.config, ctx.splits
    recipe = recipe_for(ctx)
    model = _base(c, s.classes, c.head)
    side = model.preprocessing.input_size[0]
    native = _native(ctx).config.input_shape
    native_side = native[0] if native else side
    # the gpu recipe fine-tunes at the images' own size, as partial does (benchmarks/finetune_gpu.py: 300 px)
    sides = {"probe": side, "head": side, "finetune": native_side if recipe.resident else side,
             "partial": native_side}
    cut = cut_point(model, c)[1]
    measured = measure(ctx, model, sides, cut)
    n_train, n_val = len(s.train), len(s.val)
    n, width = n_train + n_val, getattr(model.backbone, "num_features", 1280)
    views = max(view_candidates(c.views, n, model.preprocessing.input_size), key=lambda v: len(VIEW_SETS[v]))
    fwd = lambda k: measured.forward[sides[k]]  # noqa: E731
    decode = n / measured.decode
    rows = n * len(VIEW_SETS[views])
    fresh = 1.0 - _cached_share(ctx, views)  # what is cached costs no extraction
    probe = fresh * (rows / fwd("probe") + decode) + rows * width * LR_SECONDS_PER_ROW * len(
        norm_candidates(c.power_norm))
    head_fits = (c.cv_folds + 2) if c.cv_folds >= 2 else 1
    head_epoch = HEAD_SECONDS_PER_IMAGE_EPOCH * n * head_fits
    partial_epoch = n_train / measured.partial_step[sides["partial"]] + n_val / fwd("partial")
    partial_fixed = n / fwd("partial") + decode  # its cache: the activations at the cut, once
    finetune_epoch = n_train / measured.train_step[sides["finetune"]] + n_val / fwd("finetune")
    if recipe.resident:  # decoded once, then the frozen prefix runs forward every step
        partial_epoch += n_train / fwd("partial")
    else:  # one worker decodes every image every epoch, beside the step
        finetune_epoch = max(finetune_epoch, decode)
    cands = [
        Candidate("probe", side, f"{len(VIEW_SETS[views])} view{'s' * (len(VIEW_SETS[views]) > 1)}", probe, probe,
                  None),
        Candidate("head", side, c.head, head_epoch * c.epochs, head_epoch * MIN_EPOCHS, head_epoch),
        Candidate("partial", sides["partial"], f"from {cut.removeprefix('backbone.')}",
                  partial_fixed + partial_epoch * _max_epochs("partial", ctx),
                  partial_fixed + partial_epoch * MIN_EPOCHS, partial_epoch),
        Candidate("finetune", sides["finetune"], f"every layer, {recipe.name} recipe",
                  decode * recipe.resident + finetune_epoch * _max_epochs("finetune", ctx),
                  decode * recipe.resident + finetune_epoch * MIN_EPOCHS, finetune_epoch),
    ]
    plan = Plan(budget, measured, cands)
    _decide(plan, ctx, budget, given)
    return plan


def _cached_share(ctx: TrainContext, views: str) -> float:
    """How much of the probe's extraction the view cache already holds (0 when the probe reads the feature store:
    one view, then the store decides)."""
    if views == "none":
        return 0.0
    from ._strategies import _extract_cfg
    from ._views import cached_share

    return cached_share([*ctx.splits.train, *ctx.splits.val], _extract_cfg(ctx, pooling="avg"), views)


def _decide(plan: Plan, ctx: TrainContext, left: float, given: frozenset[str]) -> None:
    """In or out, cheapest first, each taking its expected time out of what is left; the first always runs."""
    for i, cand in enumerate(plan.candidates):
        cand.run, cand.why = _fits(cand, ctx, left, given, first=i == 0)
        if cand.run:
            left -= min(cand.estimate, max(left, 0.0))


def _fits(cand: Candidate, ctx: TrainContext, left: float, given: frozenset[str], first: bool) -> tuple[bool, str]:
    from ..distributed import any_rank, launched

    agree = (lambda flag: any_rank(flag)) if launched() else (lambda flag: flag)  # noqa: E731
    if first:
        return True, "cheapest; always runs (auto must return a model)"
    if agree(cand.minimum > left):
        return False, f"needs ≥ {cand.minimum:.0f} s (with {MIN_EPOCHS} epochs); {max(left, 0):.0f} s left"
    if cand.strategy == "finetune" and ctx.device.type != "cuda" and "finetune_epochs" not in given:
        fit = int(left // cand.epoch_seconds) if cand.epoch_seconds else 0
        would = min(fit, _max_epochs("finetune", ctx))  # what it would train: the budget's or its own limit
        if agree(would < CPU_FINETUNE_MIN_EPOCHS):
            return False, (f"on a CPU it would train {would} epoch{'s' * (would != 1)} of every layer ({fit} fit, "
                           f"--finetune-epochs {ctx.config.finetune_epochs}); fewer than {CPU_FINETUNE_MIN_EPOCHS} "
                           f"never beat the probe here; --finetune-epochs N runs it anyway")
    if cand.epoch_seconds is None:
        return True, f"fits ({max(left, 0):.0f} s left)"
    epochs = min(_max_epochs(cand.strategy, ctx), int(max(left - (cand.minimum - MIN_EPOCHS * cand.epoch_seconds), 0)
                                              // max(cand.epoch_seconds, 1e-9)))
    if cand.strategy == "head" and ctx.config.cv_folds >= 2 and ctx.config.augment in (None, "none"):
        return True, f"{ctx.config.cv_folds}-fold cross-validated on cached features, up to {epochs} epochs"
    return True, f"up to {epochs} epochs; stopped once it can no longer win"


def _max_epochs(strategy: str, ctx: TrainContext) -> int:
    """The epochs an epoch-trained strategy asks for, under this device's recipe."""
    from ._recipes import epochs_for, recipe_for

    recipe = recipe_for(ctx)
    return epochs_for(recipe, ctx, "finetune_epochs" if strategy == "finetune" else "epochs") \
        if recipe.resident and strategy in ("partial", "finetune") else \
        (ctx.config.finetune_epochs if strategy == "finetune" else ctx.config.epochs)


class LosingBound:
    """``should_stop`` for an epoch-trained candidate: stop once even an optimistic extension of its validation
    curve cannot reach ``target``, the score it must beat to be chosen (the incumbent's plus one standard error:
    the one-standard-error rule keeps the cheaper strategy otherwise).

    The bound after each epoch (from :data:`MIN_EPOCHS` + 1 on) is the best score so far plus its recent rate of
    improvement (over the last ``window`` epochs, never negative) for every epoch that is left. Why not Optuna's
    pruners: successive halving and Hyperband compare trials at the same rung, and here each candidate meets one
    incumbent scored another way (a cross-validated model's train-only twin), so the rule is this comparison.
    """

    def __init__(self, target: float, epochs: int, window: int = 2):
        self.target, self.epochs, self.window = target, epochs, window

    def __call__(self, epoch: int, hist: "History") -> bool:
        scores = hist.val_score
        done = len(scores)
        if done <= MIN_EPOCHS or max(scores) > self.target:
            return False
        before = max(scores[:-self.window]) if done > self.window else scores[0]
        rate = max(0.0, (max(scores) - before) / self.window)
        left = (hist.fitted_epochs or self.epochs) - done
        return max(scores) + rate * left < self.target - 1e-9


def run_auto(ctx: TrainContext, say, given: frozenset[str] = frozenset()) -> tuple[list[StrategyResult], Plan]:
    """Plan, then run the planned candidates within the budget; returns the results and the plan (with seconds)."""
    from ._strategies import run_strategy

    config = ctx.config
    spent = ctx.checkpoints.spent() if ctx.checkpoints is not None else 0.0  # a resumed run keeps its budget
    t0 = time.perf_counter()
    deadline = t0 + config.budget - spent
    plan = make_plan(ctx, config.budget - spent, given)
    for line in plan.lines():
        say(line)
    results: list[StrategyResult] = []
    for i, cand in enumerate(plan.candidates):
        left = deadline - time.perf_counter()
        if i:  # re-planned on what is really left: earlier candidates may have stopped early, or run long
            was = cand.run
            cand.run, cand.why = _fits(cand, ctx, left, given, first=False)
            if was and not cand.run:
                say(f"auto: skipping {cand.strategy}: {cand.why}")
            elif cand.run and not was:
                say(f"auto: {cand.strategy} fits after all: {cand.why}")
        if not cand.run:
            continue
        say(f"auto: {cand.strategy} ({left:.0f} s of budget left)")
        stop = _losing_bound(results, cand, ctx)
        try:
            with _sigterm_as_interrupt():
                r = run_strategy(cand.strategy, replace(ctx, deadline=deadline, results=results, should_stop=stop))
        except KeyboardInterrupt:
            if not results or _launched():  # nothing to keep yet; under torchrun every rank must stop alike
                raise
            plan.interrupted, cand.outcome = cand.strategy, "interrupted"
            say(f"auto: interrupted during {cand.strategy}: the run keeps the best so far, marked unfinished; "
                f"`--resume` goes on with the plan from the last epoch checkpoint")
            break
        cand.seconds = r.seconds
        pruned = r.history is not None and r.history.pruned
        cand.outcome = scored(r, config.metric) + (
            f"; stopped after {len(r.history.val_score)} epochs: it could no longer reach "
            f"{stop.target:.2%} (the incumbent + one standard error)" if pruned and stop else "")
        say(f"auto: {cand.strategy}: {cand.outcome} in {r.seconds:.0f} s")
        results.append(r)
    return results, plan


def _launched() -> bool:
    from ..distributed import launched

    return launched()


@contextmanager
def _sigterm_as_interrupt():
    """``kill`` (SIGTERM) during a candidate stops it as Ctrl-C does, so the best model so far is kept. Only the
    main thread may set handlers; elsewhere nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _losing_bound(results: Sequence[StrategyResult], cand: Candidate, ctx: TrainContext) -> LosingBound | None:
    """The stop rule for an epoch-trained candidate, against the best so far on the validation split."""
    if cand.epoch_seconds is None or not results or not ctx.splits.val:
        return None
    best = choose_winner(results)
    held = best.holdout() if best.cross_validated else None
    score = held.val_score if held is not None and held.val_score is not None else best.score
    n = len(ctx.splits.val)
    return LosingBound(score + one_se_margin(score, n), _max_epochs(cand.strategy, ctx))
