"""`headstart cache`: what is stored under $HEADSTART_HOME, its size cap, and clearing it."""
from __future__ import annotations

import argparse

from ..cache import CAPPED_PARTS, PARTS, cache_info, cache_max, clear_cache, format_bytes


def add_parser(sub) -> None:
    p = sub.add_parser(
        "cache", help="show or clear what headstart stores under $HEADSTART_HOME",
        description="Show the size of headstart's cache (downloaded weights, activations cached by train, ONNX "
                    "exports) and its cap, or clear parts of it. Activations and exports are capped by "
                    "HEADSTART_CACHE_MAX (default 4G; e.g. 500M, 10G, or none): the least recently used are "
                    "removed when a new one would exceed it. Downloaded weights are never removed automatically. "
                    "Cleared activations and exports are recomputed when needed; cleared weights are downloaded "
                    "again.",
        epilog="examples:\n  headstart cache\n  headstart cache --clear activations onnx\n"
               "  headstart cache --clear all\n  HEADSTART_CACHE_MAX=10G headstart extract photos/ --out feats/",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clear", nargs="+", metavar="PART", choices=(*PARTS, "all"),
                   help=f"parts to remove: {', '.join(PARTS)}, or all")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.clear:
        for e in clear_cache(args.clear):
            print(f"removed {e.part}: {e.files} files, {e.bytes / 2**20:.1f} MiB ({e.path})")
        return 0
    cap = cache_max()  # a bad HEADSTART_CACHE_MAX is an error here (exit 2), before anything is printed
    entries = cache_info()
    for e in entries:
        print(f"{e.part:<12} {e.files:>6} files {e.bytes / 2**20:>10.1f} MiB  {e.path}  ({PARTS[e.part]})")
    held = sum(e.bytes for e in entries if e.part in CAPPED_PARTS)
    limit = f"{format_bytes(cap)} (HEADSTART_CACHE_MAX)" if cap else "none (HEADSTART_CACHE_MAX=none)"
    print(f"cap: {limit} on {' + '.join(CAPPED_PARTS)}, which hold {format_bytes(held)}; least recently used "
          f"removed first; weights are never removed automatically")
    return 0
