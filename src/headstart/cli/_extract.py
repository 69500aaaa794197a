"""`headstart extract SOURCE --out DIR`: features of a layer for every image, saved to a resumable store."""
from __future__ import annotations

import argparse
import sys

from ..config import add_setting_arguments, settings_from_args
from ..features import ExtractConfig
from ._common import report_skipped


def add_parser(sub) -> None:
    p = sub.add_parser(
        "extract", help="save a layer's features for every image to a file (resumable, cached)",
        description="Run images through a pretrained network and save the output of one layer for each image to a "
                    "feature store (features.npy + index.csv + skipped.csv + meta.json). Rerunning the same command "
                    "continues an interrupted run, or does nothing if the store is up to date.",
        epilog="examples:\n"
               "  headstart extract photos/ --out feats/                      # pooled Lite0 features, 1280 each\n"
               "  headstart extract photos/ --model vgg16 --layer fc2 --out vgg_fc2/   # the seed's 4096 numbers\n"
               "  headstart extract list.csv --layer block5_pool --pooling none --model vgg16 --out csv_maps/\n"
               "  headstart extract --model vgg16 --layer list                 # valid layer names and shapes\n"
               "  headstart extract photos/ --out f/ --backend torch -v          # force PyTorch; -v logs the choice\n"
               "  headstart extract photos/ --out f/ --device cuda --gpu-decode  # GPU: bf16, nvJPEG decoding\n"
               "  torchrun --nproc-per-node=4 -m headstart extract photos/ --out f/   # 4 shards, merged by rank 0\n"
               "  headstart extract photos/ --out f/ --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT\n\n"
               "SOURCE: a folder (recursive; class subfolders become labels), a CSV with a 'path' column and an\n"
               "optional 'label' column, or image files. Unreadable images are named on stderr and listed in\n"
               "skipped.csv; the others are extracted (exit code 1 when any was skipped).\n"
               "The VGG16 examples need its ImageNet weights: downloaded on first use, or placed with\n"
               "`headstart weights add FILE` on a machine without network (or use --weights none).",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="*", metavar="SOURCE", help="folder, CSV, or image files")
    p.add_argument("--out", "-o", help="store directory to create or resume")
    add_setting_arguments(p, ExtractConfig, defaults=True)
    p.add_argument("--overwrite", action="store_true", help="replace a store made from other inputs/settings")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..features import extract

    config = ExtractConfig(**settings_from_args(args, ExtractConfig))
    if args.layer == "list":
        return _list_layers(config)
    if not args.source or not args.out:
        print("error: extract needs SOURCE and --out DIR (or --layer list)", file=sys.stderr)
        return 2
    fs = extract(args.source if len(args.source) > 1 else args.source[0], args.out, config,
                 overwrite=args.overwrite, progress=not args.quiet)
    if fs is None:  # an independent shard (--shard R/W) whose siblings are not all finished yet
        if not args.quiet:
            print(f"shard {config.shard} of {args.out} is finished; the last shard to finish merges them all "
                  f"(or run `headstart merge {args.out}` once every shard is done)")
        return 0
    from ..distributed import is_main

    if not is_main():  # under torchrun every rank returns the merged store; rank 0 alone reports it
        return 0
    _report(fs, args)
    return 1 if fs.stats.skipped else 0


def _list_layers(config: ExtractConfig) -> int:
    from rich.console import Console
    from rich.table import Table

    from ..features import FeatureModel

    fm = FeatureModel(config.model, weights=None, input_shape=config.input_shape)
    table = Table(title=f"layers of {fm.model.config.name} (use with --layer)")
    table.add_column("layer")
    table.add_column("output shape")
    for name, shape in fm.layer_table():
        table.add_row(name, str(shape))
    console = Console()
    if not console.is_terminal:  # logs and pipes: never truncate layer names to an 80-column guess
        console = Console(width=120)
    console.print(table)
    return 0


def _report(fs, args: argparse.Namespace) -> None:
    st = fs.stats
    if st.cached:
        skipped = [(s["path"], s["reason"]) for s in fs.skipped]
        st.skipped = len(skipped)
    else:
        skipped = st.skipped_reasons
    report_skipped(skipped, str(fs.root / "skipped.csv"))
    if args.quiet:
        return
    shape = "×".join(str(d) for d in fs.features.shape)
    if st.cached:
        print(f"{fs.root} is up to date: {len(fs)} features ({len(fs.skipped)} skipped) from an earlier run; "
              f"no model work done.")
        return
    resumed = f", resumed after {st.resumed_chunks} finished chunks" if st.resumed_chunks else ""
    skipped_note = f" ({st.skipped} skipped, listed in {fs.root / 'skipped.csv'})" if st.skipped else ""
    print(f"extracted {st.extracted} of {st.images} images{skipped_note} → {fs.root / 'features.npy'} [{shape} "
          f"{fs.meta['dtype']}] in {st.seconds:.1f} s ({st.images_per_second:.1f} img/s on "
          f"{fs.meta.get('backend', {}).get('name', 'torch')}{resumed})")
