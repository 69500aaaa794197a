"""Where GPU extraction time goes: start-up vs steady state, and the main process's profile (issue 5's GPU figures).

    python benchmarks/profile_extract.py --images 16384 --model lite0      # on a machine with CUDA

For each decoding path (CPU workers, nvJPEG on the GPU): ``headstart.extract`` of the first quarter of the JPEGs
and of all of them, in fresh output folders after one warm-up. The difference of the two times gives the
steady-state rate (start-up — building the model, starting the workers, the first batches — cancels out). Then
the largest run once more under cProfile: the main process's top functions by own time, to show whether it waits
on the workers, the GPU or itself.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import headstart  # noqa: E402
from extract import make_jpegs_parallel  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=16384)
    ap.add_argument("--model", default="lite0")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--top", type=int, default=18)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["HEADSTART_HOME"] = str(tmp / "home")
        t = time.perf_counter()
        paths = make_jpegs_parallel(tmp / "jpeg", args.images)
        print(f"{len(paths)} JPEGs 500×375 made in {time.perf_counter() - t:.0f} s", flush=True)
        kw = dict(model=args.model, device=args.device, backend="torch", progress=False)
        gpu = {"gpu_decode": True} if args.device.startswith("cuda") else {}  # nvJPEG needs CUDA
        for label, extra in (("CPU decode", {}), ("GPU decode", gpu))[:1 + bool(gpu)]:
            headstart.extract(paths[:512], tmp / f"warm-{len(extra)}", **kw, **extra)
            times = {}
            for n in (len(paths) // 4, len(paths)):
                t = time.perf_counter()
                headstart.extract(paths[:n], tmp / f"{n}-{len(extra)}", **kw, **extra)
                times[n] = time.perf_counter() - t
            (n1, t1), (n2, t2) = times.items()
            print(f"{label}: {n1} images {t1:.2f} s ({n1 / t1:.0f} img/s), {n2} images {t2:.2f} s "
                  f"({n2 / t2:.0f} img/s); steady state {(n2 - n1) / (t2 - t1):.0f} img/s, start-up "
                  f"≈ {t1 - n1 * (t2 - t1) / (n2 - n1):.2f} s", flush=True)
        prof = cProfile.Profile()
        prof.enable()
        headstart.extract(paths, tmp / "profiled", **kw, **gpu)
        prof.disable()
        print(f"\nmain process, {'GPU' if gpu else 'CPU'} decode, {len(paths)} images, top {args.top} by own time:")
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
