"""The four ways to train on the user's images, and ``auto``, which runs them and keeps the best on validation.

- ``probe``: cached pooled features + logistic regression (seconds).
- ``head``: frozen backbone + a new head, trained on cached features.
- ``partial``: layers before a cut stay frozen; the rest trains on cached activations at the cut (or on images
  when augmentation is asked for). Frozen BatchNorm layers keep their statistics.
- ``finetune``: every layer, on augmented images, with discriminative learning rates (layer-wise decay) and
  gradual unfreezing (head first).

Every strategy returns a :class:`HeadstartModel` that classifies images end to end, so they compare on equal terms.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..data import Splits
from ..data._dataset import IMBALANCE_RATIO
from ..errors import HeadstartError
from ..features import ExtractConfig
from ..models import HeadstartModel, create_model
from ..models._heads import parse_head
from ..models._layers import stage_paths
from ._data import cached_activations, image_loader, tensor_loader, train_transform
from ._loop import History, fit

__all__ = ["TrainConfig", "StrategyResult", "STRATEGIES", "run_strategy", "check_applies"]

_logger = logging.getLogger(__name__)
STRATEGIES = ("probe", "head", "partial", "finetune")


@dataclass
class TrainConfig:
    """Everything `headstart train` accepts; saved as the run's resolved configuration."""

    model: str = "lite0"
    strategy: str = "auto"
    weights: str | None = "imagenet"
    input_shape: tuple[int, int, int] | None = None
    head: str = "avg,dropout:0.2"
    unfreeze_from: str | None = None  # layer name; default: the last `unfreeze_stages` stages
    unfreeze_stages: int = 1
    epochs: int = 20  # upper bound for head/partial; early stopping usually ends sooner
    finetune_epochs: int = 3  # ~3.5 min per ELPV epoch on a 2-core CPU; the cosine schedule spans these
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1
    layer_decay: float = 0.7  # finetune: each earlier stage trains at this × the next stage's LR
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    augment: str | None = None  # None: none for cached strategies, "light" for finetune
    bn: str = "frozen"  # finetune/partial on images: "frozen" keeps BatchNorm statistics (small data), or "train"
    patience: int = 5
    balance: str = "auto"  # auto | on | off: class-weighted loss
    val_split: float = 0.15
    test_split: float = 0.15
    seed: int = 0
    budget: float = 840.0  # seconds for `auto`: the ELPV demo fits in 20 minutes on a 2-core CPU
    workers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        return d

    def check(self) -> None:
        """Refuse values and strategy/setting combinations that make no sense, saying what would."""
        if self.strategy not in (*STRATEGIES, "auto"):
            raise HeadstartError(f"strategy must be one of {', '.join(STRATEGIES)} or auto; received "
                                 f"{self.strategy!r}.")
        for name in ("epochs", "finetune_epochs", "batch_size", "patience", "unfreeze_stages"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise HeadstartError(f"{name} must be an integer ≥ 1; received {value!r}.")
        for name in ("lr", "budget"):
            if not getattr(self, name) > 0:
                raise HeadstartError(f"{name} must be > 0; received {getattr(self, name)!r}.")
        for name in ("backbone_lr_mult", "layer_decay", "weight_decay", "label_smoothing"):
            if not 0 <= getattr(self, name) <= (1 if name != "weight_decay" else 10):
                raise HeadstartError(f"{name} must be between 0 and 1; received {getattr(self, name)!r}.")
        for name in ("val_split", "test_split"):
            if not 0 <= getattr(self, name) < 1:
                raise HeadstartError(f"{name} must be a fraction in [0, 1), e.g. 0.15; received "
                                     f"{getattr(self, name)!r}.")
        if self.val_split + self.test_split >= 1:
            raise HeadstartError(f"val_split + test_split must leave images to train on; received "
                                 f"{self.val_split} + {self.test_split}.")
        if self.workers is not None and self.workers < 0:
            raise HeadstartError(f"workers must be ≥ 0 (0: in this process); received {self.workers}.")
        check_applies(self.strategy, {"unfreeze_from"} if self.unfreeze_from else set())


def check_applies(strategy: str, given: set[str]) -> None:
    """Settings the user gave explicitly must be used by ``strategy`` (a flag that silently does nothing is a bug
    in the user's command, and they deserve to hear about it)."""
    for setting in sorted(given):
        applies = _APPLIES.get(setting)
        if applies and strategy != "auto" and strategy not in applies:
            raise HeadstartError(
                f"--{setting.replace('_', '-')} does not apply to strategy {strategy!r} (it is used by "
                f"{', '.join(applies)}). Drop it, or choose --strategy {applies[0]} (or auto).")


# Settings that only some strategies use: giving one to another strategy is a mistake worth reporting.
_APPLIES = {
    "head": ("head", "partial", "finetune"),
    "augment": ("head", "partial", "finetune"),
    "unfreeze_from": ("partial",),
    "unfreeze_stages": ("partial",),
    "finetune_epochs": ("finetune",),
    "epochs": ("head", "partial", "finetune"),
    "lr": ("head", "partial", "finetune"),
    "backbone_lr_mult": ("partial", "finetune"),
    "layer_decay": ("finetune",),
    "bn": ("head", "partial", "finetune"),
    "patience": ("head", "partial", "finetune"),
    "budget": ("auto",),
}


@dataclass
class StrategyResult:
    name: str
    model: HeadstartModel
    val_acc: float
    seconds: float
    history: History | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _base(config: TrainConfig, classes: list[str], head: str) -> HeadstartModel:
    torch.manual_seed(config.seed)
    model = create_model(config.model, weights=config.weights, include_top=False, input_shape=config.input_shape,
                         head=head, classes=len(classes))
    model.class_names = list(classes)
    return model


def _class_weights(splits: Splits, config: TrainConfig) -> torch.Tensor | None:
    on = config.balance == "on" or (config.balance == "auto" and splits.imbalance() > IMBALANCE_RATIO)
    if not on:
        return None
    y = torch.tensor(splits.y("train"))
    counts = torch.bincount(y, minlength=len(splits.classes)).float().clamp(min=1)
    return counts.sum() / (len(counts) * counts)


def _extract_cfg(config: TrainConfig, **kw) -> ExtractConfig:
    return ExtractConfig(model=config.model, weights=config.weights, input_shape=config.input_shape,
                         workers=config.workers, **kw)


# -- probe ---------------------------------------------------------------------------------------------------

def train_probe(splits: Splits, config: TrainConfig, progress: bool, deadline: float | None = None
                ) -> StrategyResult:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    ecfg = _extract_cfg(config, pooling="avg")
    xtr, ytr, _ = cached_activations(splits.train, splits.classes, ecfg, progress=progress)
    xva, yva, _ = cached_activations(splits.val, splits.classes, ecfg, progress=progress)
    scaler = StandardScaler().fit(xtr.numpy())
    a, b = scaler.transform(xtr.numpy()), scaler.transform(xva.numpy())
    weighted = _class_weights(splits, config) is not None
    best = None
    for c in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0):  # regularization chosen on the validation split
        clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced" if weighted else None).fit(a, ytr.numpy())
        acc = float((clf.predict(b) == yva.numpy()).mean())
        if best is None or acc > best[0]:
            best = (acc, c, clf)
    acc, c, clf = best
    model = _base(config, splits.classes, "avg")
    _load_linear(model, clf, scaler, len(splits.classes))
    return StrategyResult("probe", model, acc, time.perf_counter() - t0, details={"C": c})


