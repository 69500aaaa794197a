"""Training on the user's images: probe, head, partial, finetune, and auto (which picks the winner)."""
from ._run import TrainedModel as TrainedModel
from ._run import TrainResult as TrainResult
from ._run import load as load
from ._run import train as train
from ._strategies import STRATEGIES as STRATEGIES
from ._strategies import TrainConfig as TrainConfig

__all__ = ["train", "load", "TrainConfig", "TrainResult", "TrainedModel", "STRATEGIES"]
