"""Preprocessing tied to the weights: the only place mean, std, resize and crop turn into a transform.

The evaluation transform is written with Pillow and numpy, so that prediction from an ONNX export runs without
importing torch; it reproduces torchvision's ``Resize`` (on PIL images) → ``CenterCrop`` → ``PILToTensor`` →
``ToDtype(float32, scale=True)`` → ``Normalize`` operation for operation (the same float32 arithmetic, so the
values are identical). Training transforms (augmentation) and the tensor transform for GPU-decoded images use
torchvision, imported when they are built.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["Preprocessing", "AUGMENT"]

# Images longer than this many times their short side are centre-cropped to it before resizing: the final centre
# crop never reaches beyond, and resizing a 10000×3 strip's short side to 256 px would make an 853,333-px-long image.
MAX_ASPECT = 4.0
AUGMENT = ("none", "light", "strong")
_PIL_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
                 "nearest": Image.Resampling.NEAREST}


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a given set of weights.

    The eval transform resizes the shorter side to ``input_size / crop_pct`` and centre-crops ``input_size``
    (the ImageNet convention), then scales to [0, 1] and normalizes with ``mean``/``std``.
    """

    input_size: tuple[int, int] = (224, 224)  # (height, width)
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @classmethod
    def from_timm_cfg(cls, cfg: dict[str, Any]) -> "Preprocessing":
        return cls(input_size=tuple(cfg.get("input_size", (3, 224, 224))[1:]),
                   interpolation=cfg.get("interpolation", "bicubic") or "bicubic",
                   crop_pct=float(cfg.get("crop_pct", 0.875) or 0.875),
                   mean=tuple(cfg.get("mean", cls.mean)), std=tuple(cfg.get("std", cls.std)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocessing":
        return cls(input_size=tuple(d["input_size"]), interpolation=d["interpolation"],
                   crop_pct=float(d["crop_pct"]), mean=tuple(d["mean"]), std=tuple(d["std"]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_input_size(self, size: tuple[int, int]) -> "Preprocessing":
        return replace(self, input_size=tuple(size))

    @property
    def resize_size(self) -> tuple[int, int]:
        """Size (h, w) the image is resized to before the centre crop."""
        h, w = self.input_size
        return math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)

    def array_transform(self) -> "ArrayTransform":
        """PIL RGB image → normalized float32 numpy array of shape (3, H, W). No torch involved."""
        return ArrayTransform(self)

    def transform(self) -> "TensorTransform":
        """PIL RGB image → normalized float tensor of shape (3, H, W): :meth:`array_transform` as a tensor."""
        return TensorTransform(self.array_transform())

    def train_transform(self, strength: str):
        """Augmentation suited to photos and inspection images: crops, flips, small rotations, light colour jitter."""
        from ..errors import HeadstartError

        if strength not in AUGMENT:
            raise HeadstartError(f"augment must be one of {', '.join(AUGMENT)}; received {strength!r}.")
        if strength == "none":
            return self.transform()
        import torch
        from torchvision.transforms import v2 as T

        h, w = self.input_size
        interp = T.InterpolationMode(self.interpolation)
        strong = strength == "strong"
        ops = [T.RandomResizedCrop((h, w), scale=(0.6 if strong else 0.8, 1.0), ratio=(0.9, 1.1),
                                   interpolation=interp, antialias=True),
               T.RandomHorizontalFlip(),
               T.RandomRotation(15 if strong else 5, interpolation=T.InterpolationMode.BILINEAR),
               T.ColorJitter(0.3, 0.3) if strong else T.ColorJitter(0.1, 0.1)]
        if strong:
            ops.insert(2, T.RandomVerticalFlip())
        return T.Compose([*ops, T.PILToTensor(), T.ToDtype(torch.float32, scale=True),
                          T.Normalize(mean=list(self.mean), std=list(self.std))])

    def tensor_transform(self):
        """uint8 tensor (3, H, W) on any device → the same normalized float tensor :meth:`transform` makes.

        For images decoded on the GPU (``torchvision.io.decode_jpeg(device="cuda")``): the resize runs as a tensor
        op on the device, so results differ from Pillow's resize by interpolation rounding (cosine ≥ 0.999).
        """
        import torch
        from torchvision.transforms import v2 as T

        h, w = self.input_size
        resize = T.Resize(self.resize_size[0] if h == w else self.resize_size,
                          interpolation=T.InterpolationMode(self.interpolation), antialias=True)
        return T.Compose([
            *([_LimitAspectTensor(MAX_ASPECT)] if h == w else []),
            resize, T.CenterCrop((h, w)), T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(self.mean), std=list(self.std)),
        ])


class ArrayTransform:
    """The evaluation transform on Pillow + numpy (picklable: worker processes receive it)."""

    def __init__(self, pre: Preprocessing):
        self.pre = pre
        # float32 constants, shaped to broadcast over (3, H, W): the same arithmetic as torchvision's kernels
        self._scale = np.float32(1.0 / 255)
        self._mean = np.asarray(pre.mean, np.float32).reshape(3, 1, 1)
        self._std = np.asarray(pre.std, np.float32).reshape(3, 1, 1)

    def resized(self, im: Image.Image) -> Image.Image:
        """Resize (shorter side, or both sides for non-square inputs) and centre-crop: the geometric part."""
        h, w = self.pre.input_size
        if h == w:
            im = limit_aspect(im, MAX_ASPECT)
            rh, rw = _short_side_size(im.height, im.width, self.pre.resize_size[0])
        else:
            rh, rw = self.pre.resize_size
        if (rh, rw) != (im.height, im.width):
            im = im.resize((rw, rh), resample=_PIL_RESAMPLE[self.pre.interpolation])
        return _center_crop(im, h, w)

    def __call__(self, im: Image.Image) -> np.ndarray:
        arr = np.asarray(self.resized(im), dtype=np.uint8)
        x = arr.transpose(2, 0, 1).astype(np.float32) * self._scale
        return np.ascontiguousarray((x - self._mean) / self._std, dtype=np.float32)


class TensorTransform:
    """:class:`ArrayTransform` returning a torch tensor (for DataLoaders and models)."""

    def __init__(self, array_transform: ArrayTransform):
        self.array_transform = array_transform

    def __call__(self, im: Image.Image):
        import torch

        return torch.from_numpy(self.array_transform(im))


def _short_side_size(h: int, w: int, size: int) -> tuple[int, int]:
    """torchvision's Resize(int) output size: the short side becomes ``size``, the long one is truncated."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


def _center_crop(im: Image.Image, h: int, w: int) -> Image.Image:
    """torchvision's CenterCrop on a PIL image: zero padding when the image is smaller, then a rounded anchor."""
    if h > im.height or w > im.width:
        pad_w, pad_h = max(w - im.width, 0), max(h - im.height, 0)
        canvas = Image.new(im.mode, (im.width + pad_w, im.height + pad_h))
        canvas.paste(im, (pad_w // 2, pad_h // 2))
        im = canvas
    top, left = int(round((im.height - h) / 2.0)), int(round((im.width - w) / 2.0))
    return im.crop((left, top, left + w, top + h))


def limit_aspect(im: Image.Image, ratio: float) -> Image.Image:
    """Centre-crop a PIL image whose long side exceeds ``ratio`` × its short side (output unchanged: see above)."""
    w, h = im.size
    if max(w, h) <= ratio * min(w, h):
        return im
    if w > h:
        nw = int(math.ceil(ratio * h))
        left = (w - nw) // 2
        return im.crop((left, 0, left + nw, h))
    nh = int(math.ceil(ratio * w))
    top = (h - nh) // 2
    return im.crop((0, top, w, top + nh))


class _LimitAspectTensor:
    """:func:`limit_aspect` for a (…, H, W) tensor."""

    def __init__(self, ratio: float):
        self.ratio = ratio

    def __call__(self, im):
        h, w = im.shape[-2:]
        if max(w, h) <= self.ratio * min(w, h):
            return im
        if w > h:
            nw = int(math.ceil(self.ratio * h))
            left = (w - nw) // 2
            return im[..., :, left:left + nw]
        nh = int(math.ceil(self.ratio * w))
        top = (h - nh) // 2
        return im[..., top:top + nh, :]