def _load_linear(model: HeadstartModel, clf, scaler, n_classes: int) -> None:
    """Fold the scaler into the logistic regression and write it into the model's final Dense layer."""
    w = clf.coef_ / scaler.scale_
    b = clf.intercept_ - (clf.coef_ * scaler.mean_ / scaler.scale_).sum(1)
    if n_classes == 2 and w.shape[0] == 1:  # binary LR: logit of class 1; class 0 gets 0 → same softmax
        w, b = np.concatenate([np.zeros_like(w), w]), np.concatenate([[0.0], b])
    linear = model.head.predictions.linear
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(w).float())
        linear.bias.copy_(torch.from_numpy(b).float())


# -- head ----------------------------------------------------------------------------------------------------

def train_head(splits: Splits, config: TrainConfig, progress: bool, deadline: float | None = None
               ) -> StrategyResult:
    t0 = time.perf_counter()
    if config.augment not in (None, "none"):
        return _train_on_images(splits, config, progress, "head", cut=None, deadline=deadline)
    first = parse_head(config.head)[:1]
    pooling = first[0][0] if first and first[0][0] in ("avg", "max") else "none"
    ecfg = _extract_cfg(config, pooling=pooling)
    model = _base(config, splits.classes, config.head)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    loaders = _cached_loaders(splits, config, ecfg, progress)
    hist = fit(model.head, *loaders, [{"params": model.head.parameters(), "lr": config.lr}],
               **_fit_kw(splits, config, progress, "head", deadline=deadline))
    return StrategyResult("head", model, hist.best_val_acc, time.perf_counter() - t0, hist)


