"""What the training loop iterates over: cached activations (fast) or images with augmentation."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..data import Item, load_image
from ..errors import HeadstartError, ImageLoadError
from ..features import ExtractConfig, FeatureSet, extract
from ..home import activations_dir

__all__ = ["cached_activations", "tensor_loader", "ImageDataset", "image_loader"]


def cached_activations(items: Sequence[Item], classes: list[str], config: ExtractConfig, *, progress: bool,
                       cache_root: Path | None = None) -> tuple[torch.Tensor, torch.Tensor, FeatureSet]:
    """Features of ``items`` from a feature store under ``$HEADSTART_HOME/cache`` (computed once, then reused).

    Returns (X, y, store): X is N×C×H×W for maps (the store keeps them channels-last) or N×D.
    """
    key = json.dumps([config.identity(), [(it.path, it.label) for it in items]], sort_keys=True)
    root = (cache_root or activations_dir()) / hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:20]
    fs = extract(list(items), root, config, progress=progress, overwrite=True)
    from ..cache import note_used, note_written

    if fs.stats.cached:
        note_used(root)
    else:
        note_written(root, f"cached activations of {config.model} ({len(items)} images)")
    if len(fs) == 0:
        raise HeadstartError(f"None of the {len(items)} images could be read; see {root / 'skipped.csv'}.")
    x = torch.from_numpy(np.array(fs.features))  # a writable copy in memory (the store is read-only)
    if x.ndim == 4:  # stored channels-last as Keras shows maps; the network wants N×C×H×W
        x = x.permute(0, 3, 1, 2).contiguous()
    lookup = {c: i for i, c in enumerate(classes)}
    y = torch.tensor([lookup[label] for label in fs.labels], dtype=torch.long)
    return x, y, fs


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
    ds = ImageDataset(items, classes, transform)
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=train, generator=g,
                      num_workers=workers, persistent_workers=workers > 0, drop_last=train and len(ds) > batch_size)
