"""headstart: transfer learning for computer vision, offline-first, on PyTorch + timm.

The four ways to reuse a pretrained network:

>>> import headstart
>>> model = headstart.create_model("lite0")                       # 1. classifier
>>> model.classify(["photo.jpg"], top=5)                           # doctest: +SKIP

Names are imported on first use (``import headstart`` does not import torch), so the command line starts fast.
"""
from ._version import __version__ as __version__
from .errors import ChecksumError as ChecksumError
from .errors import HeadstartError as HeadstartError
from .errors import ImageLoadError as ImageLoadError
from .errors import InputShapeError as InputShapeError
from .errors import UnknownLayerError as UnknownLayerError
from .errors import UnknownModelError as UnknownModelError
from .errors import WeightsError as WeightsError
from .errors import WeightsNotFoundError as WeightsNotFoundError
from .lazy import attach as _attach

_LAZY = {
    "create_model": ".models:create_model", "list_models": ".models:list_models",
    "HeadstartModel": ".models:HeadstartModel", "Prediction": ".models:Prediction",
    "load_image": ".data:load_image", "Preprocessing": ".data:Preprocessing",
    "classify": ".inference:classify", "ClassifyResult": ".inference:ClassifyResult",
    "extract": ".features:extract", "ExtractConfig": ".features:ExtractConfig", "FeatureSet": ".features:FeatureSet",
    "ExtractStats": ".features:ExtractStats",
    "train": ".training:train", "TrainConfig": ".training:TrainConfig", "TrainResult": ".training:TrainResult",
    "load": ".run:load", "TrainedModel": ".run:TrainedModel",
    "export_run": ".export:export_run",
}
__getattr__, __dir__ = _attach(__name__, _LAZY)

__all__ = ["create_model", "list_models", "classify", "ClassifyResult", "extract", "ExtractConfig", "ExtractStats",
           "FeatureSet", "train", "TrainConfig", "TrainResult", "load", "TrainedModel", "export_run", "load_image",
           "HeadstartModel", "Prediction", "Preprocessing", "HeadstartError", "UnknownModelError",
           "UnknownLayerError", "InputShapeError", "WeightsError", "WeightsNotFoundError", "ChecksumError",
           "ImageLoadError", "__version__"]
