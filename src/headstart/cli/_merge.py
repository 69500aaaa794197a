"""`headstart merge OUT`: join the finished shards of a sharded extraction into the ordinary feature store."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "merge", help="join the shards of a sharded extraction (torchrun, --shard R/W) into one store",
        description="Check that the shards in OUT/shards tile OUT/plan.json exactly (every shard finished, none "
                    "missing, overlapping or from another plan) and concatenate them into OUT/features.npy, "
                    "index.csv, skipped.csv and meta.json. Extraction runs this by itself (rank 0 under torchrun; "
                    "the last shard to finish with --shard); run it by hand after fixing a refused merge.",
        epilog="examples:\n  headstart merge feats/\n\n"
               "The merged store is byte-identical to a single-process extraction of the same inputs.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="OUT", help="the --out folder of the sharded extraction")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..features import merge

    fs = merge(args.out)
    print(f"{fs.root}: {len(fs)} features ({len(fs.skipped)} skipped) from {len(fs.meta.get('shards', []))} shards "
          f"→ {fs.root / 'features.npy'}")
    return 0
