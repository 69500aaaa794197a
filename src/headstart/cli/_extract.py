"""`headstart extract SOURCE --out DIR`: features of a layer for every image, saved to a resumable store."""
from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from ..features import POOLING_MODES, ExtractConfig, FeatureModel, extract
from ._common import add_backend_arguments, at_least, add_model_arguments, parse_shape, weights_arg

MAX_SKIP_LINES = 20


def add_parser(sub) -> None:
    p = sub.add_parser(
        "extract", help="save a layer's features for every image to a file (resumable, cached)",
        description="Run images through a pretrained network and save the output of one layer for each image to a "
                    "feature store (features.npy + index.csv + skipped.csv + meta.json). Rerunning the same command "
                    "continues an interrupted run, or does nothing if the store is up to date.",
        epilog="examples:\n"
               "  headstart extract photos/ --out feats/                      # pooled Lite0 features, 1280 each\n"
               "  headstart extract photos/ --model vgg16 --layer fc2 --out vgg_fc2/   # the seed's 4096 numbers\n"
               "  headstart extract list.csv --layer block5_pool --pooling none --model vgg16 --out maps/\n"
               "  headstart extract --model vgg16 --layer list                 # valid layer names and shapes\n"
               "  headstart -v extract photos/ --out f/ --backend torch          # force PyTorch; -v logs the choice\n"
               "  headstart extract photos/ --out f/ --device cuda --gpu-decode  # GPU: bf16, nvJPEG decoding\n\n"
               "SOURCE: a folder (recursive; class subfolders become labels), a CSV with a 'path' column and an\n"
               "optional 'label' column, or image files. Unreadable images are listed in skipped.csv; the exit\n"
               "code is 1 only if no image at all could be extracted.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", nargs="*", metavar="SOURCE", help="folder, CSV, or image files")
    add_model_arguments(p)
    p.add_argument("--out", "-o", help="store directory to create or resume")
    p.add_argument("--layer", help="layer name (timm module or Keras name for VGG), or 'list' to show them; "
                                   "default: the pooled pre-classifier vector (VGG: fc2)")
    p.add_argument("--pooling", choices=POOLING_MODES, default="avg",
                   help="how a feature map is reduced: avg, max, avgmax (both, concatenated) or none (keep the "
                        "H×W×C map); default avg")
    p.add_argument("--input-shape", help="HEIGHT,WIDTH of the network input (default: the weights' size)")
    p.add_argument("--batch-size", type=at_least(1),
                   help="images per forward pass (default: 4 in each CPU worker; on a GPU, the largest that fits)")
    p.add_argument("--workers", type=at_least(0), help="processes that decode and run the network (default: one per "
                                                  "core; 0 runs everything in this process)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored precision")
    p.add_argument("--no-draft", dest="draft", action="store_false",
                   help="decode JPEGs at full size (default: reduced-size decoding where the features stay equal)")
    p.add_argument("--overwrite", action="store_true", help="replace a store made from other inputs/settings")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar and no summary line")
    add_backend_arguments(p)
    p.add_argument("--compile", action="store_true", help="torch.compile the network (torch backend, long GPU runs)")
    p.add_argument("--gpu-decode", action="store_true",
                   help="decode JPEGs on the GPU (nvJPEG) and resize there; with --device cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = ExtractConfig(model=args.model, layer=args.layer, pooling=args.pooling, weights=weights_arg(args.weights),
                           input_shape=parse_shape(args.input_shape), dtype=args.dtype, draft=args.draft,
                           batch_size=args.batch_size, workers=args.workers, backend=args.backend,
                           device=args.device, compile=args.compile, gpu_decode=args.gpu_decode)
    if args.layer == "list":
        return _list_layers(config)
    if not args.source or not args.out:
        print("error: extract needs SOURCE and --out DIR (or --layer list)", file=sys.stderr)
        return 2
    fs = extract(args.source if len(args.source) > 1 else args.source[0], args.out, config,
                 overwrite=args.overwrite, progress=not args.quiet)
    _report(fs, args)
    return 0 if len(fs) > 0 else 1


def _list_layers(config: ExtractConfig) -> int:
    fm = FeatureModel(config.model, weights=None, input_shape=config.input_shape)
    table = Table(title=f"layers of {fm.model.config.name} (use with --layer)")
    table.add_column("layer")
    table.add_column("output shape")
    for name, shape in fm.layer_table():
        table.add_row(name, str(shape))
    console = Console()
    (console if console.is_terminal else Console(width=120)).print(table)
    return 0


def _report(fs, args) -> None:
    st = fs.stats
    for path, reason in st.skipped_reasons[:MAX_SKIP_LINES]:
        print(f"skipped: {path}: {reason}", file=sys.stderr)
    if len(st.skipped_reasons) > MAX_SKIP_LINES:
        print(f"... and {len(st.skipped_reasons) - MAX_SKIP_LINES} more in {fs.root / 'skipped.csv'}",
              file=sys.stderr)
    if args.quiet:
        return
    shape = "×".join(str(d) for d in fs.features.shape)
    if st.cached:
        print(f"{fs.root} is up to date: {len(fs)} features ({len(fs.skipped)} skipped) from an earlier run; "
              f"no model work done.")
        return
    resumed = f", resumed after {st.resumed_chunks} finished chunks" if st.resumed_chunks else ""
    skipped = f" ({st.skipped} skipped, listed in {fs.root / 'skipped.csv'})" if st.skipped else ""
    print(f"extracted {st.extracted} of {st.images} images{skipped} → {fs.root / 'features.npy'} [{shape} "
          f"{fs.meta['dtype']}] in {st.seconds:.1f} s ({st.images_per_second:.1f} img/s on "
          f"{fs.meta.get('backend', {}).get('name', 'torch')}{resumed})")
