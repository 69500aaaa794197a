"""`headstart train DATA --out RUN`: train on the user's images; `auto` runs the strategies and keeps the best."""
from __future__ import annotations

import argparse

from ..config import add_setting_arguments, api_only_fields, settings_from_args
from ..training import AUTO_HELP, STRATEGIES, TrainConfig
from ._common import report_skipped


def _epilog() -> str:
    strategies = "\n".join(f"  {s.name:<9} {s.trains}; on {s.data}" for s in STRATEGIES.values())
    api_only = "".join(f"\n  {k}: {why}" for k, why in api_only_fields(TrainConfig).items()) or " none"
    return ("examples:\n"
            "  headstart train data/elpv --out runs/elpv                   # auto, Lite0\n"
            "  headstart train photos/ --strategy head --head flatten,dense:1024:relu --out runs/h\n"
            "  headstart train photos/ --strategy partial --unfreeze-from blocks.5 --out runs/p\n"
            "  headstart train photos/ --out runs/b --config runs/a/train_config.json --seed 1   # repeat a run\n"
            "  headstart train data/elpv --out runs/elpv --resume          # after an interruption\n"
            "  headstart train data/elpv --out runs/g --device cuda        # train on the GPU\n\n"
            f"strategies:\n{strategies}\n  auto      {AUTO_HELP}\n\n"
            f"settings without a flag (Python API only):{api_only}")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a classifier on your images (probe, head, partial, finetune or auto)",
        description="Train on a folder with one subfolder per class (or train/ val/ test/ subfolders, or a CSV "
                    "path,label). The default strategy 'auto' measures this machine, plans which of probe, head, "
                    "partial and finetune fit --budget seconds (printed; saved in metrics.json), stops those that "
                    "can no longer win, chooses on training images only, and scores the test split once.",
        epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", help="folder of class folders (optionally train/val/test), or a CSV")
    p.add_argument("--out", "-o", required=True, help="run directory to write")
    p.add_argument("--config", metavar="FILE", help="settings from a JSON or TOML file (e.g. an earlier run's "
                                                    "train_config.json); flags given here override it")
    # Flags default to "not given" so that a --config file can supply them; TrainConfig holds the defaults.
    add_setting_arguments(p, TrainConfig)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its last epoch checkpoint (same arguments)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..config import read_config
    from ..training import train

    given = settings_from_args(args, TrainConfig)
    base = read_config(args.config, TrainConfig) if args.config else {}
    config = TrainConfig(**{**base, **given})
    console = Console(stderr=True)
    result = train(args.data, args.out, config, progress=not args.quiet, resume=args.resume,
                   overwrite=args.overwrite, given=set(given),
                   log=lambda msg: console.print(f"[dim]{msg}[/dim]") if not args.quiet else None)
    _print_result(result, config)
    report_skipped(result.skipped)  # trained on the rest; exit 1 names them, as every command that reads images
    return 1 if result.skipped else 0


def _print_result(result, config: TrainConfig) -> None:
    from rich.console import Console
    from rich.table import Table

    metric = config.metric.replace("_", " ")
    table = Table(title=f"strategies, by {metric}: cross-validated on train + val where cheap (cv), else on the "
                        f"validation split")
    for col in ("strategy", metric, "time (s)", "notes"):
        table.add_column(col)
    key = f"val_{config.metric}"
    shown = ("strategy", "val_accuracy", key, "seconds", "cv_mean", "cv_std", "cv_folds")  # `cv` says them all
    for row in result.table:
        notes = ", ".join(f"{k}={v}" for k, v in row.items() if k not in shown)
        mark = " ← winner" if row["strategy"] == result.strategy else ""
        table.add_row(row["strategy"] + mark, f"{row[key]:.2%}", f"{row['seconds']:.0f}", notes)
    out = Console() if Console().is_terminal else Console(width=120)
    out.print(table)
    if result.test:
        t = result.test
        print(f"test accuracy ({result.strategy}): {t['accuracy']:.2%}  balanced accuracy: "
              f"{t['balanced_accuracy']:.2%}  (n={t['n']})")
    report = " report.html," if (result.run_dir / "report.html").is_file() else ""
    print(f"run saved to {result.run_dir} (model.safetensors, config.json, metrics.json,{report} "
          f"confusion_matrix.png, training_curves.png)")
