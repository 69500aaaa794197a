"""What the training loop iterates over: cached activations (fast) or images with augmentation."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..data import Item, load_image
from ..errors import HeadstartError, ImageLoadError
from ..features import ExtractConfig, FeatureSet, cached_features

__all__ = ["cached_activations", "tensor_loader", "ImageDataset", "image_loader", "native_side"]

# The most native size can add over the weights' own, per side: compute grows with the area (1.5² = 2.25× per step).
NATIVE_MAX_SCALE = 1.5


def cached_activations(items: Sequence[Item], classes: list[str], config: ExtractConfig, *, progress: bool,
                       cache_root: Path | None = None) -> tuple[torch.Tensor, torch.Tensor, FeatureSet]:
    """Features of ``items`` from a feature store under ``$HEADSTART_HOME/cache`` (computed once, then reused).

    Returns (X, y, store): X is N×C×H×W for maps (the store keeps them channels-last) or N×D.
    """
    fs = cached_features(items, config, progress=progress, cache_root=cache_root)
    x = torch.from_numpy(np.array(fs.features))  # a writable copy in memory (the store is read-only)
    if x.ndim == 4:  # stored channels-last as Keras shows maps; the network wants N×C×H×W
        x = x.permute(0, 3, 1, 2).contiguous()
    lookup = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([lookup[label] for label in fs.labels], dtype=torch.long)
    return x, y, fs


def native_side(items: Sequence[Item], default: tuple[int, int], *, sample: int = 64) -> int | None:
    """The side of the square input the training images are at (the median short side of up to ``sample`` of them,
    evenly spaced), when it is larger than the model's ``default`` input; None when it is not.

    Down-scaling 300-px solar cells to 224 throws away the fine cracks the network is asked to find; a layer that
    trains can learn from the pixels that are there. Capped at :data:`NATIVE_MAX_SCALE` × the default side. Only the
    files' headers are read (PIL decodes lazily); unreadable files are left to the loaders to report.
    """
    from PIL import Image

    step = max(1, len(items) // sample)
    sides = []
    for it in list(items)[::step][:sample]:
        try:
            with Image.open(it.path) as im:
                sides.append(min(im.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    if not sides:
        return None
    side, base = int(np.median(sides)), min(default)
    return min(side, int(base * NATIVE_MAX_SCALE)) if side > base else None


def tensor_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, train: bool, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x.float() if x.dtype == torch.float16 else x, y), batch_size=batch_size,
                      shuffle=train, generator=g)


class ImageDataset(Dataset):
    """(image tensor, label) pairs; an unreadable image is replaced by the next readable one (and counted)."""

    def __init__(self, items: Sequence[Item], classes: list[str], transform):
        self.items, self.transform = list(items), transform
        self.lookup = {c: i for i, c in enumerate(classes)}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        for k in range(len(self.items)):
            item = self.items[(i + k) % len(self.items)]
            try:
                return self.transform(load_image(item.path)), self.lookup[item.label]
            except ImageLoadError:
                continue
        raise HeadstartError("No image of this split can be read.")


def image_loader(items: Sequence[Item], classes: list[str], transform, batch_size: int, *, train: bool,
                 seed: int = 0, workers: int = 1) -> DataLoader:
    """Batches of (images, labels). Under torchrun (several ranks) each rank gets its part; see
    :func:`_rank_loader`."""
    from ..distributed import launched

    if launched():
        return _rank_loader(items, classes, transform, batch_size, train=train, seed=seed, workers=workers)
    ds = ImageDataset(items, classes, transform)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=train, generator=g,
                      num_workers=workers, persistent_workers=workers > 0, drop_last=train and len(ds) > batch_size)


def _rank_loader(items: Sequence[Item], classes: list[str], transform, batch_size: int, *, train: bool, seed: int,
                 workers: int) -> DataLoader:
    """This rank's share of the single-process loader, so that a DDP run equals the single-process one.

    Training: the single-process order (the same generator, drawn the same way), cut into the same global batches
    of ``batch_size``; each rank takes a contiguous slice of every global batch (``batch_size / world`` images),
    and DDP's gradient average over the ranks is the gradient of the global batch. The generator moves on every
    epoch exactly as in one process: the order changes between epochs, and ``--resume`` restores it. Random
    augmentation is seeded per image from (epoch order, position), so it does not depend on the number of ranks.
    Validation: a contiguous range of the images per rank, none padded or repeated; ``fit`` gathers the outputs.
    """
    from torch.utils.data import BatchSampler, RandomSampler

    from ..distributed import split_evenly, this_shard

    rank, world = this_shard()
    if not train:
        lo, hi = split_evenly(len(items), world)[rank]
        loader = DataLoader(ImageDataset(items[lo:hi], classes, transform), batch_size=batch_size,
                            num_workers=workers if hi > lo else 0, persistent_workers=workers > 0 and hi > lo)
        loader.sharded = True
        return loader
    if batch_size % world:
        raise HeadstartError(f"batch_size is the global batch, split evenly over the {world} processes; received "
                             f"{batch_size}. Use a multiple of {world} (e.g. --batch-size {batch_size - batch_size % world or world}).")
    if len(items) < world:
        raise HeadstartError(f"{len(items)} training images cannot be split over {world} processes; expected at "
                             f"least one per process. Use fewer processes (--nproc-per-node) or more images.")
    ds = ImageDataset(items, classes, transform)
    g = torch.Generator().manual_seed(seed)
    batches = BatchSampler(RandomSampler(ds, generator=g), batch_size, drop_last=len(ds) > batch_size)
    loader = DataLoader(_Seeded(ds), batch_sampler=_RankSlice(batches, g, rank, world), generator=g,
                        num_workers=workers, persistent_workers=workers > 0)
    loader.sharded = True
    return loader


class _RankSlice:
    """This rank's contiguous slice of each global batch, as (index, augmentation seed) pairs."""

    def __init__(self, batches, generator: torch.Generator, rank: int, world: int):
        self.batches, self.generator, self.rank, self.world = batches, generator, rank, world

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        from ..distributed import split_evenly

        # Read before the sampler draws: the same on every rank, and restored with the generator on --resume.
        epoch_key = int.from_bytes(hashlib.sha256(self.generator.get_state().numpy().tobytes()).digest()[:5], "big")  # 40 + 20 bits: a valid seed
        at = 0
        for batch in self.batches:
            lo, hi = split_evenly(len(batch), self.world)[self.rank]
            yield [(i, (epoch_key << 20) + at + lo + k) for k, i in enumerate(batch[lo:hi])]
            at += len(batch)


class _Seeded(Dataset):
    """Seeds torch's generator for each image (its random augmentation) from the key the sampler sends."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        i, aug_seed = key
        with torch.random.fork_rng(devices=[]):  # this image's draws only; the process's own stream is untouched
            torch.manual_seed(aug_seed)
            return self.ds[i]
