"""Images held on the training device as one uint8 tensor, augmented there: the ``gpu`` recipe's loader.

On a GPU the product's PIL loader (one worker decoding and augmenting every image every epoch) feeds a few hundred
images per second, while Lite0 trains at ~2,400 img/s on an H100 (benchmarks/finetune_gpu.py). Decoding once
(threads: Pillow releases the GIL) and augmenting a whole batch in one ``grid_sample`` removes the loader from
the step: ELPV's 2,263 train + val cells at 300 px are 611 MB of uint8.

The loader behaves like a ``DataLoader`` for ``fit``: ``len()`` batches, ``(x, y)`` pairs (x normalized float,
channels_last, already on the device), and a CPU ``generator`` that orders each epoch and seeds each batch's
augmentation, so ``--resume`` (which restores the generator) replays the same batches.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Item, Preprocessing, load_image
from ..errors import HeadstartError, ImageLoadError
from ..views import view_ops

__all__ = ["ResidentImages", "ResidentLoader", "device_augment"]

MAX_BYTES_CPU = 2 << 30  # the tensor's limit off the GPU (where it would only be a test)


class ResidentImages:
    """``images`` (N × 3 × S × S uint8 on ``device``) and ``labels``; unreadable files are left out (``skipped``)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, preprocessing: Preprocessing,
                 skipped: list[str]):
        self.images, self.labels, self.preprocessing, self.skipped = images, labels, preprocessing, skipped
        dev = images.device
        self.mean = torch.tensor(preprocessing.mean, device=dev).view(1, 3, 1, 1)
        self.std = torch.tensor(preprocessing.std, device=dev).view(1, 3, 1, 1)

    @classmethod
    def decode(cls, items: Sequence[Item], classes: list[str], preprocessing: Preprocessing,
               device: torch.device, workers: int | None = None) -> "ResidentImages":
        """Decode ``items`` once through ``preprocessing``'s geometry (resize, centre crop) and move them to
        ``device``. Refuses (with the sizes) a tensor that would not fit in a quarter of the device's free memory."""
        h, w = preprocessing.input_size
        need = len(items) * 3 * h * w
        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else MAX_BYTES_CPU * 4
        if need > free / 4:
            raise HeadstartError(f"{len(items)} images at {h}×{w} need {need / 2**30:.1f} GiB as uint8 on {device}, "
                                 f"more than a quarter of its {free / 2**30:.1f} GiB free. Use --recipe cpu, or a "
                                 f"smaller --input-shape.")
        geometry = preprocessing.array_transform()
        lookup = {c: i for i, c in enumerate(classes)}

        def one(it: Item):
            try:
                return np.asarray(geometry.resized(load_image(it.path)), dtype=np.uint8)
            except ImageLoadError:
                return None

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            arrays = list(pool.map(one, items))
        kept = [i for i, a in enumerate(arrays) if a is not None]
        if not kept:
            raise HeadstartError("No image of this split can be read.")
        x = torch.from_numpy(np.stack([arrays[i] for i in kept])).permute(0, 3, 1, 2).contiguous()
        y = torch.tensor([lookup[items[i].label] for i in kept], dtype=torch.long)
        skipped = [items[i].path for i, a in enumerate(arrays) if a is None]
        return cls(x.to(device), y.to(device), preprocessing, skipped)

    def __len__(self) -> int:
        return len(self.labels)

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float batch → the network's input (the weights' mean/std), channels_last."""
        x = x.float() / 255 if x.dtype == torch.uint8 else x
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


class ResidentLoader:
    """Batches of ``images`` for ``fit``: shuffled and augmented (``train``) or in order and plain."""

    def __init__(self, images: ResidentImages, batch_size: int, *, train: bool, seed: int = 0,
                 views: str = "none"):
        self.images, self.batch_size, self.train, self.views = images, batch_size, train, views
        self.generator = torch.Generator().manual_seed(seed)
        self.drop_last = train and len(images) > batch_size

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n, dev = len(self.images), self.images.images.device
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size].to(dev)
            x, y = self.images.images[idx], self.images.labels[idx]
            if self.train:
                seed = int(torch.randint(0, 2 ** 62, (1,), generator=self.generator))
                gen = torch.Generator(device=dev).manual_seed(seed)
                yield self.images.normalized(device_augment(x, self.views, gen)), y
            else:
                yield self.images.normalized(x), y


def device_augment(x: torch.Tensor, views: str, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) uint8 → float in [0, 1]: per image, one view of ``views`` (quarter turns, mirror) composed
    with a random affine (±8°, scale 0.9–1.1, shift ±4 %) in one ``grid_sample`` (reflection padding), then
    brightness ±5 % and contrast 0.9–1.1. The recipe of benchmarks/finetune_gpu.py, for any view set."""
    b, dev = len(x), x.device
    rnd = lambda *s: torch.rand(*s, device=dev, generator=gen)  # noqa: E731
    ops = torch.tensor(view_ops(views), dtype=torch.float32, device=dev)  # (V, 2): turns, mirror
    pick = ops[torch.randint(0, len(ops), (b,), device=dev, generator=gen)]
    theta = pick[:, 0] * (math.pi / 2) + (rnd(b) * 2 - 1) * math.radians(8)
    scale = 0.9 + 0.2 * rnd(b)
    mirror = 1 - 2 * pick[:, 1]
    cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
    mat = torch.stack([torch.stack([cos * mirror, -sin, (rnd(b) * 2 - 1) * 0.08], 1),
                       torch.stack([sin * mirror, cos, (rnd(b) * 2 - 1) * 0.08], 1)], 1)
    xf = x.float() / 255
    grid = F.affine_grid(mat, list(xf.shape), align_corners=False)
    xf = F.grid_sample(xf, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mean = xf.mean((1, 2, 3), keepdim=True)
    return ((xf - mean) * (0.9 + 0.2 * rnd(b, 1, 1, 1)) + mean + (rnd(b, 1, 1, 1) - 0.5) * 0.1).clamp(0, 1)
