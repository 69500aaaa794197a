"""``TrainConfig``: everything `headstart train` accepts; saved as the run's resolved configuration.

Declared with :func:`headstart.config.setting`: each field's help, choices and range are written once, the
``train`` command's flags are generated from them, and :meth:`TrainConfig.check` is the one validation, whoever
the caller. The strategy names, cheapest first, and which settings each uses live here too (``STRATEGY_SETTINGS``;
the records in :mod:`._strategies` read them), so this module imports no other training module and nothing heavy.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..config import check_settings, parse_shape, parse_weights, setting
from ..errors import HeadstartError
from ..views import VIEWS_CHOICES
__all__ = ["TrainConfig", "STRATEGY_CHOICES", "STRATEGY_NAMES", "STRATEGY_SETTINGS", "METRICS", "AUTO",
           "AUTO_SETTINGS", "check_applies"]

AUTO = "auto"
AUTO_SETTINGS = ("budget",)  # settings only `auto` uses
# Settings of the epoch loop (finetune uses `epochs` for its head stage).
_LOOP = ("epochs", "lr", "patience", "batch_size", "weight_decay", "label_smoothing")
# The strategies, cheapest first (the one-standard-error rule prefers the earlier), and the settings each uses:
# giving a setting that the chosen strategy does not use is refused (:func:`check_applies`).
STRATEGY_SETTINGS: dict[str, tuple[str, ...]] = {
    "probe": ("views", "power_norm", "cv_folds"),
    "head": ("head", "augment", "bn", "cv_folds", *_LOOP),
    "partial": ("head", "augment", "bn", "unfreeze_from", "unfreeze_stages", "backbone_lr_mult", "recipe", *_LOOP),
    "finetune": ("head", "augment", "bn", "finetune_epochs", "backbone_lr_mult", "layer_decay", "recipe", *_LOOP),
}
STRATEGY_NAMES = tuple(STRATEGY_SETTINGS)
STRATEGY_CHOICES = (*STRATEGY_NAMES, AUTO)
METRICS = ("accuracy", "balanced_accuracy")


@dataclass
class TrainConfig:
    """Everything `headstart train` accepts; saved as the run's resolved configuration."""

    model: str = setting("lite0", "model name; see `headstart models`", short="-m", group="model")
    strategy: str = setting("auto", "probe, head, partial, finetune, or auto (a plan of them within --budget, the "
                            "best on training images only)",
                            choices=STRATEGY_CHOICES, short="-s", group="model")
    weights: str | None = setting("imagenet", "'imagenet' (default), 'none' for random init, or a "
                                  ".pth/.safetensors path", parse=parse_weights, group="model")
    input_shape: tuple[int, int, int] | None = setting(
        None, "HEIGHT,WIDTH of the network input (default: the weights' size; partial: the images' own size "
        "when larger, up to 1.5× the weights')", parse=parse_shape, metavar="H,W",
        group="model")
    head: str = setting("avg,dropout:0.2", "new head, e.g. flatten,dense:1024:relu", group="model")
    unfreeze_from: str | None = setting(None, "partial: first layer that trains (e.g. blocks.5, block5_conv1); "
                                        "default: the last --unfreeze-stages stages", group="model")
    unfreeze_stages: int = setting(1, "partial: train the last K stages", minimum=1, group="model")
    epochs: int = setting(20, "max epochs for head/partial; early stopping usually ends sooner", minimum=1,
                          group="optimization")
    # ~3.5 min per ELPV epoch on a 2-core CPU; the cosine schedule spans these
    finetune_epochs: int = setting(3, "max epochs for finetune", minimum=1, group="optimization")
    batch_size: int = setting(32, "images per training step", minimum=1, group="optimization")
    lr: float = setting(1e-3, "head learning rate", above=0, group="optimization")
    backbone_lr_mult: float = setting(0.1, "backbone LR = lr × this (discriminative learning rates)", minimum=0,
                                      maximum=1, group="optimization")
    layer_decay: float = setting(0.7, "finetune: each earlier stage trains at this × the next stage's LR",
                                 minimum=0, maximum=1, group="optimization")
    weight_decay: float = setting(0.01, "AdamW weight decay", minimum=0, maximum=10, group="optimization")
    label_smoothing: float = setting(0.1, "label smoothing of the loss", minimum=0, maximum=1, group="optimization")
    augment: str | None = setting(None, "augmentation (default: none for cached strategies, light for finetune); "
                                  "with head/partial it trains on images instead of cached features",
                                  choices=("none", "light", "strong"), group="optimization")
    bn: str = setting("frozen", "BatchNorm statistics when layers train on images: frozen (Keras' advice for "
                      "small data) or train", choices=("frozen", "train"), group="optimization")
    recipe: str = setting("auto", "how partial/finetune train on this device: cpu (PIL loader, light augmentation, "
                          "BatchNorm statistics frozen, 3 finetune epochs), gpu (images held on the device and "
                          "augmented there, BatchNorm trained, EMA, 30 epochs) or auto (gpu on CUDA, else cpu); "
                          "settings you give win over the recipe's", choices=("auto", "cpu", "gpu"),
                          group="optimization")
    patience: int = setting(5, "early-stopping patience in epochs", minimum=1, group="optimization")
    balance: str = setting("auto", "class-weighted loss (auto: on when the largest class is > 1.5× the smallest)",
                           choices=("auto", "on", "off"), group="optimization")
    views: str = setting("auto", "probe: train on these views of every image and average them at prediction: none, "
                         "hflip (photos), dihedral (the 8 flips/rotations: cells, textures) or auto (chosen by "
                         "cross-validation)", choices=VIEWS_CHOICES, group="optimization")
    power_norm: str = setting("auto", "probe: the signed square root of each pooled feature before the logistic "
                              "regression (on), the features as they are (off), or auto (chosen by "
                              "cross-validation)", choices=("auto", "on", "off"), group="optimization")
    cv_folds: int = setting(5, "probe and head (on cached features): score them, and choose the probe's C, views "
                            "and power norm, by k-fold cross-validation on the train + val images, then refit on all "
                            "of them; 0: on the validation split", minimum=0, group="data and budget")
    metric: str = setting("accuracy", "what decides the choice between strategies and settings",
                          choices=METRICS, group="data and budget")
    val_split: float = setting(0.15, "validation fraction carved out of the training images", minimum=0, below=1,
                               group="data and budget")
    test_split: float = setting(0.15, "test fraction, used when DATA has no test/ folder", minimum=0, below=1,
                                group="data and budget")
    seed: int = setting(0, "random seed (splits, initialization, shuffling)", group="data and budget")
    exclude: str | None = setting(None, "leave out the images a file lists: `headstart doctor`'s doctor.csv (its "
                                  "rows with action 'exclude'), a CSV with a path column, or one path per line",
                                  metavar="FILE", group="data and budget")
    copy_check: bool = setting(True, "before splitting, find copies (SHA-256; perceptual hash confirmed on "
                               "thumbnails): a split made here keeps them on one side, and a test split with copies "
                               "in train is named in a warning (--no-copy-check: skip; default on)",
                               group="data and budget")
    budget: float = setting(840.0, "seconds for auto; its plan fits the candidates to what this machine measures "
                            "(the same default on a GPU, which fits more into it); the ELPV demo fits in 20 minutes "
                            "on a 2-core CPU", above=0,
                            group="data and budget")
    workers: int | None = setting(None, "worker processes for feature extraction (default: one per core)",
                                  minimum=0, group="data and budget")
    device: str | None = setting(None, "where training and extraction run: auto (the default: CUDA if available), cpu, "
                                 "cuda, cuda:1 …", group="data and budget")
    sync_bn: bool = setting(False, "under torchrun: SyncBatchNorm across the GPUs while BatchNorm statistics train "
                            "(--bn train); CUDA only", group="data and budget")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        return d

    def check(self, given: set[str] | None = None) -> "TrainConfig":
        """Refuse values and strategy/setting combinations that make no sense, saying what would.

        ``given``: the settings the user chose explicitly (flags, config file); each must be used by the strategy.
        """
        check_settings(self)
        if self.strategy != "probe":  # a bad --head fails now, not after auto has spent minutes on the probe
            from ..models import parse_head  # (imports torch: only when a run is about to start)

            parse_head(self.head)
        if self.val_split + self.test_split >= 1:
            raise HeadstartError(f"val_split + test_split must leave images to train on; received "
                                 f"{self.val_split} + {self.test_split}.")
        given = set(given or ())
        if self.unfreeze_from:
            given.add("unfreeze_from")
        check_applies(self.strategy, given - {"strategy"})
        if self.strategy == "head" and self.augment not in (None, "none") and "cv_folds" in given:
            raise HeadstartError("--cv-folds does not apply to head on images (--augment): only the cached-feature "
                                 "head is cross-validated. Drop --cv-folds, or drop --augment.")
        return self


def check_applies(strategy: str, given: set[str]) -> None:
    """Settings the user gave explicitly must be used by ``strategy`` (a flag that silently does nothing is a bug
    in the user's command, and they deserve to hear about it)."""
    for name in sorted(given):
        users = [s for s, used in STRATEGY_SETTINGS.items() if name in used]
        if name in AUTO_SETTINGS:
            users = [AUTO]
        if not users or strategy in users or (strategy == AUTO and name not in AUTO_SETTINGS):
            continue
        raise HeadstartError(
            f"--{name.replace('_', '-')} does not apply to strategy {strategy!r} (it is used by "
            f"{', '.join(users)}). Drop it, or choose --strategy {users[0]}" + (" (or auto)." if users[0] != AUTO
                                                                              else "."))
