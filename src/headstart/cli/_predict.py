"""`headstart predict RUN IMAGE...` and `headstart evaluate RUN DATA`: use a trained run."""
from __future__ import annotations

import argparse
import json
import sys

from ._common import add_backend_arguments, at_least, print_results


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="classify images with a trained run",
                       description="Predict the classes of images with a model trained by `headstart train`.",
                       epilog="examples:\n  headstart predict runs/elpv cell1.png cell2.png\n"
                              "  headstart predict runs/elpv *.png --json --top 2\n"
                              "  headstart export runs/elpv && headstart predict runs/elpv *.png  # ONNX Runtime",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top", type=at_least(1), default=1, help="classes per image (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--int8", action="store_true", help="use the run's int8 export (`headstart export RUN --int8`)")
    add_backend_arguments(p)
    p.set_defaults(func=run_predict)
    e = sub.add_parser("evaluate", help="score a trained run on labelled images it has not seen",
                       description="Accuracy, balanced accuracy, per-class precision/recall/F1 and the confusion "
                                   "matrix of a trained run on DATA (a folder of class folders — its test/ split "
                                   "if it has one — or a CSV path,label). Images the run trained or validated on "
                                   "(recognized by content) are left out, and the count is printed.",
                       epilog="examples:\n  headstart evaluate runs/elpv data/elpv --json\n"
                              "  headstart evaluate runs/elpv data/elpv/train --include-seen   # a training score",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("run", metavar="RUN")
    e.add_argument("data", metavar="DATA")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    e.add_argument("--include-seen", action="store_true",
                   help="also score images the run trained or validated on (labelled as such in the JSON)")
    add_backend_arguments(e)
    e.set_defaults(func=run_evaluate)


def run_predict(args: argparse.Namespace) -> int:
    from ..run import load

    backend = "int8" if args.int8 else args.backend
    return print_results(load(args.run).predict(args.images, top=args.top, backend=backend,
                                                device=args.device), args.json)


def _print_copies(m: dict) -> None:
    """The same scores without the near-identical copies of images the run saw, when there are any."""
    copies, rest = m.get("near_copies_of_seen"), m.get("without_near_copies")
    if not copies:
        return
    print(f"{len(copies)} of these images are near-identical copies (resized or re-encoded) of images this run "
          f"trained or validated on:")
    for c in copies[:5]:
        print(f"  {c['path']}  (a copy of a {c['copy_of_split']} image)")
    if len(copies) > 5:
        print(f"  … {len(copies) - 5} more (--json lists them all)")
    if rest["n"]:
        print(f"without them: accuracy {rest['accuracy']:.2%}  balanced accuracy {rest['balanced_accuracy']:.2%}  "
              f"(n={rest['n']})")
    else:
        print("without them nothing is left to score")


def run_evaluate(args: argparse.Namespace) -> int:
    from ..run import load

    m = load(args.run).evaluate(args.data, include_seen=args.include_seen, backend=args.backend, device=args.device)
    for s in m["skipped"]:
        print(f"error: {s['path']}: {s['reason']}", file=sys.stderr)
    if args.json:
        print(json.dumps(m, indent=2))
        return 1 if m["skipped"] else 0
    if m["excluded_seen"]:
        print(f"left out {m['excluded_seen']} images this run trained or validated on (--include-seen scores them)")
    seen = " (including images it trained on)" if args.include_seen else ""
    print(f"accuracy {m['accuracy']:.2%}  balanced accuracy {m['balanced_accuracy']:.2%}  (n={m['n']}){seen}")
    _print_copies(m)
    for c, v in m["per_class"].items():
        print(f"  {c:<20} precision {v['precision']:.3f}  recall {v['recall']:.3f}  f1 {v['f1']:.3f}  "
              f"support {v['support']}")
    print("confusion matrix (rows: true, columns: predicted; order " + ", ".join(m["classes"]) + "):")
    for row in m["confusion_matrix"]:
        print("  " + " ".join(f"{v:6d}" for v in row))
    return 1 if m["skipped"] else 0
