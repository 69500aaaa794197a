"""Feature-extraction throughput, side by side in one run, on the same JPEG files.

Compared (Lite0, the offline default model, ImageNet weights):
  seed      the seed's loop: one image at a time (load_img → resize 224×224 → preprocess → predict)
  plain     a plain timm + DataLoader script (timm transforms, 2 workers, batch 32, torch.no_grad)
  headstart `headstart.extract` with its defaults (what `headstart extract` runs)
Also: feature parity of reduced-size JPEG decoding (draft) vs full decoding, and peak memory of `headstart
extract` at several dataset sizes (streaming: it should not grow with N).

Run:   .venv/bin/python benchmarks/extract.py [--images 384] [--elpv 384] [--rss 1000,4000]
Writes the table to stdout; copy it into benchmarks/RESULTS.md with the machine line it prints.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import headstart
from headstart.models import create_model


def make_jpegs(root: Path, n: int, size=(500, 375), seed=0) -> list[Path]:
    """Photo-like JPEGs (smooth gradients + texture + noise) at a realistic size and quality."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(n):
        c = rng.uniform(0, 255, (3,))
        f = rng.uniform(0.01, 0.08, (2,))
        img = np.stack([c[k] * 0.5 + 60 * np.sin(xx * f[0] + k) + 60 * np.cos(yy * f[1] - k) for k in range(3)], -1)
        img += rng.normal(0, 12, img.shape)
        p = root / f"img{i:05d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


def make_jpegs_parallel(root: Path, n: int, seed: int = 3) -> list[Path]:
    """:func:`make_jpegs` on every core (one process takes ~20-30 ms per image: minutes for the GPU's 8,192+)."""
    from concurrent.futures import ProcessPoolExecutor

    chunks = os.cpu_count() or 1
    with ProcessPoolExecutor(chunks) as ex:
        parts = ex.map(make_jpegs, [root / str(c) for c in range(chunks)],
                       [len(range(c, n, chunks)) for c in range(chunks)], [(500, 375)] * chunks,
                       [seed + c for c in range(chunks)])
        return [p for part in parts for p in part]


def elpv_paths(n: int) -> list[Path]:
    import elpv_dataset

    d = Path(elpv_dataset.__file__).parent / "data" / "images"
    return sorted(d.glob("*.png"))[:n]


# -- the three contenders -----------------------------------------------------------------------------------

def run_seed(paths: list[Path], name: str = "lite0", weights: str | None = "imagenet") -> float:
    """The seed's pattern: one image at a time, resized straight to 224×224, no batching."""
    model = create_model(name, include_top=False, pooling="avg", weights=weights).eval()
    mean, std = np.array(model.preprocessing.mean), np.array(model.preprocessing.std)
    t = time.perf_counter()
    with torch.no_grad():
        for p in paths:
            im = Image.open(p).convert("RGB").resize((224, 224))
            x = (np.asarray(im, np.float32) / 255.0 - mean) / std
            model(torch.from_numpy(x.astype(np.float32)).permute(2, 0, 1)[None])
    return len(paths) / (time.perf_counter() - t)


class _Files(torch.utils.data.Dataset):
    def __init__(self, paths, transform):
        self.paths, self.transform = paths, transform

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(Image.open(self.paths[i]).convert("RGB"))


def run_plain(paths: list[Path], timm_name: str = "tf_efficientnet_lite0") -> float:
    """What a user writes from timm's docs: timm model + timm transform + DataLoader."""
    import timm
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model(timm_name, num_classes=0).eval()
    transform = create_transform(**resolve_data_config({}, model=model))
    loader = torch.utils.data.DataLoader(_Files(paths, transform), batch_size=32, num_workers=2)
    t = time.perf_counter()
    with torch.no_grad():
        for x in loader:
            model(x)
    return len(paths) / (time.perf_counter() - t)


def run_headstart(paths: list[Path], out: Path, **kw) -> tuple[float, headstart.FeatureSet]:
    t = time.perf_counter()
    fs = headstart.extract(paths, out, progress=False, **kw)
    # The end-to-end time includes building the model, as a user's run does.
    return fs.stats.computed / (time.perf_counter() - t), fs


def parity(a: np.ndarray, b: np.ndarray) -> str:
    scale = np.abs(b).max()
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return f"max|Δ|/max|f| = {np.abs(a - b).max() / scale:.2e}, min cosine = {cos.min():.6f}"


