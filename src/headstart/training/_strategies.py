"""The four ways to train on the user's images, as data: one :class:`Strategy` record each.

- ``probe``: cached pooled features + logistic regression (seconds).
- ``head``: frozen backbone + a new head, trained on cached features (on images with ``--augment``).
- ``partial``: layers before a cut stay frozen; the rest trains on cached activations at the cut (on images with
  ``--augment``), at the images' own size when larger than the weights' (:func:`_native`). Frozen BatchNorm layers
  keep their statistics.
- ``finetune``: every layer, on augmented images, with discriminative learning rates (layer-wise decay) after the
  head has been trained first (gradual unfreezing).

A record (:class:`._context.Strategy`) says what trains, on what, its warm-up and its parameter groups; which
settings each uses is :mod:`._config`'s (``STRATEGY_SETTINGS``); ``auto``, the
CLI's help, the setting checks and the training loop all read the records instead of testing names. Every
strategy returns a :class:`HeadstartModel` that classifies images end to end, so they compare on equal terms.

Importing this module is cheap (the command line reads the records): torch and the training code are imported
inside the functions that run.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import HeadstartError
from ._config import AUTO, AUTO_SETTINGS, STRATEGY_SETTINGS, TrainConfig, check_applies  # noqa: F401 (re-exported)
from ._context import Strategy, StrategyResult, TrainContext

if TYPE_CHECKING:
    from ..models import HeadstartModel

__all__ = ["Strategy", "StrategyResult", "TrainContext", "STRATEGIES", "AUTO", "AUTO_SETTINGS", "check_applies",
           "run_strategy", "cut_point", "freeze_before", "layerwise_groups"]

def run_strategy(name: str, ctx: TrainContext) -> StrategyResult:
    if name not in STRATEGIES:
        raise HeadstartError(f"Unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)} or auto.")
    strategy = STRATEGIES[name]
    t0 = time.perf_counter()
    result = strategy.run(strategy, replace(ctx, config=replace(ctx.config, strategy=name)))
    result.seconds = time.perf_counter() - t0
    result.n_scored = result.n_scored or len(ctx.splits.val)
    return result


# -- shared pieces --------------------------------------------------------------------------------------------

def _base(config: TrainConfig, classes: list[str], head: str) -> "HeadstartModel":
    import torch

    from ..models import create_model

    torch.manual_seed(config.seed)
    model = create_model(config.model, weights=config.weights, include_top=False, input_shape=config.input_shape,
                         head=head, classes=len(classes))
    model.class_names = list(classes)
    return model


def _extract_cfg(ctx: TrainContext, **kw):
    from ..features import ExtractConfig

    c = ctx.config
    return ExtractConfig(model=c.model, weights=c.weights, input_shape=c.input_shape, workers=c.workers,
                         device=str(ctx.device), **kw)


def _cached_tensors(ctx: TrainContext, ecfg):
    """(x_train, y_train, x_val, y_val): the cached activations of both splits."""
    from ._data import cached_activations

    s = ctx.splits
    xtr, ytr, _ = cached_activations(s.train, s.classes, ecfg, progress=ctx.progress)
    xva, yva, _ = cached_activations(s.val, s.classes, ecfg, progress=ctx.progress)
    return xtr, ytr, xva, yva


def _cached_loaders(ctx: TrainContext, ecfg=None, tensors=None):
    """Train and val loaders over ``tensors`` (read from the cache with ``ecfg`` when not given)."""
    from ._data import tensor_loader

    xtr, ytr, xva, yva = tensors if tensors is not None else _cached_tensors(ctx, ecfg)
    return (tensor_loader(xtr, ytr, ctx.config.batch_size, train=True, seed=ctx.config.seed),
            tensor_loader(xva, yva, 256, train=False))


def _native(ctx: TrainContext) -> TrainContext:
    """``ctx`` at the input size ``partial`` trains at: ``--input-shape`` when given, else the training images' own
    size when it is larger than the weights' (:func:`._data.native_side`: ELPV's 300-px cells at 300, not 224).

    Measured on ELPV's five splits against 224 px, on the same validation images (benchmarks/RESULTS.md): partial
    +2.0 ± 2.2 points (4 splits of 5 better) for 30–100 s more. Not the others: the probe's 300-px features scored
    no better (issue 11), and finetune's three epochs scored −1.0 ± 2.3 points at 1.7× the time (a likely
    cause, not measured: every layer it trains keeps BatchNorm statistics frozen at what 224-px images gave)."""
    from ..models import default_input_size
    from ._data import native_side

    c = ctx.config
    if c.input_shape is not None:
        return ctx
    side = native_side(ctx.splits.train, default_input_size(c.model, c.weights))
    return ctx if side is None else replace(ctx, config=replace(c, input_shape=(side, side, 3)))


def _on_images(config: TrainConfig) -> bool:
    return config.augment not in (None, "none")


def _result(strategy: Strategy, model, hist, **details) -> StrategyResult:
    return StrategyResult(strategy.name, model, hist.best_val_acc, 0.0, hist, details,
                          val_score=hist.best_val_score)


# -- parameter groups (each freezes what does not train and returns AdamW groups) -------------------------------

def head_groups(model: "HeadstartModel", config: TrainConfig) -> list[dict]:
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    return [{"params": list(model.head.parameters()), "lr": config.lr}]


def partial_groups(model: "HeadstartModel", config: TrainConfig) -> list[dict]:
    freeze_before(model, cut_point(model, config)[1])
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    return [{"params": backbone, "lr": config.lr * config.backbone_lr_mult},
            {"params": list(model.head.parameters()), "lr": config.lr}]


def layerwise_groups(model: "HeadstartModel", config: TrainConfig) -> list[dict]:
    """AdamW groups: the head at ``lr``; the last stage at ``lr × backbone_lr_mult``, each earlier stage
    ``× layer_decay`` more.

    The stem (before the first stage) goes with the first stage, layers after the last stage (e.g. conv_head)
    with the last; parameters are registered in forward order in timm models.
    """
    from ..models import stage_paths

    for p in model.parameters():
        p.requires_grad_(True)
    stages = stage_paths(model)
    buckets: list[list] = [[] for _ in stages]
    head, current = [], 0
    for name, p in model.named_parameters():
        if name.startswith("head."):
            head.append(p)
            continue
        for i, stage in enumerate(stages):
            if name.startswith(stage + "."):
                current = i
        buckets[current].append(p)
    base = config.lr * config.backbone_lr_mult
    groups = [{"params": head, "lr": config.lr}]
    groups += [{"params": ps, "lr": base * config.layer_decay ** (len(stages) - 1 - i)}
               for i, ps in enumerate(buckets) if ps]
    return groups


def cut_point(model: "HeadstartModel", config: TrainConfig) -> tuple[str, str]:
    """(layer name to capture, module path of the cut): everything from the cut on trains."""
    from ..models import stage_paths

    if config.unfreeze_from:
        layer = model.resolve_layer(config.unfreeze_from)
        return config.unfreeze_from, (layer.param_modules[0] if layer.param_modules else layer.output_module)
    stages = stage_paths(model)
    k = max(1, min(config.unfreeze_stages, len(stages)))
    return stages[-k].removeprefix("backbone."), stages[-k]


def freeze_before(model: "HeadstartModel", cut: str) -> None:
    """requires_grad=False for every parameter registered before module ``cut`` (forward order in timm)."""
    trainable = False
    for name, p in model.named_parameters():
        if name.startswith(cut + ".") or name.startswith("head."):
            trainable = True
        p.requires_grad_(trainable)
    if not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(cut + ".")):
        raise HeadstartError(f"Cannot unfreeze from {cut!r}: no parameters found there. Pick a layer with weights "
                             f"(`headstart summary {model.config.name}`).")


# -- how each strategy runs -----------------------------------------------------------------------------------

def _run_probe(strategy: Strategy, ctx: TrainContext) -> StrategyResult:
    from ._probe import fit_probe

    return fit_probe(strategy.name, lambda head: _base(ctx.config, ctx.splits.classes, head), ctx,
                     _extract_cfg(ctx, pooling="avg"))


def _run_head(strategy: Strategy, ctx: TrainContext) -> StrategyResult:
    """On cached features: cross-validated (:func:`._cv.fit_head_cv`) when ``--cv-folds`` allows, else fitted on
    train and scored on val. On images (``--augment``): scored on val."""
    if _on_images(ctx.config):
        return _run_on_images(strategy, ctx)
    from ..models import parse_head
    from ._cv import fit_head_cv
    from ._loop import fit

    config = ctx.config
    first = parse_head(config.head)[:1]
    pooling = first[0][0] if first and first[0][0] in ("avg", "max") else "none"
    ecfg = _extract_cfg(ctx, pooling=pooling)
    build = lambda: _base(config, ctx.splits.classes, config.head)  # noqa: E731
    tensors = _cached_tensors(ctx, ecfg)
    cv = fit_head_cv(strategy, ctx, build, *tensors)
    if cv is not None:
        return cv
    model = build()
    hist = fit(model.head, *_cached_loaders(ctx, tensors=tensors), strategy.param_groups(model, config),
               **ctx.fit_kw(strategy))
    return _result(strategy, model, hist)


def _run_partial(strategy: Strategy, ctx: TrainContext) -> StrategyResult:
    ctx = _native(ctx)
    if _on_images(ctx.config):
        return _run_on_images(strategy, ctx)
    from ..models import FromCut
    from ._loop import fit

    config = ctx.config
    model = _base(config, ctx.splits.classes, _start_head(ctx))
    start = _best_linear_head(ctx, model)
    if start is not None:  # linear probe, then fine-tune: the new layers start under a head that already fits
        model.head.load_state_dict(start.start_state())
    layer_name, cut = cut_point(model, config)
    groups = strategy.param_groups(model, config)
    ecfg = _extract_cfg(ctx, layer=layer_name, capture="input", pooling="none", dtype="float16")
    hist = fit(FromCut(model, cut), *_cached_loaders(ctx, ecfg), groups, **ctx.fit_kw(strategy))
    return _result(strategy, model, hist, unfreeze_from=layer_name, input_size=list(model.config.input_shape[:2]),
                   **({"head_start": start.name} if start is not None else {}))


def _run_finetune(strategy: Strategy, ctx: TrainContext) -> StrategyResult:
    """Gradual unfreezing: the head is trained first on cached features (or taken from the ``head`` strategy's
    result when ``auto`` already ran it with the same head), then every layer trains on augmented images."""
    spec = _start_head(ctx)
    head = _best_linear_head(ctx, _base(ctx.config, ctx.splits.classes, spec))
    if head is None:
        spec = ctx.config.head
        # its head stage: fitted on train, early-stopped on val (folds would only be refitted away)
        head = run_strategy("head", replace(ctx, config=replace(ctx.config, augment=None, cv_folds=0),
                                            should_stop=None))
    r = _run_on_images(strategy, ctx, head_state=head.start_state(), head=spec)
    held = head.held if head.held is not None and head.held.val_acc is not None else None
    r.details["head_first"] = (f"{head.name} (fitted on train only): {held.val_acc:.4f} val" if held else
                               f"{head.name}: {head.val_acc:.4f} val")
    return r


def _best_linear(ctx: TrainContext, model=None) -> StrategyResult | None:
    """The best linear head so far (``auto``: probe or head) by the choice metric; with ``model``, among those
    whose head fits its head."""
    fits = (r for r in ctx.results if r.name in ("probe", "head")
            and (model is None or _layout(r.model) == _layout(model)))
    return max(fits, key=lambda r: r.score, default=None)


def _best_linear_head(ctx: TrainContext, model) -> StrategyResult | None:
    """The best earlier result (``auto``: probe or head) whose head fits ``model``'s, to start from, or None.

    The probe's head is a logistic regression chosen by cross-validation, usually the best linear head there is;
    starting the deeper strategies under it (linear probe, then fine-tune) spares them a random head's first
    epochs, whose large gradients disturb the pretrained layers.
    """
    return _best_linear(ctx, model)


def _layout(model) -> tuple:
    """What a head computes: its layers (dropout aside: the identity at prediction) and their weights' shapes. A
    `sqrt` layer has no weights but changes the function, so shapes alone would match the wrong head."""
    from torch import nn

    return ([type(m).__name__ for m in model.head if not isinstance(m, nn.Dropout)],
            {k: v.shape for k, v in model.head.state_dict().items()})


def _start_head(ctx: TrainContext) -> str:
    """``--head``, with a ``sqrt`` layer after its pooling when the best linear head so far (``auto``'s probe)
    power-normalizes: the deeper strategies then start under that head, as they do when it does not."""
    from ..models import SignedSqrt, parse_head

    spec = ctx.config.head
    best = _best_linear(ctx)
    tokens = [kind for kind, _ in parse_head(spec)]
    if (best is None or "sqrt" in tokens or not tokens or tokens[0] not in ("avg", "max")
            or not any(isinstance(m, SignedSqrt) for m in best.model.head)):
        return spec
    first, _, rest = spec.partition(",")
    return ",".join(t for t in (first, "sqrt", rest) if t)


def _run_on_images(strategy: Strategy, ctx: TrainContext, head_state: dict | None = None,
                   head: str | None = None) -> StrategyResult:
    from ._data import image_loader
    from ._loop import fit, gradual_unfreezing

    config, splits = ctx.config, ctx.splits
    model = _base(config, splits.classes, head or config.head)
    if head_state is not None:
        model.head.load_state_dict(head_state)
    # Small datasets (and ones unlike ImageNet, e.g. grayscale) shift batch statistics; Keras' advice for
    # fine-tuning is to keep BatchNorm in inference mode. The BN weights still train.
    model.freeze_bn_stats = config.bn == "frozen"
    augment = config.augment or "light"
    tr = image_loader(splits.train, splits.classes, model.preprocessing.train_transform(augment), config.batch_size,
                      train=True, seed=config.seed, workers=1)
    va = image_loader(splits.val, splits.classes, model.preprocessing.transform(), 64, train=False, workers=1)
    groups = strategy.param_groups(model, config)
    on_epoch = gradual_unfreezing(model) if strategy.head_first and head_state is None else None
    hist = fit(model, tr, va, groups, **ctx.fit_kw(strategy, on_epoch=on_epoch))
    for p in model.parameters():
        p.requires_grad_(True)
    return _result(strategy, model, hist, augment=augment, input_size=list(model.config.input_shape[:2]))


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("probe", "logistic regression on pooled features of every view (C, views, power norm chosen by "
             "k-fold cross-validation)", "cached features", settings=STRATEGY_SETTINGS["probe"],
             run=_run_probe),
    Strategy("head", "a new head (--head) on a frozen backbone (k-fold cross-validated on cached features)",
             "cached features; images with --augment",
             settings=STRATEGY_SETTINGS["head"], run=_run_head, epochs_setting="epochs",
             param_groups=head_groups),
    Strategy("partial", "the last K stages (--unfreeze-stages) or everything from --unfreeze-from LAYER",
             "cached activations at the cut, at the images' own size when larger; images with --augment",
             settings=STRATEGY_SETTINGS["partial"], run=_run_partial, epochs_setting="epochs", param_groups=partial_groups),
    Strategy("finetune", "every layer, layer-wise learning rates, head first then all (gradual unfreezing)",
             "augmented images",
             settings=STRATEGY_SETTINGS["finetune"], run=_run_finetune, epochs_setting="finetune_epochs", warmup_epochs=0.25,  # the head arrives trained
             param_groups=layerwise_groups, head_first=True),
)}
