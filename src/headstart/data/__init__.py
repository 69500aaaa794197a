"""Images in, tensors out: reading files and folders, and the preprocessing that matches the weights."""
from ..lazy import attach as _attach

__getattr__, __dir__ = _attach(__name__, {
    "IMAGE_EXTENSIONS": "._images:IMAGE_EXTENSIONS", "ImageInput": "._images:ImageInput",
    "load_image": "._images:load_image", "read_image_file": "._images:read_image_file",
    "decode_bytes": "._images:decode_bytes",
    "Preprocessing": "._preprocess:Preprocessing", "AUGMENT": "._preprocess:AUGMENT",
    "Item": "._sources:Item", "SourceError": "._sources:SourceError", "read_source": "._sources:read_source",
    "read_exclude": "._sources:read_exclude",
    "Splits": "._dataset:Splits", "load_splits": "._dataset:load_splits", "IMBALANCE_RATIO": "._dataset:IMBALANCE_RATIO",
    "make_elpv": "._elpv:make_elpv",
    "CopyIndex": "._copies:CopyIndex", "ImageStats": "._copies:ImageStats", "image_stats": "._copies:image_stats",
    "copy_groups": "._copies:copy_groups", "hash_pairs": "._copies:hash_pairs", "hash_distance": "._copies:hash_distance",
    "groups_of": "._copies:groups_of", "same_picture": "._copies:same_picture", "unusable": "._copies:unusable",
    "save_signatures": "._copies:save_signatures", "load_signatures": "._copies:load_signatures",
    "copies_of": "._copies:copies_of",
})

__all__ = ["IMAGE_EXTENSIONS", "ImageInput", "load_image", "read_image_file", "decode_bytes", "Preprocessing", "AUGMENT", "Item",
           "SourceError", "read_source", "read_exclude", "Splits", "load_splits", "IMBALANCE_RATIO", "make_elpv",
           "CopyIndex", "ImageStats", "image_stats", "copy_groups", "hash_pairs", "hash_distance", "groups_of",
           "same_picture", "unusable", "save_signatures", "load_signatures", "copies_of"]
