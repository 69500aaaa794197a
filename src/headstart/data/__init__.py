"""Images in, tensors out: reading files and folders, and the preprocessing that matches the weights."""
from ..lazy import attach as _attach

__getattr__, __dir__ = _attach(__name__, {
    "IMAGE_EXTENSIONS": "._images:IMAGE_EXTENSIONS", "ImageInput": "._images:ImageInput",
    "load_image": "._images:load_image", "read_image_file": "._images:read_image_file",
    "Preprocessing": "._preprocess:Preprocessing", "AUGMENT": "._preprocess:AUGMENT",
    "Item": "._sources:Item", "SourceError": "._sources:SourceError", "read_source": "._sources:read_source",
    "Splits": "._dataset:Splits", "load_splits": "._dataset:load_splits", "IMBALANCE_RATIO": "._dataset:IMBALANCE_RATIO",
    "make_elpv": "._elpv:make_elpv",
})

__all__ = ["IMAGE_EXTENSIONS", "ImageInput", "load_image", "read_image_file", "Preprocessing", "AUGMENT", "Item",
           "SourceError", "read_source", "Splits", "load_splits", "IMBALANCE_RATIO", "make_elpv"]
