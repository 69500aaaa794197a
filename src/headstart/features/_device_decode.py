"""JPEG decoding on the accelerator (``--gpu-decode``): workers only read bytes, the device decodes and resizes.

On a GPU, decoding and resizing photos on the CPU is what limits throughput; ``torchvision.io.decode_jpeg`` with
``device="cuda"`` decodes a whole batch with nvJPEG and the resize runs as a tensor op on the device. Only plain
JPEGs (RGB or grayscale, within Pillow's pixel limit) take that path; every other file, and any JPEG the device
decoder rejects, is decoded by Pillow exactly as without the option, so errors are reported the same way.
The same code runs with ``device="cpu"`` (that is how the tests check it on machines without a GPU).
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Callable, Sequence

import torch
from PIL import Image

__all__ = ["RawJpeg", "read_raw_jpeg", "decode_batch"]


class RawJpeg:
    """The undecoded bytes of a JPEG, carried from a worker to the device."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = torch.frombuffer(bytearray(data), dtype=torch.uint8)


def read_raw_jpeg(path: str) -> tuple[RawJpeg, tuple[str, int, int, None]] | None:
    """(bytes, (sha256, width, height, None)) for a file the device can decode, or None: decode it with Pillow."""
    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            fmt, mode, (w, h) = im.format, im.mode, im.size
    except Exception:  # any problem: the Pillow path reads it again and reports the cause
        return None
    limit = Image.MAX_IMAGE_PIXELS
    if fmt != "JPEG" or mode not in ("RGB", "L") or (limit is not None and w * h > limit):
        return None
    return RawJpeg(data), (hashlib.sha256(data).hexdigest(), w, h, None)


def decode_batch(xs: Sequence, infos: list, tensor_transform: Callable, pil_load: Callable[[int], tuple],
                 device: torch.device) -> torch.Tensor | None:
    """Stack a worker's batch on ``device``: RawJpeg entries decoded there, ready tensors moved there.

    ``xs`` is aligned with ``infos`` (None where the file could not be read). ``pil_load(k)`` decodes entry ``k``
    with Pillow ((tensor, info) or (None, info with the error)); it is used for any JPEG the device decoder
    rejects, and ``infos[k]`` is replaced by its result.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    out: list[torch.Tensor | None] = [x.to(device) if isinstance(x, torch.Tensor) else None for x in xs]
    raw = [k for k, x in enumerate(xs) if isinstance(x, RawJpeg)]
    if raw:
        try:
            decoded = decode_jpeg([xs[k].data for k in raw], mode=ImageReadMode.RGB, device=device,
                                  apply_exif_orientation=True)
        except RuntimeError:  # one bad file fails the batch call: decode one by one to find it
            decoded = [_decode_one(xs[k].data, device) for k in raw]
        for k, im in zip(raw, decoded):
            if im is None:
                t, infos[k] = pil_load(k)
                out[k] = t.to(device) if t is not None else None
            else:
                out[k] = tensor_transform(im)
    good = [t for t in out if t is not None]
    return torch.stack(good) if good else None


def _decode_one(data: torch.Tensor, device: torch.device) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
    except RuntimeError:
        return None