def _cached_loaders(splits: Splits, config: TrainConfig, ecfg: ExtractConfig, progress: bool):
    xtr, ytr, _ = cached_activations(splits.train, splits.classes, ecfg, progress=progress)
    xva, yva, _ = cached_activations(splits.val, splits.classes, ecfg, progress=progress)
    return (tensor_loader(xtr, ytr, config.batch_size, train=True, seed=config.seed),
            tensor_loader(xva, yva, 256, train=False))


def _fit_kw(splits: Splits, config: TrainConfig, progress: bool, desc: str, epochs: int | None = None,
            deadline: float | None = None, on_epoch: Callable | None = None) -> dict[str, Any]:
    return dict(epochs=epochs or config.epochs, weight_decay=config.weight_decay,
                warmup_epochs=0.25 if desc == "finetune" else 1.0,  # finetune starts from a trained head
                label_smoothing=config.label_smoothing, class_weights=_class_weights(splits, config),
                patience=config.patience, progress=progress, desc=desc, deadline=deadline, on_epoch=on_epoch)


# -- partial -------------------------------------------------------------------------------------------------

def cut_point(model: HeadstartModel, config: TrainConfig) -> tuple[str, str]:
    """(layer name to capture, module path of the cut): everything from the cut on trains."""
    if config.unfreeze_from:
        layer = model.resolve_layer(config.unfreeze_from)
        return config.unfreeze_from, (layer.param_modules[0] if layer.param_modules else layer.output_module)
    stages = stage_paths(model)
    k = max(1, min(config.unfreeze_stages, len(stages)))
    return stages[-k].removeprefix("backbone."), stages[-k]


def freeze_before(model: HeadstartModel, cut: str) -> None:
    """requires_grad=False for every parameter registered before module ``cut`` (forward order in timm)."""
    trainable = False
    for name, p in model.named_parameters():
        if name.startswith(cut + ".") or name.startswith("head."):
            trainable = True
        p.requires_grad_(trainable)
    if not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(cut + ".")):
        raise HeadstartError(f"Cannot unfreeze from {cut!r}: no parameters found there. Pick a layer with weights "
                             f"(`headstart summary {model.config.name}`).")


class FromCut(nn.Module):
    """Runs the model from cached activations at ``cut``: a tiny dummy image passes through the frozen prefix
    and the cut module's input is replaced by the cached batch (valid for cuts between sequential stages)."""

    def __init__(self, model: HeadstartModel, cut: str):
        super().__init__()
        self.model, self.cut = model, cut
        self.register_buffer("dummy", torch.zeros(1, 3, model.spec.min_size, model.spec.min_size), persistent=False)

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        handle = self.model.get_submodule(self.cut).register_forward_pre_hook(lambda m, args: (acts,))
        try:
            return self.model(self.dummy)
        finally:
            handle.remove()


