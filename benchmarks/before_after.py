"""Throughput of two source trees side by side, interleaved (A B A B …) so both see the same machine load.

    git archive OLD_COMMIT src | tar -x -C /tmp/old
    python benchmarks/before_after.py --old-src /tmp/old/src [--images 256 --rounds 3 --models lite0,resnet50]

Each round runs `headstart.extract(photos, out)` (defaults: backend auto, one worker per core) in a fresh process
for the old tree (PYTHONPATH) and the current one, after a warm-up that fills each tree's export cache. Prints
images/s per round and the median ratio new / old. Used for issue 10's "throughput unchanged or better".
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from extract import make_jpegs  # noqa: E402

RUN = ("import sys, headstart; headstart.extract(sys.argv[1], sys.argv[2], progress=False, "
       "**({'model': sys.argv[3], 'weights': None} if sys.argv[3] != 'lite0' else {}))")


def _run(src: str | None, photos: Path, out: Path, model: str, home: Path) -> float:
    env = {**os.environ, "HEADSTART_HOME": str(home)}
    if src:
        env["PYTHONPATH"] = src
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", RUN, str(photos), str(out), model], env=env, check=True,
                   capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-src", required=True, help="the src/ folder of the tree to compare against")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="lite0,resnet50")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        make_jpegs(photos, args.images)
        print(f"{args.images} JPEGs 500×375 → pooled features, end to end in a fresh process (images/s)\n")
        print("| model | round | old | new | new / old |\n|---|---:|---:|---:|---:|")
        for model in args.models.split(","):
            homes = {"old": tmp / f"home-old-{model}", "new": tmp / f"home-new-{model}"}
            srcs = {"old": args.old_src, "new": None}
            for side in ("old", "new"):  # warm-up: the ONNX export, measured once per tree
                _run(srcs[side], photos, tmp / f"warm-{side}-{model}", model, homes[side])
            ratios = []
            for r in range(args.rounds):
                speed = {}
                for side in (("old", "new") if r % 2 == 0 else ("new", "old")):
                    secs = _run(srcs[side], photos, tmp / f"{side}-{model}-{r}", model, homes[side])
                    speed[side] = args.images / secs
                ratios.append(speed["new"] / speed["old"])
                print(f"| {model} | {r + 1} | {speed['old']:.1f} | {speed['new']:.1f} | {ratios[-1]:.2f}× |")
            print(f"| {model} | median | | | **{statistics.median(ratios):.2f}×** |")


if __name__ == "__main__":
    main()
