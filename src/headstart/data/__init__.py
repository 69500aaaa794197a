"""Images in, tensors out: reading files and the preprocessing that matches the weights."""
from ._images import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from ._images import ImageInput as ImageInput
from ._images import load_image as load_image
from ._preprocess import Preprocessing as Preprocessing

__all__ = ["IMAGE_EXTENSIONS", "ImageInput", "load_image", "Preprocessing"]
