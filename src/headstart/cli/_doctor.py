"""`headstart doctor DATA`: label issues, duplicates, train/test leakage and unusable images, before training."""
from __future__ import annotations

import argparse
import json
import sys

from ..config import add_setting_arguments, settings_from_args
from ..doctor import CSV_NAME, DoctorConfig

SHOWN = 10  # findings of each kind printed in the table (all of them are in doctor.csv and --json)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "doctor", help="find mislabelled images, duplicates, train/test leaks and unusable images",
        description="Check a labelled data set before trusting an accuracy. Label issues come from out-of-fold "
                    "probabilities of a cross-validated probe on the cached features (confident learning); "
                    "duplicates from SHA-256 (exact) and perceptual hash + embedding neighbours confirmed on "
                    "thumbnails (near: resized or re-encoded copies), within and across train/val/test; outliers "
                    "from neighbour distances; tiny, blank and extreme-aspect images from their pixels. Your "
                    "files are only read; the findings go to OUT/doctor.csv.",
        epilog="examples:\n"
               "  headstart doctor data/elpv --out checks/           # a table of findings; checks/doctor.csv\n"
               "  headstart doctor data/elpv --out checks/ --json    # one JSON object on stdout\n"
               "  headstart train data/elpv --exclude checks/doctor.csv --out runs/clean   # train without them\n\n"
               "DATA: the forms `train` takes (class folders, train/val/test folders, or a CSV path,label[,split]);\n"
               "with the same split settings doctor reads the feature store train uses, so either one run first\n"
               "makes the other cheaper.\n"
               "doctor.csv: one row per finding and image; the 'action' column says what `train --exclude` drops\n"
               "(label issues, unusable and unreadable images, every copy of a duplicate group but one).\n\n"
               "exit codes: 0 no findings, 1 findings (or unreadable images), 2 bad input, as the other commands.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", metavar="DATA", help="folder of class folders (optionally train/val/test), or a CSV")
    p.add_argument("--out", "-o", default=".", help=f"folder for {CSV_NAME} (default: the current folder)")
    p.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    add_setting_arguments(p, DoctorConfig, defaults=True)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..doctor import check

    config = DoctorConfig(**settings_from_args(args, DoctorConfig))
    report = check(args.data, config, progress=not args.quiet and not args.json)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = report.write_csv(out / CSV_NAME)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print(report, csv_path)
    return 1 if report.found_issues else 0


def _print(report, csv_path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console() if Console().is_terminal else Console(width=140)
    counts = Table(title=f"{report.images} images: classes")
    for col in ("class", "train", "val", "test", "total"):
        counts.add_column(col)
    for name, c in report.classes.items():
        counts.add_row(name, *(str(c[k]) for k in ("train", "val", "test", "total")))
    console.print(counts)
    sections = [("label issues (given → suggested, score)", report.label_issues,
                 lambda d: (d["path"], f"{d['label']} → {d['suggested']}", f"{d['score']:.3f}")),
                ("duplicates", report.duplicates,
                 lambda d: (", ".join(d["paths"]), d["kind"], "+".join(d["splits"]))),
                ("outliers and unusable images", report.outliers, lambda d: (d["path"], d["kind"], d["detail"])),
                ("unreadable", report.unreadable, lambda d: (d["path"], "", d["error"]))]
    for title, found, row in sections:
        if not found:
            continue
        t = Table(title=f"{title}: {len(found)}" + (f" (first {SHOWN})" if len(found) > SHOWN else ""))
        for col in ("image(s)", "", ""):
            t.add_column(col)
        for d in found[:SHOWN]:
            t.add_row(*row(d))
        console.print(t)
    leaks = report.leaks
    print(f"label issues {len(report.label_issues)}, duplicate groups {len(report.duplicates)} "
          f"({len(leaks)} across splits), outliers/unusable {len(report.outliers)}, unreadable "
          f"{len(report.unreadable)}; out-of-fold probe accuracy {report.probe.get('oof_accuracy', 0):.2%}")
    print(f"every finding: {csv_path}  (train without them: headstart train DATA --exclude {csv_path} --out RUN)",
          file=sys.stderr if not report.found_issues else sys.stdout)
