"""Issue 12: wall time of `headstart extract` in one process vs `torchrun --nproc-per-node=2`, side by side.

Same inputs, same settings, fresh $HEADSTART_HOME and --out each time; the two stores are checked byte-identical.
Usage: .venv/bin/python benchmarks/distributed.py [N_IMAGES] [MODEL]   (default 192 images, test_resnet)
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def _images(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (256, 320, 3), dtype=np.uint8)).save(d / f"{i:04d}.jpg", quality=90)


def _timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 192
    model = sys.argv[2] if len(sys.argv) > 2 else "test_resnet"
    flags = ["--model", model, "--weights", "none", "--backend", "torch", "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _images(tmp / "img", n)
        env = {**os.environ, "HEADSTART_HOME": str(tmp / "home")}
        one = _timed([sys.executable, "-m", "headstart", "extract", str(tmp / "img"), "--out", str(tmp / "one"),
                      *flags], env)
        two = _timed([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m",
                      "headstart", "extract", str(tmp / "img"), "--out", str(tmp / "two"), "--workers", "1",
                      *flags], env)
        same = all((tmp / "one" / f).read_bytes() == (tmp / "two" / f).read_bytes()
                   for f in ("features.npy", "index.csv"))
    print(f"{n} images, {model}, {os.cpu_count()} cores: 1 process (default workers) {one:.1f} s; "
          f"torchrun 2 ranks × 1 worker {two:.1f} s; stores byte-identical: {same}")


if __name__ == "__main__":
    main()
