"""The doctor's checks at scale (issue 26): 100,000 images whose features are cached, ≤ 60 s and ≤ 2 GiB on 2 cores.

    python benchmarks/doctor_scale.py                 # 100,000 × 1,280 synthetic features, 10 classes
    python benchmarks/doctor_scale.py --images 20000  # the size where the exact neighbour search still runs

Synthetic stand-ins for what the feature store and the hash pass hand the checks: Lite0-sized float32 embeddings
(10 Gaussian classes, 10 % of labels flipped), 64-bit perceptual hashes and 16×16 RGB signatures (1 % of the images
planted as copies of others). Timed: out-of-fold probabilities, label issues, the neighbour search (PCA
projection above ``EXACT_MAX``), outliers, hash pairs and copy groups. Peak memory is the process's maximum RSS
(``resource.getrusage``), features included. Results: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def synthetic(n: int, dim: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, n)
    x = np.empty((n, dim), np.float32)
    for a in range(0, n, 10_000):  # in chunks: no float64 temporary of the whole matrix
        b = min(n, a + 10_000)
        x[a:b] = centres[y[a:b]] * 0.6 + rng.standard_normal((b - a, dim), dtype=np.float32)
    noisy = y.copy()
    flip = rng.choice(n, n // 10, replace=False)
    noisy[flip] = (y[flip] + rng.integers(1, classes, len(flip))) % classes
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64)
    sig = rng.standard_normal((n, 768), dtype=np.float32)
    copies = rng.choice(n, n // 100, replace=False)
    hashes[copies[1::2]] = hashes[copies[::2]] ^ np.uint64(0b101)  # 2 bits apart
    sig[copies[1::2]] = sig[copies[::2]] + 0.02 * rng.standard_normal((len(copies[1::2]), 768), dtype=np.float32)
    sig -= sig.mean(axis=1, keepdims=True)
    sig /= np.linalg.norm(sig, axis=1, keepdims=True)
    return x, noisy, flip, hashes, sig, len(copies[1::2])


def main(argv=None) -> int:
    from headstart.data import ImageStats, copy_groups
    from headstart.doctor import label_issues, neighbours, oof_probabilities, outliers, projection

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args(argv)
    x, y, flip, hashes, sig, planted = synthetic(args.images, args.dim, args.classes)
    times = {}
    t = time.perf_counter()
    z = projection(x)
    times["PCA (shared by both checks)"] = time.perf_counter() - t
    t = time.perf_counter()
    probs, c, _ = oof_probabilities(x, y, projected=z)
    times["out-of-fold probabilities"] = time.perf_counter() - t
    t = time.perf_counter()
    issues = label_issues(y, probs)
    times["label issues"] = time.perf_counter() - t
    t = time.perf_counter()
    _, sims = neighbours(x, k=10, projected=z)
    times["neighbours (k=10)"] = time.perf_counter() - t
    t = time.perf_counter()
    far = outliers(sims)
    times["outliers"] = time.perf_counter() - t
    t = time.perf_counter()
    stats = [ImageStats(int(h), s, 64, 64, 30.0, f"{i:064x}") for i, (h, s) in enumerate(zip(hashes, sig))]
    _, groups = copy_groups(stats)
    times["copy groups (hash pairs + signatures)"] = time.perf_counter() - t
    total = sum(times.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    found = len(set(i["index"] for i in issues) & set(flip.tolist()))
    print(f"{args.images:,} images × {args.dim} features, {args.classes} classes (C={c})")
    for k, v in times.items():
        print(f"  {k:<40} {v:6.1f} s")
    print(f"  {'total':<40} {total:6.1f} s   peak RSS {peak:.2f} GiB")
    print(f"label issues {len(issues):,} for {len(flip):,} flips (found {found / len(flip):.1%}); copy groups "
          f"{len(groups):,} for {planted:,} planted; outliers {len(far)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
