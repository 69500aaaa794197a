"""Images in, tensors out: reading files and folders, and the preprocessing that matches the weights."""
from ._dataset import Splits as Splits
from ._dataset import load_splits as load_splits
from ._elpv import make_elpv as make_elpv
from ._images import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from ._images import ImageInput as ImageInput
from ._images import load_image as load_image
from ._images import read_image_file as read_image_file
from ._preprocess import Preprocessing as Preprocessing
from ._sources import Item as Item
from ._sources import SourceError as SourceError
from ._sources import read_source as read_source

__all__ = ["IMAGE_EXTENSIONS", "ImageInput", "load_image", "read_image_file", "Preprocessing", "Item",
           "SourceError", "read_source", "Splits", "load_splits", "make_elpv"]
