"""`headstart train DATA --out RUN`: train on the user's images; `auto` runs the strategies and keeps the best."""
from __future__ import annotations

import argparse
from dataclasses import fields

from rich.console import Console
from rich.table import Table

from ..train import STRATEGIES, TrainConfig, train
from ._common import add_model_arguments, parse_shape, weights_arg

_D = TrainConfig()


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a classifier on your images (probe, head, partial, finetune or auto)",
        description="Train on a folder with one subfolder per class (or train/ val/ test/ subfolders, or a CSV "
                    "path,label). The default strategy 'auto' runs probe, head, partial and finetune within "
                    "--budget seconds, chooses on the validation split, and scores the test split once.",
        epilog="examples:\n"
               "  headstart train data/elpv --out runs/elpv                   # auto, Lite0\n"
               "  headstart train photos/ --strategy head --head flatten,dense:1024:relu --out runs/h\n"
               "  headstart train photos/ --strategy partial --unfreeze-from blocks.5 --out runs/p\n"
               "  headstart train photos/ --model vgg16 --strategy partial --unfreeze-from block5_conv1 --out runs/v",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", help="folder of class folders (optionally train/val/test), or a CSV")
    p.add_argument("--out", "-o", required=True, help="run directory to write")
    add_model_arguments(p)
    p.add_argument("--strategy", "-s", choices=(*STRATEGIES, "auto"), default="auto", help="default: auto")
    p.add_argument("--head", default=_D.head, help=f"new head (default {_D.head!r}); e.g. flatten,dense:1024:relu")
    p.add_argument("--unfreeze-from", help="partial: first layer that trains (e.g. blocks.5, block5_conv1)")
    p.add_argument("--unfreeze-stages", type=int, default=_D.unfreeze_stages,
                   help=f"partial: train the last K stages (default {_D.unfreeze_stages})")
    p.add_argument("--input-shape", help="HEIGHT,WIDTH of the network input (default: the weights' size)")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=int, default=_D.epochs, help=f"max epochs for head/partial (default {_D.epochs})")
    g.add_argument("--finetune-epochs", type=int, default=_D.finetune_epochs, help="max epochs for finetune")
    g.add_argument("--batch-size", type=int, default=_D.batch_size)
    g.add_argument("--lr", type=float, default=_D.lr, help=f"head learning rate (default {_D.lr})")
    g.add_argument("--backbone-lr-mult", type=float, default=_D.backbone_lr_mult,
                   help="backbone LR = lr × this (discriminative learning rates)")
    g.add_argument("--label-smoothing", type=float, default=_D.label_smoothing)
    g.add_argument("--augment", choices=("none", "light", "strong"),
                   help="augmentation (default: none for cached strategies, light for finetune); with head/partial "
                        "it trains on images instead of cached features")
    g.add_argument("--bn", choices=("frozen", "train"), default=_D.bn,
                   help="BatchNorm statistics when layers train on images (default frozen, Keras' advice)")
    g.add_argument("--patience", type=int, default=_D.patience, help="early-stopping patience in epochs")
    g.add_argument("--balance", choices=("auto", "on", "off"), default="auto",
                   help="class-weighted loss (auto: on when the largest class is > 1.5× the smallest)")
    g = p.add_argument_group("data and budget")
    g.add_argument("--val-split", type=float, default=_D.val_split)
    g.add_argument("--test-split", type=float, default=_D.test_split, help="used when DATA has no test/ folder")
    g.add_argument("--seed", type=int, default=_D.seed)
    g.add_argument("--budget", type=float, default=_D.budget, help="seconds for auto (default %(default)s)")
    g.add_argument("--workers", type=int, help="worker processes for feature extraction (default: one per core)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its last epoch checkpoint (same arguments)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values.update(weights=weights_arg(args.weights), input_shape=parse_shape(args.input_shape))
    config = TrainConfig(**values)
    console = Console(stderr=True)
    result = train(args.data, args.out, config, progress=not args.quiet, resume=args.resume,
                   log=lambda msg: console.print(f"[dim]{msg}[/dim]") if not args.quiet else None)
    table = Table(title="strategies (chosen on the validation split)")
    for col in ("strategy", "val accuracy", "time (s)", "notes"):
        table.add_column(col)
    for row in result.table:
        notes = ", ".join(f"{k}={v}" for k, v in row.items() if k not in ("strategy", "val_accuracy", "seconds"))
        mark = " ← winner" if row["strategy"] == result.strategy else ""
        table.add_row(row["strategy"] + mark, f"{row['val_accuracy']:.2%}", f"{row['seconds']:.0f}", notes)
    out = Console() if Console().is_terminal else Console(width=120)
    out.print(table)
    if result.test:
        t = result.test
        print(f"test accuracy ({result.strategy}): {t['accuracy']:.2%}  balanced accuracy: "
              f"{t['balanced_accuracy']:.2%}  (n={t['n']})")
    print(f"run saved to {result.run_dir} (model.safetensors, config.json, metrics.json, confusion_matrix.png, "
          f"training_curves.png)")
    return 0
