"""How the strategies that train layers on images (``partial``, ``finetune``) are trained on this device.

- ``cpu`` (today's defaults, what pays on a 2-core CPU): PIL decoding in a worker process every epoch, light
  augmentation, BatchNorm statistics frozen, layer-wise learning rates, the strategy's own epochs (finetune: 3).
- ``gpu`` (benchmarks/finetune_gpu.py's measured recipe, 89.18 % ± 0.40 on ELPV's 5 splits against the probe's
  87.2 %, 22–37 s per split on one H100): every image decoded once into a uint8 tensor on the device, whole
  (no centre crop) at the size the strategy trains at; each step draws one of the views the probe chose (the 8
  flips and turns on ELPV; the mirror on photos) composed with a small random affine and brightness/contrast
  jitter, in one ``grid_sample`` on the device (:mod:`._resident`); BatchNorm statistics trained; AdamW at
  5e-4 (backbone) / 5e-3 (head), weight decay 0.05; an EMA of the weights (decay 0.995) is what is validated
  and kept; bf16 autocast and channels_last (the loop's defaults on CUDA); 30 epochs.

``--recipe auto`` picks ``gpu`` on CUDA and ``cpu`` elsewhere; ``--recipe gpu`` on a CPU runs the same code (slowly:
the tests use it, on tiny images). Settings the user gives explicitly (``--finetune-epochs``, ``--epochs``,
``--bn``) win over the recipe's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._context import TrainContext

__all__ = ["Recipe", "RECIPES", "recipe_for"]


@dataclass(frozen=True)
class Recipe:
    name: str
    resident: bool = False  # images decoded once into a device tensor, augmented there (:mod:`._resident`)
    epochs: int | None = None  # None: the strategy's own setting
    backbone_lr: float | None = None  # None: lr × backbone_lr_mult (× layer_decay per stage for finetune)
    head_lr: float | None = None  # None: lr
    weight_decay: float | None = None
    bn: str | None = None  # None: --bn
    ema_decay: float | None = None  # validate and keep an exponential moving average of the weights
    batch_size: int | None = None


RECIPES = {
    "cpu": Recipe("cpu"),
    "gpu": Recipe("gpu", resident=True, epochs=30, backbone_lr=5e-4, head_lr=5e-3, weight_decay=0.05, bn="train",
                  ema_decay=0.995, batch_size=64),
}


def recipe_for(ctx: "TrainContext") -> Recipe:
    name = ctx.config.recipe
    if name == "auto":
        name = "gpu" if ctx.device is not None and ctx.device.type == "cuda" else "cpu"
    return RECIPES[name]


def epochs_for(recipe: Recipe, ctx: "TrainContext", setting: str) -> int:
    """The epochs a strategy trains for under ``recipe``: the user's ``setting`` when they gave it."""
    if recipe.epochs is None or setting in ctx.given:
        return getattr(ctx.config, setting)
    return recipe.epochs
