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
    from ._recipes import recipe_for

    if recipe_for(ctx).resident:  # the gpu recipe trains from the cut on images, under the best linear head
        spec = _start_head(ctx)
        start = _best_linear_head(ctx, _base(ctx.config, ctx.splits.classes, spec))
        return _with_test_views(_run_on_images(strategy, ctx, head_state=start.start_state() if start else None,
                                               head=spec), ctx)
    if _on_images(ctx.config):
        return _with_test_views(_run_on_images(strategy, ctx), ctx)
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
    return _with_test_views(_result(strategy, model, hist, unfreeze_from=layer_name,
                                    input_size=list(model.config.input_shape[:2]),
                                    **({"head_start": start.name} if start is not None else {})), ctx)


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
    r = _with_test_views(_run_on_images(strategy, ctx, head_state=head.start_state(), head=spec), ctx)
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


def _with_test_views(result: StrategyResult, ctx: TrainContext) -> StrategyResult:
    """The views ``result``'s model predicts with: among those the best linear head so far chose by
    cross-validation (``auto``'s probe: dihedral on ELPV, none on digits), the fewest whose lead on the validation
    split is more than one paired standard error. Nothing to choose (no views chosen earlier, no validation
    split, or no time for the extra passes): one view, as before.

    Measured on ELPV (benchmarks/RESULTS.md): a 30-epoch fine-tune gained +0.61 from 8-view averaging (88.57 →
    89.18 %); averaging views the model never trained on can also lose (the probe's 9 points), hence the check.
    """
    import numpy as np

    best = _best_linear(ctx)
    widest = getattr(best.model, "views", "none") if best is not None else "none"
    if widest == "none" or not ctx.splits.val:
        return result
    if result.history is not None and result.history.pruned:  # auto stopped it: it cannot win; spare the passes
        result.details["views"] = "none (stopped: it could no longer win)"
        return result
    per_view, y = _view_probabilities(result.model, ctx, widest)
    if per_view is None:
        result.details["views"] = f"none (no time left to score {widest} on val)"
        return result
    from ..views import VIEW_SETS, view_index
    from ._loop import score

    k = per_view.shape[2]
    preds = {v: per_view[view_index(v, widest)].mean(0).argmax(1) for v in VIEW_SETS
             if set(VIEW_SETS[v]) <= set(VIEW_SETS[widest])}
    scores = {v: score(y, p, ctx.config.metric, k) for v, p in preds.items()}
    chosen = "none"
    for v in sorted(preds, key=lambda v: len(VIEW_SETS[v]))[1:]:  # a larger set must lead by a paired SE
        differ = int((preds[v] != preds[chosen]).sum())
        if scores[v] - scores[chosen] > np.sqrt(differ) / len(y) + 1e-9:
            chosen = v
    result.model.views = chosen
    result.details["views"] = chosen
    result.details["val_by_views"] = {v: round(s_, 4) for v, s_ in scores.items()}
    if chosen != "none":
        result.val_score = scores[chosen]
        result.val_acc = float((preds[chosen] == y).mean())
    return result


def _view_probabilities(model, ctx: TrainContext, views: str):
    """(V × N × K class probabilities of the validation images under each view of ``views``, labels), or
    (None, None) when the passes would not end before the deadline (measured on the first batch)."""
    import time

    import numpy as np
    import torch

    from ..views import apply_views, view_ops
    from ._data import image_loader

    device = next(model.parameters()).device
    loader = image_loader(ctx.splits.val, ctx.splits.classes, model.preprocessing.transform(), 32, train=False,
                          workers=1)
    n_views, out, ys, t0 = len(view_ops(views)), [], [], time.perf_counter()
    model.eval()
    with torch.no_grad():
        for i, (x, y) in enumerate(loader):
            xv = torch.from_numpy(apply_views(x.numpy(), views)).to(device)
            p = torch.softmax(model(xv).float(), 1).cpu().numpy()
            out.append(p.reshape(n_views, len(y), -1))
            ys.append(y.numpy())
            if i == 0 and ctx.deadline is not None:
                need = (time.perf_counter() - t0) * len(loader)
                if time.perf_counter() + need > ctx.deadline:
                    return None, None
    return np.concatenate(out, 1), np.concatenate(ys)


