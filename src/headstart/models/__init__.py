"""The model zoo: names → timm architectures with their weights, Keras' switches, layers and summary."""
from ._factory import create_model as create_model
from ._factory import imagenet_labels as imagenet_labels
from ._model import HeadstartModel as HeadstartModel
from ._model import ModelConfig as ModelConfig
from ._model import Prediction as Prediction
from ._registry import ModelSpec as ModelSpec
from ._registry import get_spec as get_spec
from ._registry import list_models as list_models
from ._registry import register_model as register_model
from ._registry import weights_available as weights_available

__all__ = ["create_model", "imagenet_labels", "HeadstartModel", "ModelConfig", "Prediction", "ModelSpec",
           "get_spec", "list_models", "register_model", "weights_available"]
