"""`make bench`: every speed figure of issue 5, measured side by side in one run on this machine.

For Lite0 (offline ImageNet weights) and ResNet50 (random weights: the same computation, no download), end to end
from JPEG files to features:
  seed       the seed's loop: one image at a time, resized to 224×224, model(x)
  plain      a plain timm + DataLoader script (timm transforms, 2 workers, batch 32, torch.no_grad)
  torch      `headstart extract --backend torch`
  default    `headstart extract` (backend auto: ONNX Runtime when it is installed, parity-checked and faster)
  ceiling    eager PyTorch on random tensors already in memory (channels_last, batch 32, every core): what
             PyTorch can compute with no I/O at all
then the cache re-run speed-up (the same extract again), head training on cached features vs the Keras way,
and peak memory of a long extraction.

Run:   .venv/bin/python benchmarks/bench.py [--images 256] [--rss 2000] [--head-train 256]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import headstart  # noqa: E402
from extract import make_jpegs, make_jpegs_parallel, parity, peak_memory_mb, run_plain, run_seed  # noqa: E402

MODELS = {  # headstart name → (timm name, weights used)
    "lite0": ("tf_efficientnet_lite0", "imagenet"),
    "resnet50": ("resnet50", None),
}


def eager_ceiling(timm_name: str, seconds: float = 6.0) -> float:
    """Eager PyTorch, channels_last, batch 32, all cores, random tensors: compute only."""
    import timm

    torch.set_num_threads(os.cpu_count() or 1)
    net = timm.create_model(timm_name, num_classes=0).eval().to(memory_format=torch.channels_last)
    x = torch.randn(32, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        net(x)
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            net(x)
            n += len(x)
    return n / (time.perf_counter() - t)


def headstart_extract(paths, out: Path, **kw) -> tuple[float, headstart.FeatureSet, float]:
    """(images/s end to end incl. building the model, the store, seconds)."""
    t = time.perf_counter()
    fs = headstart.extract(paths, out, progress=False, **kw)
    s = time.perf_counter() - t
    return len(paths) / s, fs, s


def throughput(tmp: Path, paths: list[Path], model: str) -> dict:
    timm_name, weights = MODELS[model]
    kw = dict(model=model, weights=weights)
    # Warm-ups: page cache, and the one-time ONNX export (cached; a user pays it once per model and input size).
    headstart.extract(paths[:16], tmp / f"warm-{model}", progress=False, **kw)
    r = {"seed": run_seed(paths[:64], model, weights), "plain": run_plain(paths, timm_name)}
    r["torch"], fs_torch, _ = headstart_extract(paths, tmp / f"{model}-torch", backend="torch", **kw)
    r["default"], fs, cold = headstart_extract(paths, tmp / f"{model}-default", **kw)
    _, _, warm = headstart_extract(paths, tmp / f"{model}-default", **kw)  # rerun: cache hit
    r["ceiling"] = eager_ceiling(timm_name)
    r["backend"] = fs.meta["backend"]["name"]
    r["parity"] = parity(np.asarray(fs.features), np.asarray(fs_torch.features))
    r["cache"] = (cold, warm)
    return r


def gpu_throughput(tmp: Path, paths: list[Path], model: str) -> dict[str, float]:
    """End to end on the GPU (torch backend, bf16, channels_last, pinned memory), with CPU or GPU JPEG decoding;
    every variant warmed up first (torch.compile's compilation is not counted)."""
    kw = dict(model=model, weights=MODELS[model][1], device="cuda", backend="torch")
    variants = {"CPU decode": {}, "GPU decode": {"gpu_decode": True},
                "GPU decode + compile": {"gpu_decode": True, "compile": True}}
    out = {}
    for label, extra in variants.items():
        headstart.extract(paths[:512], tmp / f"gwarm-{model}-{len(out)}", progress=False, **kw, **extra)
        out[label], _, _ = headstart_extract(paths, tmp / f"gpu-{model}-{len(out)}", **kw, **extra)
    return out


def gpu_table(tmp: Path, args) -> None:
    if not torch.cuda.is_available():
        print("\nGPU figures: pending (no CUDA GPU on this machine).")
        return
    gpaths = make_jpegs_parallel(tmp / "gpu-jpeg", args.gpu_images)
    print(f"\nGPU ({torch.cuda.get_device_name()}), end to end, {len(gpaths)} JPEG files 500×375 (images/s)\n")
    print("| model | CPU decode | GPU decode | GPU decode + compile |\n|---|---:|---:|---:|", flush=True)
    for m in args.models.split(","):
        g = gpu_throughput(tmp, gpaths, m)
        print(f"| {m} | {g['CPU decode']:.0f} | {g['GPU decode']:.0f} | {g['GPU decode + compile']:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256, help="generated 500×375 JPEGs per model")
    ap.add_argument("--models", default="lite0,resnet50")
    ap.add_argument("--rss", default="2000", help="dataset sizes for the peak-memory check ('' to skip)")
    ap.add_argument("--head-train", type=int, default=256, help="ELPV training images for the head benchmark "
                                                                  "(0 to skip)")
    ap.add_argument("--gpu-images", type=int, default=8192, help="JPEGs for the GPU figures (when CUDA is present)")
    ap.add_argument("--gpu-only", action="store_true", help="only the GPU figures (a short run on a lent GPU)")
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"headstart {headstart.__version__}, GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["HEADSTART_HOME"] = str(tmp / "home")
        if args.gpu_only:
            gpu_table(tmp, args)
            return
        paths = make_jpegs(tmp / "jpeg", args.images)
        results = {m: throughput(tmp, paths, m) for m in args.models.split(",")}
        print(f"\nEnd to end, {len(paths)} JPEG files 500×375 → pooled features (images/s)\n")
        print("| model | seed loop | plain timm | headstart torch | headstart default | eager ceiling "
              "| default / ceiling | default / plain | default / seed | torch / plain |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for m, r in results.items():
            print(f"| {m} | {r['seed']:.1f} | {r['plain']:.1f} | {r['torch']:.1f} | {r['default']:.1f} "
                  f"({r['backend']}) | {r['ceiling']:.1f} | **{r['default'] / r['ceiling']:.2f}×** | "
                  f"{r['default'] / r['plain']:.2f}× | {r['default'] / r['seed']:.2f}× | "
                  f"{r['torch'] / r['plain']:.2f}× |")
        print()
        for m, r in results.items():
            cold, warm = r["cache"]
            print(f"{m}: default vs torch backend features: {r['parity']}")
            print(f"{m}: cache re-run of the same extract: {cold:.2f} s → {warm:.2f} s ({cold / warm:.0f}× faster)")
        gpu_table(tmp, args)
        if args.head_train:
            head_speedup(tmp, args.head_train)
        for n in (int(v) for v in args.rss.split(",") if v):
            d = tmp / f"rss{n}"
            make_jpegs(d, n, size=(320, 240), seed=2)
            print()
            for backend in ("auto", "torch"):
                pss, rss = peak_memory_mb(d, tmp / f"rss-out{n}-{backend}", backend)
                print(f"peak memory, `headstart extract --backend {backend}` of {n:,} images: {pss:.0f} MiB PSS for "
                      f"the whole job (main + workers); main process peak RSS {rss:.0f} MiB")


def head_speedup(tmp: Path, n_train: int) -> None:
    import subprocess

    print()
    subprocess.run([sys.executable, str(Path(__file__).parent / "heads.py"), "--train", str(n_train),
                    "--val", str(n_train // 2), "--epochs", "10"], check=True)


if __name__ == "__main__":
    main()
