"""headstart: transfer learning for computer vision, offline-first, on PyTorch + timm.

The four ways to reuse a pretrained network:

>>> import headstart
>>> model = headstart.create_model("lite0")                       # 1. classifier
>>> model.classify(["photo.jpg"], top=5)                           # doctest: +SKIP
"""
from importlib.metadata import PackageNotFoundError, version

from .data import Preprocessing as Preprocessing
from .data import load_image as load_image
from .errors import ChecksumError as ChecksumError
from .errors import HeadstartError as HeadstartError
from .errors import ImageLoadError as ImageLoadError
from .errors import InputShapeError as InputShapeError
from .errors import UnknownLayerError as UnknownLayerError
from .errors import UnknownModelError as UnknownModelError
from .errors import WeightsError as WeightsError
from .errors import WeightsNotFoundError as WeightsNotFoundError
from .models import HeadstartModel as HeadstartModel
from .models import Prediction as Prediction
from .models import create_model as create_model
from .models import list_models as list_models
from .classify import classify as classify
from .features import ExtractConfig as ExtractConfig
from .features import FeatureSet as FeatureSet
from .features import extract as extract
from .train import TrainConfig as TrainConfig
from .train import load as load
from .train import train as train
from .export import export_run as export_run

try:
    __version__ = version("headstart")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["create_model", "list_models", "classify", "extract", "ExtractConfig", "FeatureSet", "train", "load",
           "export_run", "TrainConfig", "load_image", "HeadstartModel", "Prediction",
           "Preprocessing", "HeadstartError", "UnknownModelError", "UnknownLayerError", "InputShapeError",
           "WeightsError", "WeightsNotFoundError", "ChecksumError", "ImageLoadError", "__version__"]
