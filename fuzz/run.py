"""The long fuzz run (issue 6): ≥ 10,000 generated inputs per reader, zero crashes or hangs expected.

Run:   .venv/bin/python fuzz/run.py [--examples 10000] [--targets image,csv,config]
Prints, per target: inputs tried, how many were read / refused with the documented error, crashes, hangs,
seconds. A crash stops that target and prints the smallest failing input Hypothesis finds (then exit code 1).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings

sys.path.insert(0, str(Path(__file__).parent))
from targets import TARGETS, Hang, workdir  # noqa: E402


def run_target(name: str, examples: int) -> tuple[Counter, float, str | None]:
    strategy, check = TARGETS[name]
    counts: Counter = Counter()
    tmp = workdir()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              phases=[Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def prop(x):
        counts["inputs"] += 1
        try:
            counts[check(x, tmp)] += 1
        except Hang:
            counts["hangs"] += 1
            raise

    start = time.perf_counter()
    failure = None
    try:
        prop()
    except Exception as exc:  # noqa: BLE001 - report any crash with the minimal input Hypothesis found
        failure = f"{type(exc).__name__}: {exc}"
        counts["crashes"] += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts, time.perf_counter() - start, failure


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=10_000, help="generated inputs per target")
    ap.add_argument("--targets", default=",".join(TARGETS))
    args = ap.parse_args()
    print("| reader | inputs | read | refused (documented error) | crashes | hangs | seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    failed = False
    for name in args.targets.split(","):
        c, seconds, failure = run_target(name, args.examples)
        print(f"| {name} | {c['inputs']:,} | {c['read']:,} | {c['refused']:,} | {c['crashes']} | {c['hangs']} | "
              f"{seconds:.0f} |", flush=True)
        if failure:
            failed = True
            print(f"  {name}: {failure}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
