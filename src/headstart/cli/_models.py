"""`headstart models`: the zoo, and which weights are usable offline right now."""
from __future__ import annotations

import argparse


_WHERE = {"package": "yes (pip package)", "cache": "yes (cache)", "download": "no - downloads on first use",
          "none": "no - install its package or pass weights=PATH"}


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list available models and whether their weights work offline",
                       description="List headstart's models. Any timm architecture name works too "
                                   "(with weights=none or a local file).",
                       epilog="example:\n  headstart models 'efficientnet*'",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern on names and aliases")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..models import list_models, weights_available

    console = Console()
    if not console.is_terminal:  # logs and pipes: never truncate names to an 80-column guess
        console = Console(width=140)
    table = Table(title="headstart models")
    for col in ("name", "aliases", "timm architecture", "input", "ImageNet weights offline now"):
        table.add_column(col, no_wrap=col != "ImageNet weights offline now")
    for spec in list_models(args.pattern):
        size = spec.weights.preprocessing.input_size if spec.weights else ("?", "?")
        table.add_row(spec.name, ", ".join(spec.aliases), spec.arch, f"{size[0]}×{size[1]}",
                      _WHERE[weights_available(spec)])
    console.print(table)
    return 0
