"""`headstart cache`: what is stored under $HEADSTART_HOME, and clearing it."""
from __future__ import annotations

import argparse

from ..cache import PARTS, cache_info, clear_cache


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cache", help="show or clear what headstart stores under $HEADSTART_HOME",
        description="Show the size of headstart's cache (downloaded weights, activations cached by train, ONNX "
                    "exports) or clear parts of it. Cleared activations and exports are recomputed when needed; "
                    "cleared weights are downloaded again.",
        epilog="examples:\n  headstart cache\n  headstart cache --clear activations onnx\n"
               "  headstart cache --clear all",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clear", nargs="+", metavar="PART", choices=(*PARTS, "all"),
                   help=f"parts to remove: {', '.join(PARTS)}, or all")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.clear:
        for e in clear_cache(args.clear):
            print(f"removed {e.part}: {e.files} files, {e.bytes / 2**20:.1f} MiB ({e.path})")
        return 0
    for e in cache_info():
        print(f"{e.part:<12} {e.files:>6} files {e.bytes / 2**20:>10.1f} MiB  {e.path}  ({PARTS[e.part]})")
    return 0
