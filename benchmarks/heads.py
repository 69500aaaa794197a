"""Training a head for 10 epochs: on cached features (headstart) vs the Keras way, side by side in one run.

The Keras way (the seed's "integrated feature extractor"): the frozen backbone sits inside the model and runs on
every training image in every epoch (here in plain PyTorch: DataLoader with 2 workers, batch 32, eval-mode
backbone, torch.no_grad for the frozen part). headstart extracts the features once (its fast extraction path,
cached on disk) and trains the same head on them. Same head (global average pooling → dropout 0.2 → Dense), same
optimizer, learning-rate schedule, epochs and seed; accuracy on the same validation images.

Run:   .venv/bin/python benchmarks/heads.py [--train 512] [--val 256] [--epochs 10]
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import torch

import headstart
from headstart.data import load_splits, make_elpv
from headstart.training import TrainConfig
from headstart.training._data import ImageDataset
from headstart.training._loop import fit


def keras_way(splits, config: TrainConfig, epochs: int) -> tuple[float, float]:
    torch.manual_seed(config.seed)
    model = headstart.create_model(config.model, include_top=False, head=config.head, classes=len(splits.classes))
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    t = model.preprocessing.transform()
    tr = torch.utils.data.DataLoader(ImageDataset(splits.train, splits.classes, t), batch_size=config.batch_size,
                                     shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    va = torch.utils.data.DataLoader(ImageDataset(splits.val, splits.classes, t), batch_size=64, num_workers=2)
    start = time.perf_counter()
    hist = fit(model, tr, va, [{"params": model.head.parameters(), "lr": config.lr}], epochs=epochs,
               patience=epochs + 1, progress=False, label_smoothing=config.label_smoothing)
    return time.perf_counter() - start, hist.best_val_acc


def cached_way(data: Path, splits, config: TrainConfig, epochs: int, home: Path) -> tuple[float, float, float]:
    os.environ["HEADSTART_HOME"] = str(home)
    start = time.perf_counter()
    r1 = headstart.train(data, home / "run1", config, strategy="head", epochs=epochs, patience=epochs + 1,
                         test_split=0.0, progress=False)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    headstart.train(data, home / "run2", config, strategy="head", epochs=epochs, patience=epochs + 1,
                    test_split=0.0, progress=False)
    return cold, time.perf_counter() - start, r1.val_accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=512)
    ap.add_argument("--val", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_elpv(tmp / "elpv")
        full = load_splits(tmp / "elpv", val_split=0.15)
        # A subset with fixed train/val folders, so both ways see exactly the same images.
        data = tmp / "subset"
        rng = random.Random(0)  # a seeded sample keeps both classes in their natural proportion
        for split, items in (("train", rng.sample(full.train, args.train)), ("val", rng.sample(full.val, args.val))):
            for it in items:
                dest = data / split / it.label / Path(it.path).name
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(it.path, dest)
        splits = load_splits(data)
        config = TrainConfig(balance="off", label_smoothing=0.1)
        cold, warm, acc_cached = cached_way(data, splits, config, args.epochs, tmp / "home")
        keras_s, acc_keras = keras_way(splits, config, args.epochs)
        print(f"ELPV subset: {len(splits.train)} train / {len(splits.val)} val images, Lite0, {args.epochs} epochs, "
              f"head {config.head!r}")
        print("\n| way | time (s) | val accuracy | speed-up vs Keras way |\n|---|---:|---:|---:|")
        print(f"| Keras way (frozen backbone on every image, every epoch) | {keras_s:.1f} | {acc_keras:.2%} | 1.0× |")
        print(f"| headstart head, features extracted in this run | {cold:.1f} | {acc_cached:.2%} | "
              f"{keras_s / cold:.1f}× |")
        print(f"| headstart head, features already cached | {warm:.1f} | {acc_cached:.2%} | {keras_s / warm:.1f}× |")
        print(f"\naccuracy difference: {abs(acc_cached - acc_keras) * 100:.2f} points")


if __name__ == "__main__":
    main()
