"""The ``headstart`` command: a thin layer where each subcommand is one library call.

Exit codes: 0 success; 1 some inputs failed (the rest were processed); 2 bad arguments or unusable input
(nothing was done); 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from ..errors import HeadstartError
from . import _classify, _data, _export, _extract, _models, _predict, _summary, _train

__all__ = ["main", "build_parser"]

_COMMANDS = (_models, _summary, _classify, _extract, _data, _train, _predict, _export)

EPILOG = """examples:
  headstart models                                  # what is available, and usable offline now
  headstart classify photo.jpg --top 3              # ImageNet labels with the offline Lite0 weights
  headstart summary vgg16 --no-top --input-shape 300,300
  headstart extract photos/ --out feats/            # features of every image, resumable
  headstart data elpv data/elpv                     # real demo data (solar cells)
  headstart train data/elpv --out runs/elpv         # auto: tries 4 strategies, keeps the best
  headstart predict runs/elpv cell.png              # use the trained model
  headstart export runs/elpv                        # ONNX file, parity-checked; predict then uses it

exit codes: 0 ok, 1 some inputs failed (others processed), 2 bad arguments, 130 interrupted.
Run `headstart COMMAND --help` for each command's options and examples."""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="headstart", description="Transfer learning for computer vision with ImageNet-pretrained networks.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"headstart {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # File names that are not valid UTF-8 come back out as the bytes they were, instead of crashing print().
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HeadstartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `headstart ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
