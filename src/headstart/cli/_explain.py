"""`headstart explain RUN|--model NAME IMAGE ...`: Grad-CAM overlays as PNG files."""
from __future__ import annotations

import argparse
import os
import sys


def add_parser(sub) -> None:
    p = sub.add_parser(
        "explain", help="Grad-CAM: where in each image the model found its evidence (PNG overlays)",
        description="Draw Grad-CAM class-activation maps: for each image, the image and its heat map side by side "
                    "with the explained class and its probability. Explains a run trained by `headstart train` "
                    "(first argument RUN) or an ImageNet model (--model). Default layer: the model's last "
                    "convolutional feature map; --layer takes the names `extract --layer` takes.",
        epilog="examples:\n  headstart explain runs/elpv cell1.png cell2.png --out cams/\n"
               "  headstart explain photo.jpg --model lite0 --top 3\n"
               "  headstart explain photo.jpg --model vgg16 --layer block5_conv3 --class tabby",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_IMAGE",
                   help="RUN then images; or only images with --model")
    p.add_argument("--model", metavar="NAME", help="explain a pretrained model (e.g. lite0) instead of a run")
    p.add_argument("--weights", default="imagenet", metavar="W",
                   help="with --model: imagenet (default), none, or a .pth/.safetensors file")
    p.add_argument("--top", type=int, default=1, metavar="K", help="explain the K most probable classes (default 1)")
    p.add_argument("--class", dest="target", metavar="NAME", help="explain this class instead of the top ones")
    p.add_argument("--layer", metavar="NAME", help="layer to explain (default: last convolutional feature map)")
    p.add_argument("--out", default="explanations", metavar="DIR", help="output folder (default ./explanations)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import headstart
    from headstart.explain import explain, save_overlays

    if args.top < 1:
        raise headstart.HeadstartError(f"--top must be ≥ 1; received {args.top}.")
    if args.model:
        weights = None if args.weights.lower() == "none" else args.weights
        model, images = headstart.create_model(args.model, weights=weights), args.inputs
    else:
        if len(args.inputs) < 2 or not os.path.isdir(args.inputs[0]):
            raise headstart.HeadstartError(
                f"Expected RUN (a folder written by `headstart train`) followed by images, or images with --model "
                f"NAME; received {args.inputs[0]!r}{' only' if len(args.inputs) < 2 else ', not a folder'}.")
        model, images = headstart.load(args.inputs[0]).model, args.inputs[1:]
    results = explain(model, images, target=args.target, top=args.top, layer=args.layer)
    for path in save_overlays(results, args.out):
        print(f"wrote {path}")
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"{r.path}: {r.error}", file=sys.stderr)
    return 1 if failed else 0
