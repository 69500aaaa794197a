"""Training on the user's images: probe, head, partial, finetune, and auto (which picks the winner).

(The package is ``training`` so that ``headstart.train``, the function, is never shadowed by a submodule.)
"""
from ..lazy import attach as _attach

__getattr__, __dir__ = _attach(__name__, {
    "train": "._train:train", "TrainResult": "._train:TrainResult", "choose_winner": "._choose:choose_winner",
    "TrainConfig": "._config:TrainConfig", "STRATEGY_CHOICES": "._config:STRATEGY_CHOICES",
    "STRATEGIES": "._strategies:STRATEGIES", "Strategy": "._strategies:Strategy",
    "StrategyResult": "._context:StrategyResult", "AUTO_HELP": "._auto:AUTO_HELP",
    "check_applies": "._config:check_applies",
})

__all__ = ["train", "TrainResult", "choose_winner", "TrainConfig", "STRATEGY_CHOICES", "STRATEGIES", "Strategy",
           "StrategyResult", "check_applies", "AUTO_HELP"]
