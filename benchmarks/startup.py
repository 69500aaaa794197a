"""Start-up: how long a command takes before (and including) its first useful answer, side by side in one run.

Issue 10's goals, each a ratio measured here on the same machine, same files, same moment:

- ``headstart --help``                       ≥ 5× faster than ``python -c "import torch"``
- ``headstart classify one.jpg`` (export cached) ≤ 1.5× a minimal onnxruntime + Pillow script that classifies the
  same image with the same ``.onnx`` file
- a cached ``headstart extract`` rerun          ≤ 1.5× that same minimal script
- ``headstart predict RUN one.png`` (exported)   ≤ 1.5× the minimal script on the run's ``model.onnx``

Each figure is the median of ``--repeats`` runs of a fresh process (wall time), after one warm-up run that fills
the OS file cache and headstart's export cache. Also reports whether torch was imported by each headstart command.

    python benchmarks/startup.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HEADSTART = [sys.executable, "-m", "headstart"]

# The minimal script a user would write: Pillow resize + centre crop + normalization, one ONNX Runtime session.
MINIMAL = r"""
import sys
import numpy as np
import onnxruntime as ort
from PIL import Image
onnx, image, size, resize, mean, std = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
im = Image.open(image).convert("RGB")
w, h = im.size
s = resize / min(w, h)
im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
l, t = (im.width - size) // 2, (im.height - size) // 2
x = (np.asarray(im.crop((l, t, l + size, t + size)), np.float32) / 255 - mean) / std
sess = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
y = sess.run(None, {"x": np.ascontiguousarray(x.transpose(2, 0, 1)[None])})[0][0]
print(int(y.argmax()), float(y.max()))
"""

# Runs a headstart command in-process and reports whether torch was imported.
PROBE = r"""
import sys
from headstart.cli import main
code = main(sys.argv[1:])
sys.stderr.write(f"\nTORCH_IMPORTED={'torch' in sys.modules}\n")
sys.exit(code)
"""


def _time(cmd: list[str], env: dict, repeats: int) -> float:
    subprocess.run(cmd, env=env, check=True, capture_output=True)  # warm-up: file cache, export cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _torch_imported(args: list[str], env: dict) -> bool:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True)
    return "TORCH_IMPORTED=True" in r.stderr


def _photos(root: Path) -> tuple[Path, Path]:
    """One photo (skimage's coffee) and a folder of 20 photos for the extract rerun."""
    import skimage.data

    photo = root / "coffee.jpg"
    Image.fromarray(skimage.data.coffee()).save(photo, quality=95)
    folder = root / "photos"
    folder.mkdir()
    base = skimage.data.chelsea()
    for i in range(20):
        Image.fromarray(np.roll(base, 7 * i, axis=1)).save(folder / f"p{i:02d}.jpg", quality=90)
    return photo, folder


def _exported_run(root: Path, env: dict) -> tuple[Path, Path]:
    """A small probe run on two classes of photos, exported to ONNX."""
    import skimage.data

    data = root / "data"
    for cls, img in (("cat", skimage.data.chelsea()), ("cup", skimage.data.coffee())):
        (data / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(np.roll(img, 11 * i, axis=0)).save(data / cls / f"{i}.png")
    run = root / "run"
    # --views none: one forward pass per image, as the minimal script does (views multiply the network's work by
    # design; this benchmark measures what comes before and around it)
    subprocess.run([*HEADSTART, "train", str(data), "--out", str(run), "--strategy", "probe", "--views", "none",
                    "-q"], env=env, check=True, capture_output=True)
    subprocess.run([*HEADSTART, "export", str(run)], env=env, check=True, capture_output=True)
    return run, data / "cat" / "0.png"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {**os.environ, "HEADSTART_HOME": str(root / "home")}
        photo, folder = _photos(root)
        subprocess.run([*HEADSTART, "classify", str(photo)], env=env, check=True, capture_output=True)  # export
        subprocess.run([*HEADSTART, "extract", str(folder), "--out", str(root / "feats"), "-q"], env=env,
                       check=True, capture_output=True)
        entries = [json.loads(p.read_text()) for p in (root / "home" / "onnx" / "by-id").glob("*.json")]
        onnx = root / "home" / "onnx" / next(e["onnx"] for e in entries if e["identity"]["task"] == "probabilities")
        run, cell = _exported_run(root, env)
        minimal = [sys.executable, "-c", MINIMAL]
        rows = [
            ("headstart --help", [*HEADSTART, "--help"], "python -c 'import torch'",
             [sys.executable, "-c", "import torch"], None),
            ("headstart classify one.jpg (export cached)", [*HEADSTART, "classify", str(photo)],
             "minimal onnxruntime + Pillow script, same .onnx", [*minimal, str(onnx), str(photo), "224", "256",
                                                                "0.5", "0.5"], ["classify", str(photo)]),
            ("headstart extract (cached rerun, 20 photos)",
             [*HEADSTART, "extract", str(folder), "--out", str(root / "feats"), "-q"],
             "minimal script, same .onnx", [*minimal, str(onnx), str(photo), "224", "256", "0.5", "0.5"],
             ["extract", str(folder), "--out", str(root / "feats"), "-q"]),
            ("headstart predict RUN one.png (exported)", [*HEADSTART, "predict", str(run), str(cell)],
             "minimal script, the run's model.onnx", [*minimal, str(run / "model.onnx"), str(cell), "224", "256",
                                                      "0.5", "0.5"], ["predict", str(run), str(cell)]),
        ]
        print(f"median of {args.repeats} fresh processes each; python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
        print("| command | s | baseline | s | ratio | torch imported |\n|---|---:|---|---:|---:|---|")
        for name, cmd, base_name, base, probe in rows:
            a, b = _time(cmd, env, args.repeats), _time(base, env, args.repeats)
            torch_used = _torch_imported(probe, env) if probe else "-"
            ratio = f"{b / a:.1f}× faster" if probe is None else f"{a / b:.2f}×"
            print(f"| `{name}` | {a:.3f} | {base_name} | {b:.3f} | {ratio} | {torch_used} |")


if __name__ == "__main__":
    main()
