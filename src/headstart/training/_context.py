"""What every strategy shares, at the bottom of ``training/``: the record type (:class:`Strategy`), what a run
returns (:class:`StrategyResult`, with its train-only :class:`Holdout` twin) and what it is given
(:class:`TrainContext`). Nothing here imports another training module at run time, so the strategies, the probe,
the cross-validation and the planner (:mod:`._auto`) all import it without a circle (TRAINING.md, tangle 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

    from ..data import Splits
    from ..models import HeadstartModel
    from ._checkpoint import Checkpoints
    from ._config import TrainConfig
    from ._loop import History

__all__ = ["Strategy", "StrategyResult", "TrainContext", "Holdout"]


@dataclass
class Holdout:
    """A cross-validated strategy's twin, fitted on the train split only, and its score on the validation split."""

    head_state: dict
    val_score: float | None  # the choice metric (None: there is no validation split)
    val_acc: float | None


@dataclass(frozen=True)
class Strategy:
    """One way to train: what it trains, on what, which settings it uses, and how its optimizer is set up."""

    name: str
    trains: str  # what trains (help and README table)
    data: str  # what it iterates over
    settings: tuple[str, ...]  # TrainConfig fields it uses (giving another strategy's setting is refused)
    run: Callable[["Strategy", "TrainContext"], "StrategyResult"]
    epochs_setting: str | None = None  # the TrainConfig field that bounds its epochs (None: closed form)
    warmup_epochs: float = 1.0  # linear LR warm-up; short when the head arrives trained
    param_groups: Callable[["HeadstartModel", "TrainConfig"], list[dict]] | None = None  # freezes, returns groups
    head_first: bool = False  # train the head on cached features before the layers (gradual unfreezing)

    def epochs(self, config: "TrainConfig") -> int:
        return getattr(config, self.epochs_setting) if self.epochs_setting else 0


@dataclass
class StrategyResult:
    name: str
    model: "HeadstartModel"
    val_acc: float
    seconds: float
    history: "History | None" = None
    details: dict[str, Any] = field(default_factory=dict)
    val_score: float | None = None  # the choice metric on validation (accuracy or balanced accuracy)
    n_scored: int = 0  # images the score rests on (validation split, or every image of a cross-validation)
    # A cross-validated strategy (scored over folds of train + val, then refitted on all of it) keeps a twin
    # fitted on the train split only (:mod:`._cv`): the head partial/finetune start from, and its score on the
    # validation split, where they are compared with it. A function, called (once) only when asked:
    # `--strategy probe` never pays for the fit.
    twin: "Callable[[], Holdout] | None" = None
    held: "Holdout | None" = field(default=None, init=False, repr=False)

    @property
    def cross_validated(self) -> bool:
        return "cv" in self.details

    def holdout(self) -> "Holdout | None":
        """The twin (fitted now if it was not yet; then the train features it held are let go), or None."""
        if self.twin is not None:
            self.held, self.twin = self.twin(), None
        return self.held

    def start_state(self) -> dict:
        held = self.holdout()
        return held.head_state if held is not None else self.model.head.state_dict()

    @property
    def score(self) -> float:
        return self.val_acc if self.val_score is None else self.val_score


@dataclass
class TrainContext:
    """What a strategy run needs besides its record: data, settings, device, checkpoints, time, earlier results."""

    splits: "Splits"
    config: "TrainConfig"
    device: "torch.device"
    checkpoints: "Checkpoints | None" = None
    progress: bool = True
    deadline: float | None = None
    results: list[StrategyResult] = field(default_factory=list)
    # ``auto``'s stop rule for an epoch-trained candidate (:class:`._auto.LosingBound`): after each epoch,
    # ``should_stop(epoch, history)`` True ends the training loop. None: train to the epochs or early stopping.
    should_stop: "Callable[[int, History], bool] | None" = None
    given: frozenset = frozenset()  # the settings the user chose explicitly (they win over a recipe's)

    def fit_kw(self, strategy: Strategy, epochs: int | None = None, on_epoch: Callable | None = None
               ) -> dict[str, Any]:
        from ._loop import class_weights

        c = self.config
        return dict(epochs=epochs or strategy.epochs(c), weight_decay=c.weight_decay,
                    warmup_epochs=strategy.warmup_epochs, label_smoothing=c.label_smoothing,
                    class_weights=class_weights(self.splits, c.balance), patience=c.patience,
                    progress=self.progress, name=strategy.name, deadline=self.deadline, on_epoch=on_epoch,
                    device=self.device, checkpoints=self.checkpoints, metric=c.metric, sync_bn=c.sync_bn,
                    should_stop=self.should_stop)
