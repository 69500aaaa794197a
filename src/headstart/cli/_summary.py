"""`headstart summary MODEL`: the Keras-style layer table."""
from __future__ import annotations

import argparse

from ..config import parse_shape
from ._common import add_model_arguments, at_least


def add_parser(sub) -> None:
    p = sub.add_parser(
        "summary", help="Keras-style table of layers, output shapes and parameters",
        description="Print the layer table of a model: name (type), output shape, parameters, and totals.",
        epilog="examples:\n  headstart summary vgg16 --weights none\n"
               "  headstart summary vgg16 --weights none --no-top --input-shape 300,300 "
               "--head flatten,dense:1024:relu --classes 10\n  headstart summary lite0 --no-top --pooling avg",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="model name, e.g. vgg16, lite0, resnet50 or any timm name")
    add_model_arguments(p, model=False)
    p.add_argument("--no-top", dest="include_top", action="store_false", help="drop the classifier (include_top=False)")
    p.add_argument("--input-shape", type=parse_shape, metavar="H,W", help="HEIGHT,WIDTH, e.g. 300,300")
    p.add_argument("--pooling", choices=("avg", "max"), help="global pooling after the features (with --no-top)")
    p.add_argument("--classes", type=at_least(1), default=1000, help="number of classes of the top (default 1000)")
    p.add_argument("--head", help="new head with --no-top, e.g. 'flatten,dense:1024:relu'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..models import create_model

    model = create_model(args.model, weights=args.weights, include_top=args.include_top,
                         input_shape=args.input_shape, pooling=args.pooling, classes=args.classes,
                         head=args.head)
    model.summary()
    return 0