def reencode_parity(paths: list[Path], ref: np.ndarray) -> str:
    """How much features move when the same photo is merely re-saved as a JPEG: the noise floor."""
    import io

    from headstart.features import ExtractConfig, feature_model_for

    fm = feature_model_for(ExtractConfig())
    t = fm.preprocessing.transform()
    xs = []
    for p in paths:
        buf = io.BytesIO()
        Image.open(p).save(buf, "JPEG", quality=95)
        buf.seek(0)
        xs.append(t(Image.open(buf).convert("RGB")))
    return parity(fm(torch.stack(xs)).numpy(), ref)


def _tree_pss_kb(pid: int) -> int:
    """Proportional set size of a process and its children: shared pages (torch libraries, the model shared
    copy-on-write with the workers) are split between them instead of counted once per process."""
    total = 0
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def peak_memory_mb(paths_dir: Path, out: Path, backend: str = "auto") -> tuple[float, float]:
    """(peak PSS of the whole job: main + worker processes, peak RSS of the main process), MiB, sampled from /proc.

    ru_maxrss is not used: it survives exec, so a child started from a large benchmark process reports the
    parent's size.
    """
    code = "import headstart, sys; headstart.extract(sys.argv[1], sys.argv[2], progress=False, backend=sys.argv[3])"
    proc = subprocess.Popen([sys.executable, "-c", code, str(paths_dir), str(out), backend])
    peak_pss, peak_rss = 0, 0
    while proc.poll() is None:
        try:
            peak_pss = max(peak_pss, _tree_pss_kb(proc.pid))
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak_rss = max(peak_rss, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.2)
    if proc.returncode != 0:
        raise RuntimeError(f"extraction failed with exit code {proc.returncode}")
    return peak_pss / 1024, peak_rss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=384, help="generated 500×375 JPEGs")
    ap.add_argument("--elpv", type=int, default=384, help="ELPV images (300×300 PNG)")
    ap.add_argument("--no-draft", dest="draft", action="store_false", help="skip the draft-decoding check")
    ap.add_argument("--rss", default="1000,4000", help="dataset sizes for the peak-RSS check ('' to skip)")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, headstart {headstart.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = {"JPEG 500×375": make_jpegs(tmp / "jpeg", args.images)} if args.images else {}
        if args.elpv:
            sets["ELPV 300×300 PNG"] = elpv_paths(args.elpv)
        if sets:
            print("\n| images | seed loop (img/s) | plain timm + DataLoader | headstart extract | headstart / plain |"
                  " headstart / seed |\n|---|---:|---:|---:|---:|---:|")
        for name, paths in sets.items():
            run_plain(paths[:64])  # warm-up: page cache, first-call overheads
            seed = run_seed(paths[: min(len(paths), 96)])
            plain = run_plain(paths)
            hs, _ = run_headstart(paths, tmp / f"hs-{len(name)}")
            print(f"| {name} ({len(paths)}) | {seed:.1f} | {plain:.1f} | {hs:.1f} | {hs / plain:.2f}× | "
                  f"{hs / seed:.2f}× |")
        if args.draft:
            draft_check(tmp)
        if args.rss:
            for n in (int(v) for v in args.rss.split(",")):
                d = tmp / f"rss{n}"
                src = make_jpegs(d, n, size=(320, 240), seed=2)
                pss, rss = peak_memory_mb(d, tmp / f"rss-out{n}")
                print(f"peak memory, headstart extract of {len(src):,} images: {pss:.0f} MiB PSS for the whole job "
                      f"(main + workers), main process peak RSS {rss:.0f} MiB")


def draft_check(tmp: Path) -> None:
    """Reduced-size JPEG decoding on phone-camera photos: speed, and feature change vs full decoding."""
    big = make_jpegs(tmp / "big", 12, size=(4000, 3000), seed=1)
    t_full = _time(lambda: run_headstart(big, tmp / "full", draft=False))
    t_draft = _time(lambda: run_headstart(big, tmp / "draft", draft=True))
    full = np.asarray(headstart.FeatureSet.load(tmp / "full").features)
    draft = np.asarray(headstart.FeatureSet.load(tmp / "draft").features)
    print(f"\ndraft JPEG decoding, 12 photos 4000×3000: {t_full / t_draft:.2f}× faster end to end "
          f"({t_full:.1f} s → {t_draft:.1f} s); {parity(draft, full)}")
    print(f"  yardstick, same photos re-saved as JPEG quality 95: {reencode_parity(big, full)}")


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
