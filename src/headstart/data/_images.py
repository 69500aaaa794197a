"""Reading images from files, PIL images or numpy arrays into 8-bit RGB PIL images.

Everything that reads an image in headstart goes through :func:`load_image`, so orientation, colour
conversion and error messages are the same in classify, extract, train, predict and evaluate.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..errors import ImageLoadError

__all__ = ["ImageInput", "load_image", "read_image_file", "IMAGE_EXTENSIONS"]

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]

# Extensions looked for when a folder is scanned (lower case). Decoding itself never trusts the extension.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)

# A truncated JPEG must be an error, not a silently grey lower half.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def load_image(source: ImageInput, *, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Return ``source`` as an 8-bit RGB PIL image, upright according to its EXIF orientation.

    Args:
        source: a file path, a PIL image, or a numpy array (H×W or H×W×C; uint8, uint16 or float in [0, 1]).
        draft_size: for JPEG files, let the decoder produce a reduced-size image that is still at least this
            (width, height); much faster for large photos that are resized afterwards anyway.

    Raises:
        ImageLoadError: the file is missing, unreadable or not an image; the message names the file and cause.
    """
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source))
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"Expected an image path, PIL image or numpy array; received {type(source).__name__}.")
    return _open_file(Path(source), draft_size)


def read_image_file(path: str | os.PathLike, *, draft_size: tuple[int, int] | None = None
                    ) -> tuple[Image.Image, str, tuple[int, int]]:
    """Read a file once: return (RGB image, SHA-256 of the file's bytes, original (width, height))."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageLoadError(path, _os_cause(path, exc)) from None
    im, size = _decode(io.BytesIO(data), path, draft_size)
    return im, hashlib.sha256(data).hexdigest(), size


def decode_bytes(data: bytes, name: str = "<upload>") -> Image.Image:
    """An uploaded file's bytes as an 8-bit RGB PIL image (EXIF orientation applied), read in memory only.

    Raises:
        ImageLoadError: empty, not an image, truncated, or a possible decompression bomb; the cause says which.
    """
    if not data:
        raise ImageLoadError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), Path(name), None)[0]


def _open_file(path: Path, draft_size: tuple[int, int] | None) -> Image.Image:
    try:
        with open(path, "rb") as f:
            return _decode(f, path, draft_size)[0]
    except OSError as exc:
        if isinstance(exc, ImageLoadError):
            raise
        raise ImageLoadError(path, _os_cause(path, exc)) from None


def _os_cause(path: Path, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "broken symbolic link" if path.is_symlink() else "file not found"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not an image file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return f"cannot read file ({exc.strerror or exc})"  # ELOOP (symlink loop), EIO, ...


def _decode(fp, path: Path, draft_size: tuple[int, int] | None) -> tuple[Image.Image, tuple[int, int]]:
    try:
        with warnings.catch_warnings():
            # Pillow's other warnings (corrupt EXIF, skipped TIFF tags) are not actionable and would flood stderr on
            # a messy folder; the image is either decoded or reported. It warns before it raises for large images:
            # that one becomes the reported error.
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as im:
                size = im.size
                if draft_size is not None and im.format == "JPEG":
                    im.draft("RGB", draft_size)
                im.load()
                return _to_rgb(ImageOps.exif_transpose(im)), size
    except UnidentifiedImageError:
        cause = "not an image file Pillow can decode" + (" (empty file)" if _is_empty(path) else "")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        cause = f"refused as a possible decompression bomb ({exc})"
    except OSError as exc:
        cause = f"corrupt or truncated image data ({exc.strerror or exc})"
    except (ValueError, SyntaxError, EOFError, MemoryError, IndexError, TypeError) as exc:
        cause = f"corrupt image ({type(exc).__name__}: {exc})"
    raise ImageLoadError(path, cause)


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB the way a person would expect to see it."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _array_to_rgb(np.asarray(im))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels become white, as in a browser on a white page.
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _array_to_rgb(arr: np.ndarray) -> Image.Image:
    """H×W or H×W×{1,3,4} array of uint8, 16-bit integers or floats in [0, 1] → RGB image."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageLoadError("<array>", f"expected an H×W or H×W×3/4 array, received shape {arr.shape}")
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.integer):
        # 16-bit (or 32-bit int holding 16-bit) data: scale the full 0..65535 range to 0..255.
        scale = 257.0 if arr.max(initial=0) > 255 else 1.0
        arr = np.clip(np.round(arr / scale), 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.clip(np.round(np.nan_to_num(arr) * 255.0), 0, 255).astype(np.uint8)
    else:
        raise ImageLoadError("<array>", f"unsupported array dtype {arr.dtype}")
    if arr.ndim == 2:
        return Image.fromarray(arr, mode="L").convert("RGB")
    return _to_rgb(Image.fromarray(arr, mode="RGBA" if arr.shape[2] == 4 else "RGB"))
