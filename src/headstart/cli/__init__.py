"""The ``headstart`` command: a thin layer where each subcommand is one library call.

Exit codes, the same rule for every command: 0 success; 1 some inputs failed (each named on stderr; the rest were
processed); 2 bad arguments or unusable input (nothing was done); 3 an output could not be written (disk full,
read-only folder, no permission; earlier outputs are intact); 70 internal error (a bug: please report it; -v shows
the traceback); 130 interrupted.

Subcommand modules import only the standard library and the torch-free settings at module level; each ``run``
imports the library it calls. So ``headstart --help`` and argument errors answer without loading torch, and a
command whose work needs no torch (an ONNX export already cached) never loads it.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from typing import Sequence

from .._version import __version__
from ..errors import HeadstartError, use_cli_words
from ._common import add_verbose

__all__ = ["main", "build_parser"]

# command → the module that adds its parser, in --help order. Modules are imported only when their parser is built:
# running one command builds that command's parser alone (train's settings are not even imported by `classify`).
_COMMANDS = {"models": "_models", "summary": "_summary", "classify": "_classify", "extract": "_extract",
             "merge": "_merge", "data": "_data", "doctor": "_doctor", "train": "_train", "predict": "_predict", "evaluate": "_predict",
             "export": "_export", "cache": "_cache", "weights": "_weights", "explain": "_explain",
             "report": "_report", "serve": "_serve"}

EPILOG = """examples:
  headstart models                                  # what is available, and usable offline now
  headstart classify photo.jpg --top 3              # ImageNet labels with the offline Lite0 weights
  headstart summary vgg16 --weights none --no-top --input-shape 300,300   # the architecture, no download
  headstart extract photos/ --out feats/            # features of every image, resumable
  headstart data elpv data/elpv                     # real demo data (solar cells)
  headstart doctor data/elpv --out checks/          # label issues, duplicates, train/test leaks
  headstart train data/elpv --out runs/elpv         # auto: plans, tries 4 strategies, keeps the best
  headstart predict runs/elpv cell.png              # use the trained model
  headstart export runs/elpv                        # ONNX file, parity-checked; predict then uses it
  headstart serve runs/elpv                         # HTTP: /predict, /health, /metrics, a drop-an-image page
  headstart cache --clear activations onnx          # sizes of / clearing $HEADSTART_HOME
  headstart weights add vgg16-397923af.pth         # place downloaded weights on an offline machine

exit codes: 0 ok, 1 some inputs failed (others processed), 2 bad arguments, 3 cannot write output (disk full,
read-only, permission), 70 internal error (a bug; -v shows the traceback), 130 interrupted.
Run `headstart COMMAND --help` for each command's options and examples."""


_OS_HINTS = {errno.ENOSPC: "Free disk space or choose --out on another disk. ",
             errno.EDQUOT: "Free space within your quota or choose another --out. ",
             errno.EROFS: "The folder is on a read-only file system: choose another --out. ",
             errno.EACCES: "No permission to write there: choose another --out. "}


def _one_of_several(args: argparse.Namespace) -> None:
    """Under torchrun, rank 0 alone prints results and progress (errors still reach stderr from every rank), and
    `cuda` means each rank's own GPU."""
    from ..distributed import is_main, launched, use_local_gpu

    if not launched():
        return
    if args.command in ("train", "predict", "evaluate"):
        use_local_gpu()
    if not is_main():
        if hasattr(args, "quiet"):
            args.quiet = True
        sys.stdout = open(os.devnull, "w")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the arguments, only the named command's subparser is built (start-up time)."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="headstart", description="Transfer learning for computer vision with ImageNet-pretrained networks.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"headstart {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (also accepted after COMMAND)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    named = next((a for a in (argv or ()) if not a.startswith("-")), None)
    modules = [_COMMANDS[named]] if named in _COMMANDS else list(dict.fromkeys(_COMMANDS.values()))
    for name in modules:
        importlib.import_module(f".{name}", __name__).add_parser(sub)
    for command in sub.choices.values():  # -v works after the subcommand too: `headstart classify -v …`
        if "-v" not in command._option_string_actions:
            add_verbose(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):
        # File names that are not valid UTF-8 come back out as the bytes they were, instead of crashing print().
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="surrogateescape")
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and argument errors (2): a code, for callers of main()
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        _one_of_several(args)
        with use_cli_words():  # messages name flags (--weights none), not Python arguments (weights=None)
            return int(args.func(args) or 0)
    except HeadstartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `headstart ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # the file system refused (disk full, read-only): which file, why, how to fix
        where = f": {exc.filename}" if exc.filename else ""
        what = "cannot write output" if exc.errno in _OS_HINTS else "file system error"
        print(f"error: {what}{where}: {exc.strerror or exc}. "
              f"{_OS_HINTS.get(exc.errno, '')}Files written before are intact; an interrupted extract or train "
              f"continues where it stopped once the problem is fixed.", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not a user error: one clear line; the traceback with -v
        if args.verbose:
            raise
        print(f"error: internal error ({type(exc).__name__}: {str(exc)[:300]}). This is a bug in headstart; "
              f"rerun with -v for the traceback and report it. Finished outputs are intact.", file=sys.stderr)
        return 70
