"""``headstart data elpv DIR``: the PyPI ``elpv-dataset`` as a train/test folder of class folders.

Binary labels as in Deitsch et al. (2019): ``defective`` when the defect probability is ≥ 0.5, else ``functional``;
a stratified 75/25 train/test split with seed 0. Images are hard-linked (or copied) from the installed package
(CC BY-NC-SA 4.0), never committed to this repository.
"""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

from ..errors import HeadstartError

__all__ = ["make_elpv"]


def _package_dir() -> Path:
    try:
        import elpv_dataset
    except ImportError:
        raise HeadstartError("The ELPV images come from the PyPI package elpv-dataset: pip install elpv-dataset "
                             "(or pip install 'headstart[elpv]').") from None
    return Path(elpv_dataset.__file__).parent / "data"


def make_elpv(out: str | os.PathLike, *, test_size: float = 0.25, seed: int = 0) -> dict[str, int]:
    """Write ``out/{train,test}/{functional,defective}/cellNNNN.png`` and ``out/labels.csv``; return counts."""
    from sklearn.model_selection import train_test_split

    src = _package_dir()
    rows = []
    with open(src / "labels.csv") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                rows.append((parts[0], float(parts[1]), parts[2]))
    labels = ["defective" if p >= 0.5 else "functional" for _, p, _ in rows]
    train, test = train_test_split(list(range(len(rows))), test_size=test_size, random_state=seed, stratify=labels)
    split = {i: "train" for i in train} | {i: "test" for i in test}
    out = Path(out)
    counts: dict[str, int] = {}
    table = []
    for i, (rel, prob, kind) in enumerate(rows):
        dest = out / split[i] / labels[i] / Path(rel).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            try:
                os.link(src / rel, dest)  # no extra disk space on the same filesystem
            except OSError:
                shutil.copy2(src / rel, dest)
        key = f"{split[i]}/{labels[i]}"
        counts[key] = counts.get(key, 0) + 1
        table.append((f"{split[i]}/{labels[i]}/{Path(rel).name}", labels[i], split[i], prob, kind))
    with open(out / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split", "defect_probability", "cell_type"])
        w.writerows(table)
    return dict(sorted(counts.items()))