def _run_on_images(strategy: Strategy, ctx: TrainContext, head_state: dict | None = None,
                   head: str | None = None) -> StrategyResult:
    """Train ``strategy``'s layers on images, by the device's recipe (:mod:`._recipes`)."""
    from ._loop import fit, gradual_unfreezing
    from ._recipes import recipe_for

    config, splits = ctx.config, ctx.splits
    recipe = recipe_for(ctx)
    model = _base(config, splits.classes, head or config.head)
    if head_state is not None:
        model.head.load_state_dict(head_state)
    # Small datasets (and ones unlike ImageNet, e.g. grayscale) shift batch statistics; Keras' advice for
    # fine-tuning is to keep BatchNorm in inference mode (the BN weights still train). The gpu recipe, which
    # trains 30 epochs on augmented views, measured better with the statistics trained.
    bn = config.bn if recipe.bn is None or "bn" in ctx.given else recipe.bn
    model.freeze_bn_stats = bn == "frozen"
    tr, va, details = _resident_loaders(model, ctx, recipe) if recipe.resident else _pil_loaders(model, ctx)
    groups = strategy.param_groups(model, _recipe_config(config, recipe, ctx.given))
    on_epoch = gradual_unfreezing(model) if strategy.head_first and head_state is None else None
    kw = ctx.fit_kw(strategy, on_epoch=on_epoch)
    if recipe.resident:
        from ._recipes import epochs_for

        kw.update(epochs=epochs_for(recipe, ctx, strategy.epochs_setting), ema_decay=recipe.ema_decay)
        if recipe.weight_decay is not None and "weight_decay" not in ctx.given:
            kw["weight_decay"] = recipe.weight_decay
    hist = fit(model, tr, va, groups, **kw)
    for p in model.parameters():
        p.requires_grad_(True)
    return _result(strategy, model, hist, recipe=recipe.name, bn=bn, **details,
                   input_size=list(model.config.input_shape[:2]))


def _pil_loaders(model, ctx: TrainContext):
    """The cpu recipe: PIL decoding and augmentation in one worker process, every epoch."""
    from ._data import image_loader

    config, splits = ctx.config, ctx.splits
    augment = config.augment or "light"
    tr = image_loader(splits.train, splits.classes, model.preprocessing.train_transform(augment), config.batch_size,
                      train=True, seed=config.seed, workers=1)
    va = image_loader(splits.val, splits.classes, model.preprocessing.transform(), 64, train=False, workers=1)
    return tr, va, {"augment": augment}


def _resident_loaders(model, ctx: TrainContext, recipe):
    """The gpu recipe: every image decoded once, whole, onto the device; augmented there with the views the best
    linear head so far chose (the probe's cross-validation: dihedral on ELPV, the mirror on photos)."""
    from ._resident import ResidentImages, ResidentLoader

    config, splits = ctx.config, ctx.splits
    # whole images at training and at prediction: the run's preprocessing is saved with crop_pct 1
    model.preprocessing = replace(model.preprocessing, crop_pct=1.0)
    best = _best_linear(ctx)
    views = getattr(best.model, "views", "none") if best is not None else "hflip"  # alone: only the mirror
    train_images = ResidentImages.decode(splits.train, splits.classes, model.preprocessing, ctx.device,
                                         config.workers)
    val_images = ResidentImages.decode(splits.val, splits.classes, model.preprocessing, ctx.device, config.workers)
    batch = config.batch_size if recipe.batch_size is None or "batch_size" in ctx.given else recipe.batch_size
    tr = ResidentLoader(train_images, batch, train=True, seed=config.seed, views=views)
    va = ResidentLoader(val_images, 128, train=False)
    return tr, va, {"augment": f"on the device: {views} views, affine, jitter"}


def _recipe_config(config: TrainConfig, recipe, given) -> TrainConfig:
    """``config`` with the recipe's learning rates (flat: every backbone layer at ``backbone_lr``), unless the
    user gave theirs."""
    if recipe.head_lr is None or {"lr", "backbone_lr_mult", "layer_decay"} & set(given):
        return config
    return replace(config, lr=recipe.head_lr, backbone_lr_mult=recipe.backbone_lr / recipe.head_lr, layer_decay=1.0)


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
             settings=STRATEGY_SETTINGS["partial"], run=_run_partial, epochs_setting="epochs",
             param_groups=partial_groups),
    Strategy("finetune", "every layer, layer-wise learning rates, head first then all (gradual unfreezing)",
             "augmented images",
             settings=STRATEGY_SETTINGS["finetune"], run=_run_finetune, epochs_setting="finetune_epochs",
             warmup_epochs=0.25,  # the head arrives trained
             param_groups=layerwise_groups, head_first=True),
)}
