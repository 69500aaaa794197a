"""A labelled dataset with train / val / test splits, from a folder of class folders or a CSV."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ._sources import Item, SourceError, read_csv, scan_folder

__all__ = ["Splits", "load_splits", "IMBALANCE_RATIO"]

SPLIT_NAMES = ("train", "val", "test")
# Class weighting is switched on by default when the largest class has more than this many times the
# images of the smallest one.
IMBALANCE_RATIO = 1.5


@dataclass
class Splits:
    classes: list[str]
    train: list[Item]
    val: list[Item]
    test: list[Item] = field(default_factory=list)
    source: str = ""
    made_split: bool = False  # True when val/test were carved out of one labelled pool

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(Counter(it.label for it in getattr(self, name))) for name in SPLIT_NAMES}

    def imbalance(self) -> float:
        c = Counter(it.label for it in self.train)
        return max(c.values()) / max(1, min(c.get(k, 0) for k in self.classes))

    def y(self, split: str) -> list[int]:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return [lookup[it.label] for it in getattr(self, split)]


def load_splits(data: str | os.PathLike, *, val_split: float = 0.15, test_split: float = 0.0,
                seed: int = 0) -> Splits:
    """Read ``data`` and return its splits.

    A folder with ``train/`` (and optionally ``val/``, ``test/``) subfolders uses them as the splits, each holding
    one subfolder per class; a missing ``val/`` is carved out of ``train/`` (stratified, ``val_split``). A plain
    folder of class folders, or a CSV ``path,label[,split]``, is split stratified into train/val/test.
    """
    root = Path(data)
    if root.is_dir() and (root / "train").is_dir():
        parts = {name: scan_folder(root / name) for name in SPLIT_NAMES if (root / name).is_dir()}
        train, val, test = parts["train"], parts.get("val", []), parts.get("test", [])
        made = False
        if not val:
            train, val = _split(train, val_split, seed, "val")
            made = True
    else:
        items = scan_folder(root) if root.is_dir() else read_csv(root) if root.is_file() else None
        if items is None:
            raise SourceError(f"{data}: expected a folder of class folders (or with train/val/test) or a CSV "
                              f"with path,label columns; it does not exist.")
        if any(not it.label for it in items):
            raise SourceError(f"{data}: every image needs a label: put images in one subfolder per class, or give "
                              f"a 'label' column. {sum(not it.label for it in items)} images have none.")
        train, test = _split(items, test_split, seed, "test") if test_split > 0 else (items, [])
        train, val = _split(train, val_split / max(1e-9, 1 - test_split), seed, "val")
        made = True
    classes = sorted({it.label for it in train})
    if len(classes) < 2:
        raise SourceError(f"{data}: found {len(classes)} class ({', '.join(classes) or 'none'}) in the training "
                          f"images; a classifier needs at least 2. Put each class in its own subfolder.")
    unknown = sorted({it.label for it in val + test} - set(classes))
    if unknown:
        raise SourceError(f"{data}: classes {unknown} appear in val/test but not in train; every class must have "
                          f"training images.")
    return Splits(classes, train, val, test, str(data), made)


def _split(items: list[Item], fraction: float, seed: int, name: str) -> tuple[list[Item], list[Item]]:
    if fraction <= 0:
        return items, []
    labels = [it.label for it in items]
    counts = Counter(labels)
    if min(counts.values()) < 2:
        rare = [k for k, v in counts.items() if v < 2]
        raise SourceError(f"Cannot make a stratified {name} split: classes {rare} have fewer than 2 images. "
                          f"Add images, or provide a {name}/ folder yourself.")
    from sklearn.model_selection import train_test_split

    # At least one image of each class in the new split, at least one left in the other.
    n = min(max(len(counts), round(fraction * len(items))), len(items) - len(counts))
    try:
        a, b = train_test_split(items, test_size=n, random_state=seed, stratify=labels)
    except ValueError as exc:
        raise SourceError(f"Cannot make a {fraction:.0%} stratified {name} split of {len(items)} images: {exc}") from None
    return sorted(a, key=lambda it: it.path), sorted(b, key=lambda it: it.path)
