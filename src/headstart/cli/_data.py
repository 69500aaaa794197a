"""`headstart data elpv DIR`: real demo data as a train/test folder."""
from __future__ import annotations

import argparse



def add_parser(sub) -> None:
    p = sub.add_parser("data", help="prepare a real dataset as a folder of class folders",
                       description="Prepare a dataset for `headstart train`.",
                       epilog="example:\n  headstart data elpv data/elpv    # 2,624 solar-cell images: functional / "
                              "defective,\n                                    # stratified 75/25 train/test, seed 0",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=("elpv",), help="elpv: electroluminescence solar cells (pip package "
                                                   "elpv-dataset, CC BY-NC-SA 4.0)")
    p.add_argument("out", metavar="DIR", help="folder to create")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import make_elpv

    counts = make_elpv(args.out)
    total = sum(counts.values())
    print(f"wrote {total:,} images to {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"labels with the original defect probability and cell type: {args.out}/labels.csv")
    return 0
