"""`headstart classify IMAGE...`: top-k ImageNet labels per image."""
from __future__ import annotations

import argparse

from ._common import add_backend_arguments, add_model_arguments, at_least, print_results


def add_parser(sub) -> None:
    p = sub.add_parser(
        "classify", help="classify photos with a pretrained model (top-k ImageNet labels)",
        description="Classify images with an ImageNet-pretrained model. Unreadable files are reported on stderr "
                    "and the others are still classified (exit code 1 if any failed).",
        epilog="examples:\n  headstart classify dog.jpg cat.png\n  headstart classify *.jpg --top 1 --json\n"
               "  headstart classify photo.jpg --model efficientnet_lite0\n"
               "  headstart classify photo.jpg -v        # says which backend ran and why",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    add_model_arguments(p)
    p.add_argument("--top", type=at_least(1), default=5, help="labels per image (default 5)")
    p.add_argument("--batch-size", type=at_least(1), default=16, help="images per forward pass (default 16)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    add_backend_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference import classify

    results = classify(args.images, args.model, weights=args.weights, top=args.top, batch_size=args.batch_size,
                       backend=args.backend, device=args.device)
    return print_results(results, args.json)
