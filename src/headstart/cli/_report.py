"""`headstart report RUN [DATA]`: one self-contained HTML page about a trained run."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="an HTML report of a run: metrics, confusion matrix with images, Grad-CAM, calibration",
        description="Write RUN/report.html: strategy table, test metrics per class, a confusion matrix whose cells "
                    "list their images, training curves, the most confident mistakes and least confident correct "
                    "calls with Grad-CAM overlays, a reliability plot and the run's settings. One file, images "
                    "embedded, viewable offline. Per-image predictions come from RUN/test_predictions.json, or "
                    "are computed on DATA (DATA/test if it exists).",
        epilog="examples:\n  headstart report runs/elpv\n  headstart report runs/elpv data/elpv --max-images 400",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("data", nargs="?", metavar="DATA", help="labelled images, when the run has no test predictions")
    p.add_argument("--max-images", type=int, default=200, metavar="N",
                   help="thumbnails in the confusion-matrix lists (default 200; the rest listed by path)")
    p.add_argument("--out", metavar="FILE", help="where to write (default RUN/report.html)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from headstart.report import write_report

    path = write_report(args.run, args.data, max_images=args.max_images, out=args.out)
    print(f"wrote {path}")
    return 0
