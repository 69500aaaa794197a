"""Training speed on this CPU (issue 11): headstart's fine-tuning loop vs a plain PyTorch loop on the same model.

Every layer of the model trains (``finetune``'s second stage), on the same ELPV cells, with the same
augmenting transform, loader (1 worker, as ``finetune`` uses), batch size, optimizer and loss. Measured side by
side in one run, alternating the variants (``--rounds``) so that drift in the machine's speed hits them all:
- ``plain``: the twenty-line loop a user writes (model.train(), AdamW, cross-entropy, step);
- ``headstart``: :func:`headstart.training._loop.fit`, one epoch, as ``finetune`` calls it (its validation of
  8 images included; batches and conv weights in channels_last, as since issue 11);
- ``plain + channels_last``: the plain loop with the model and every batch in channels_last memory format.
Prints img/s per variant (the best round) and the ratios to ``plain``.

    .venv/bin/python benchmarks/train_speed.py [--images 160] [--rounds 2] [--model lite0]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import headstart  # noqa: E402
from headstart.data import load_splits, make_elpv  # noqa: E402
from headstart.training import TrainConfig  # noqa: E402
from headstart.training._data import image_loader  # noqa: E402
from headstart.training._loop import fit  # noqa: E402


def _model(config: TrainConfig, n_classes: int):
    torch.manual_seed(0)
    model = headstart.create_model(config.model, include_top=False, head=config.head, classes=n_classes)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def plain(model, loader, channels_last: bool) -> int:
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    model.train()
    seen = 0
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
    return seen


def headstart_loop(model, loader, val_loader) -> int:
    fit(model, loader, val_loader, [{"params": list(model.parameters()), "lr": 1e-4}], epochs=1, progress=False,
        warmup_epochs=0.25, patience=2)
    return len(loader) * loader.batch_size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=160, help="training images per round (a multiple of the batch)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default="lite0")
    ap.add_argument("--data", default=None, help="ELPV folder (default: made in a temporary folder)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    root = Path(args.data or tempfile.mkdtemp(prefix="headstart-speed-"))
    if not (root / "labels.csv").is_file():
        make_elpv(root)
    splits = load_splits(root, val_split=0.15, test_split=0.15, seed=0)
    config = TrainConfig(model=args.model)
    classes = splits.classes
    probe = _model(config, len(classes))
    t_train = probe.preprocessing.train_transform("light")
    items = splits.train[: args.images]
    val = image_loader(splits.val[:8], classes, probe.preprocessing.transform(), 64, train=False, workers=1)

    def loader():
        return image_loader(items, classes, t_train, config.batch_size, train=True, seed=0, workers=1)

    variants = {"plain": lambda m: plain(m, loader(), False), "headstart": lambda m: headstart_loop(m, loader(), val),
                "plain + channels_last": lambda m: plain(m, loader(), True)}
    best: dict[str, float] = {}
    print(f"{args.model}, {len(items)} ELPV cells per round at {probe.preprocessing.input_size}, batch "
          f"{config.batch_size}, {torch.get_num_threads()} threads", flush=True)
    for r in range(args.rounds):
        for name, run in variants.items():
            model = _model(config, len(classes))
            t = time.perf_counter()
            n = run(model)
            rate = n / (time.perf_counter() - t)
            best[name] = max(best.get(name, 0.0), rate)
            print(f"round {r + 1}: {name:<22} {rate:6.2f} img/s", flush=True)
    print("\n| loop | train img/s (best round) | vs plain |\n|---|---:|---:|")
    for name, rate in best.items():
        print(f"| {name} | {rate:.2f} | {rate / best['plain']:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
