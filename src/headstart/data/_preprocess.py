"""Preprocessing tied to the weights: the only place mean, std, resize and crop turn into a transform."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torchvision.transforms import v2 as T
from torchvision.transforms import InterpolationMode

__all__ = ["Preprocessing"]

# Images longer than this many times their short side are centre-cropped to it before resizing: the final centre
# crop never reaches beyond, and resizing a 10000×3 strip's short side to 256 px would make an 853,333-px-long image.
MAX_ASPECT = 4.0

_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}


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

    def transform(self) -> T.Compose:
        """PIL RGB image → normalized float tensor of shape (3, H, W)."""
        h, w = self.input_size
        interp = _INTERPOLATION[self.interpolation]
        # Square inputs keep the aspect ratio (resize the shorter side); non-square ones resize both sides,
        # as timm does for tuple sizes.
        resize = T.Resize(self.resize_size[0] if h == w else self.resize_size, interpolation=interp, antialias=True)
        return T.Compose([
            *([_LimitAspect(MAX_ASPECT)] if h == w else []),
            # Resize on the PIL image (as timm does): Pillow's antialiased resize is what the weights were
            # evaluated with, and it is faster than resizing a full-size tensor.
            resize, T.CenterCrop((h, w)), T.PILToTensor(), T.ToDtype(torch.float32, scale=True), T.Normalize(mean=list(self.mean), std=list(self.std)),
        ])


    def tensor_transform(self) -> T.Compose:
        """uint8 tensor (3, H, W) on any device → the same normalized float tensor :meth:`transform` makes.

        For images decoded on the GPU (``torchvision.io.decode_jpeg(device="cuda")``): the resize runs as a tensor
        op on the device, so results differ from Pillow's resize by interpolation rounding (cosine ≥ 0.999).
        """
        h, w = self.input_size
        interp = _INTERPOLATION[self.interpolation]
        resize = T.Resize(self.resize_size[0] if h == w else self.resize_size, interpolation=interp, antialias=True)
        return T.Compose([
            *([_LimitAspect(MAX_ASPECT)] if h == w else []),
            resize, T.CenterCrop((h, w)), T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean=list(self.mean), std=list(self.std)),
        ])


class _LimitAspect(torch.nn.Module):
    """Centre-crop a PIL image whose long side exceeds ``ratio`` × its short side (output unchanged: see above)."""

    def __init__(self, ratio: float):
        super().__init__()
        self.ratio = ratio

    def forward(self, im):
        tensor = isinstance(im, torch.Tensor)
        h, w = im.shape[-2:] if tensor else im.size[::-1]
        if max(w, h) <= self.ratio * min(w, h):
            return im
        if w > h:
            nw = int(math.ceil(self.ratio * h))
            left = (w - nw) // 2
            return im[..., :, left:left + nw] if tensor else im.crop((left, 0, left + nw, h))
        nh = int(math.ceil(self.ratio * w))
        top = (h - nh) // 2
        return im[..., top:top + nh, :] if tensor else im.crop((0, top, w, top + nh))
