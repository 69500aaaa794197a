"""A labelled dataset with train / val / test splits, from a folder of class folders or a CSV."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

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
    excluded: int = 0  # images left out because an exclude list named them
    groups: dict[str, int] = field(default_factory=dict)  # path → copy group (see load_splits' `group`)

    def leaks(self, a: str = "train", b: str = "test") -> int:
        """How many images of split ``b`` have a copy (same copy group) in split ``a``."""
        seen = {self.groups[it.path] for it in getattr(self, a) if it.path in self.groups}
        return sum(self.groups.get(it.path, -1) in seen for it in getattr(self, b))

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: dict(Counter(it.label for it in getattr(self, name))) for name in SPLIT_NAMES}

    def imbalance(self) -> float:
        c = Counter(it.label for it in self.train)
        return max(c.values()) / max(1, min(c.get(k, 0) for k in self.classes))

    def y(self, split: str) -> list[int]:
        lookup = {c: i for i, c in enumerate(self.classes)}
        return [lookup[it.label] for it in getattr(self, split)]


def load_splits(data: str | os.PathLike, *, val_split: float = 0.15, test_split: float = 0.0,
                seed: int = 0, exclude: Collection[str] | None = None,
                group: Callable[[list[Item]], dict[str, int]] | None = None) -> Splits:
    """Read ``data`` and return its splits.

    A folder with ``train/`` (and optionally ``val/``, ``test/``) subfolders uses them as the splits, each holding
    one subfolder per class; a missing ``val/`` is carved out of ``train/`` (stratified, ``val_split``). A plain
    folder of class folders, or a CSV ``path,label[,split]``, is split stratified into train/val/test.
    ``exclude``: absolute paths to leave out (``read_exclude``). ``group(items)``: a copy group for some images
    (path → id, e.g. duplicates), called with the pool that is split here (a given test/ folder is not in it);
    the splits carved out here keep every group on one side.
    """
    root = Path(data)
    if root.is_dir() and (root / "train").is_dir():
        parts = {name: scan_folder(root / name) for name in SPLIT_NAMES if (root / name).is_dir()}
        parts, excluded = _exclude(parts, exclude, data)
        # The test images are not read here: train looks at them only after it has chosen its model.
        groups = group(parts["train"] + parts.get("val", [])) if group else {}
        train, val, test = parts["train"], parts.get("val", []), parts.get("test", [])
        made = False
        if not val:
            train, val = _split(train, val_split, seed, "val", groups)
            made = True
    else:
        items = scan_folder(root) if root.is_dir() else read_csv(root) if root.is_file() else None
        if items is None:
            raise SourceError(f"{data}: expected a folder of class folders (or with train/val/test) or a CSV "
                              f"with path,label columns; it does not exist.")
        if any(not it.label for it in items):
            raise SourceError(f"{data}: every image needs a label: put images in one subfolder per class, or give "
                              f"a 'label' column. {sum(not it.label for it in items)} images have none.")
        (items,), excluded = _exclude([items], exclude, data)
        groups = group(items) if group else {}
        train, test = _split(items, test_split, seed, "test", groups) if test_split > 0 else (items, [])
        train, val = _split(train, val_split / max(1e-9, 1 - test_split), seed, "val", groups)
        made = True
    classes = sorted({it.label for it in train})
    if len(classes) < 2:
        raise SourceError(f"{data}: found {len(classes)} class ({', '.join(classes) or 'none'}) in the training "
                          f"images; a classifier needs at least 2. Put each class in its own subfolder.")
    unknown = sorted({it.label for it in val + test} - set(classes))
    if unknown:
        raise SourceError(f"{data}: classes {unknown} appear in val/test but not in train; every class must have "
                          f"training images.")
    return Splits(classes, train, val, test, str(data), made, excluded, groups)


def _exclude(parts, exclude: Collection[str] | None, data):
    """``parts`` (a dict or list of item lists) without the excluded paths, and how many were left out."""
    if not exclude:
        return parts, 0
    keys = list(parts) if isinstance(parts, dict) else range(len(parts))
    kept = {k: [it for it in parts[k] if it.path not in exclude] for k in keys}
    n = sum(len(parts[k]) - len(kept[k]) for k in keys)
    if n == 0:
        raise SourceError(f"--exclude lists {len(exclude)} images, none of them in {data} (e.g. "
                          f"{sorted(exclude)[0]}). Expected the doctor.csv of this data set; paths must name the "
                          f"same files (they are compared as absolute paths).")
    return (kept if isinstance(parts, dict) else [kept[k] for k in keys]), n


def _split(items: list[Item], fraction: float, seed: int, name: str,
           groups: dict[str, int] | None = None) -> tuple[list[Item], list[Item]]:
    if fraction <= 0:
        return items, []
    if groups:
        return _split_groups(items, fraction, seed, name, groups)
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


def _split_groups(items: list[Item], fraction: float, seed: int, name: str,
                  groups: dict[str, int]) -> tuple[list[Item], list[Item]]:
    """As :func:`_split`, with each copy group on one side: the first image of a group stands for it in the
    stratified split, and its copies follow it (a resized copy in train and its original in test would let the
    test score what the model memorised)."""
    members: dict[int, list[Item]] = {}
    units: list[Item] = []
    for it in items:
        g = groups.get(it.path)
        if g is None:
            units.append(it)
        elif g not in members:
            members[g] = [it]
            units.append(it)
        else:
            members[g].append(it)
    if all(len(m) == 1 for m in members.values()):
        return _split(items, fraction, seed, name)
    first = {m[0].path: m for m in members.values()}
    a, b = _split(units, fraction, seed, name)
    expand = lambda side: sorted((x for it in side for x in first.get(it.path, [it])), key=lambda it: it.path)  # noqa: E731
    return expand(a), expand(b)