def train_partial(splits: Splits, config: TrainConfig, progress: bool, deadline: float | None = None
                  ) -> StrategyResult:
    t0 = time.perf_counter()
    if config.augment not in (None, "none"):
        return _train_on_images(splits, config, progress, "partial", cut=True, deadline=deadline)
    model = _base(config, splits.classes, config.head)
    layer_name, cut = cut_point(model, config)
    freeze_before(model, cut)
    ecfg = _extract_cfg(config, layer=layer_name, capture="input", pooling="none", dtype="float16")
    module = FromCut(model, cut)
    loaders = _cached_loaders(splits, config, ecfg, progress)
    groups = [{"params": [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")],
               "lr": config.lr * config.backbone_lr_mult},
              {"params": model.head.parameters(), "lr": config.lr}]
    hist = fit(module, *loaders, groups, **_fit_kw(splits, config, progress, "partial", deadline=deadline))
    return StrategyResult("partial", model, hist.best_val_acc, time.perf_counter() - t0, hist,
                          {"unfreeze_from": layer_name})


# -- finetune (and image-based head/partial) -----------------------------------------------------------------

def layerwise_groups(model: HeadstartModel, config: TrainConfig) -> list[dict]:
    """Head at ``lr``; the last stage at ``lr × backbone_lr_mult``; each earlier stage ``× layer_decay`` more.

    The stem (before the first stage) goes with the first stage, layers after the last stage (e.g. conv_head)
    with the last; parameters are registered in forward order in timm models.
    """
    stages = stage_paths(model)
    buckets: list[list[nn.Parameter]] = [[] for _ in stages]
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


def train_finetune(splits: Splits, config: TrainConfig, progress: bool, deadline: float | None = None,
                   head_from: StrategyResult | None = None) -> StrategyResult:
    """Gradual unfreezing: the head is trained first on cached features (or taken from ``head_from``, the
    ``head`` strategy's result in ``auto``), then every layer trains on augmented images."""
    t0 = time.perf_counter()
    if head_from is None or head_from.model.config.head != config.head:
        head_from = train_head(splits, replace(config, augment=None), progress, deadline)
    r = _train_on_images(splits, config, progress, "finetune", cut=None, deadline=deadline,
                         head_state=head_from.model.head.state_dict())
    r.seconds = time.perf_counter() - t0
    r.details["head_first"] = f"{head_from.val_acc:.4f} val after the head stage"
    return r


def _train_on_images(splits: Splits, config: TrainConfig, progress: bool, name: str, cut,
                     deadline: float | None = None, head_state: dict | None = None) -> StrategyResult:
    t0 = time.perf_counter()
    model = _base(config, splits.classes, config.head)
    if head_state is not None:
        model.head.load_state_dict(head_state)
    # Small datasets (and ones unlike ImageNet, e.g. grayscale) shift batch statistics; Keras' advice for
    # fine-tuning is to keep BatchNorm in inference mode. The BN weights still train.
    model.freeze_bn_stats = config.bn == "frozen"
    augment = config.augment or "light"
    tr = image_loader(splits.train, splits.classes, train_transform(model.preprocessing, augment), config.batch_size,
                      train=True, seed=config.seed, workers=1)
    va = image_loader(splits.val, splits.classes, model.preprocessing.transform(), 64, train=False, workers=1)
    on_epoch = None
    if name == "head":
        for p in model.backbone.parameters():
            p.requires_grad_(False)
        groups = [{"params": model.head.parameters(), "lr": config.lr}]
    elif name == "partial":
        freeze_before(model, cut_point(model, config)[1])
        groups = layerwise_groups(model, config)
    else:
        groups = layerwise_groups(model, config)
        on_epoch = None if head_state is not None else _gradual_unfreezing(model)
    epochs = config.finetune_epochs if name == "finetune" else config.epochs
    hist = fit(model, tr, va, groups, **_fit_kw(splits, config, progress, name, epochs=epochs, deadline=deadline, on_epoch=on_epoch))
    for p in model.parameters():
        p.requires_grad_(True)
    return StrategyResult(name, model, hist.best_val_acc, time.perf_counter() - t0, hist, {"augment": augment})


def _gradual_unfreezing(model: HeadstartModel) -> Callable[[int], None]:
    """Epoch 0 trains the head alone (a random head's large gradients would wreck pretrained features);
    from epoch 1 every layer trains."""

    def on_epoch(epoch: int) -> None:
        for name, p in model.named_parameters():
            p.requires_grad_(epoch > 0 or name.startswith("head."))

    return on_epoch


_RUNNERS = {"probe": train_probe, "head": train_head, "partial": train_partial, "finetune": train_finetune}


def run_strategy(name: str, splits: Splits, config: TrainConfig, progress: bool, **kw) -> StrategyResult:
    if name not in _RUNNERS:
        raise HeadstartError(f"Unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)} or auto.")
    return _RUNNERS[name](splits, replace(config, strategy=name), progress, **kw)
