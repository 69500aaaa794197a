"""`headstart train DATA --out RUN`: train on the user's images; `auto` runs the strategies and keeps the best."""
from __future__ import annotations

import argparse
from dataclasses import fields

from rich.console import Console
from rich.table import Table

from ..train import STRATEGIES, TrainConfig, train
from ..train._strategies import check_applies
from ..config import read_config
from ._common import at_least, parse_shape, weights_arg

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
               "  headstart train photos/ --model vgg16 --strategy partial --unfreeze-from block5_conv1 --out runs/v\n"
               "  headstart train photos/ --out runs/b --config runs/a/train_config.json --seed 1   # repeat a run\n"
               "  headstart train data/elpv --out runs/elpv --resume          # after an interruption",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", help="folder of class folders (optionally train/val/test), or a CSV")
    p.add_argument("--out", "-o", required=True, help="run directory to write")
    p.add_argument("--config", metavar="FILE", help="settings from a JSON or TOML file (e.g. an earlier run's "
                                                    "train_config.json); flags given here override it")
    # Settings default to "not given" so that a --config file can supply them; TrainConfig holds the defaults.
    S = argparse.SUPPRESS
    g = p.add_argument_group("model")
    g.add_argument("--model", "-m", default=S, help=f"model name (default {_D.model}); see `headstart models`")
    g.add_argument("--weights", default=S, help="'imagenet' (default), 'none' for random init, or a .pth/.safetensors")
    g.add_argument("--strategy", "-s", choices=(*STRATEGIES, "auto"), default=S, help="default: auto")
    g.add_argument("--head", default=S, help=f"new head (default {_D.head!r}); e.g. flatten,dense:1024:relu")
    g.add_argument("--unfreeze-from", default=S, help="partial: first layer that trains (e.g. blocks.5, block5_conv1)")
    g.add_argument("--unfreeze-stages", type=at_least(1), default=S,
                   help=f"partial: train the last K stages (default {_D.unfreeze_stages})")
    g.add_argument("--input-shape", default=S, help="HEIGHT,WIDTH of the network input (default: the weights' size)")
    g = p.add_argument_group("optimization")
    g.add_argument("--epochs", type=at_least(1), default=S, help=f"max epochs for head/partial (default {_D.epochs})")
    g.add_argument("--finetune-epochs", type=at_least(1), default=S, help=f"max epochs for finetune (default {_D.finetune_epochs})")
    g.add_argument("--batch-size", type=at_least(1), default=S, help=f"default {_D.batch_size}")
    g.add_argument("--lr", type=float, default=S, help=f"head learning rate (default {_D.lr})")
    g.add_argument("--backbone-lr-mult", type=float, default=S,
                   help=f"backbone LR = lr × this (discriminative learning rates; default {_D.backbone_lr_mult})")
    g.add_argument("--label-smoothing", type=float, default=S, help=f"default {_D.label_smoothing}")
    g.add_argument("--augment", choices=("none", "light", "strong"), default=S,
                   help="augmentation (default: none for cached strategies, light for finetune); with head/partial "
                        "it trains on images instead of cached features")
    g.add_argument("--bn", choices=("frozen", "train"), default=S,
                   help="BatchNorm statistics when layers train on images (default frozen, Keras' advice)")
    g.add_argument("--patience", type=at_least(1), default=S, help=f"early-stopping patience in epochs (default {_D.patience})")
    g.add_argument("--balance", choices=("auto", "on", "off"), default=S,
                   help="class-weighted loss (auto: on when the largest class is > 1.5× the smallest)")
    g = p.add_argument_group("data and budget")
    g.add_argument("--val-split", type=float, default=S, help=f"default {_D.val_split}")
    g.add_argument("--test-split", type=float, default=S,
                   help=f"used when DATA has no test/ folder (default {_D.test_split})")
    g.add_argument("--seed", type=int, default=S, help=f"default {_D.seed}")
    g.add_argument("--budget", type=float, default=S, help=f"seconds for auto (default {_D.budget:.0f})")
    g.add_argument("--workers", type=at_least(0), default=S, help="worker processes for feature extraction (default: one per core)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its last epoch checkpoint (same arguments)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if "weights" in given:
        given["weights"] = weights_arg(given["weights"])
    if "input_shape" in given:
        given["input_shape"] = parse_shape(given["input_shape"])
    base = read_config(args.config, TrainConfig) if args.config else {}
    config = TrainConfig(**{**base, **given})
    check_applies(config.strategy, set(given) - {"strategy"})
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
