"""What per-epoch checkpoints cost the seed's head, with and without skipping the saves that are not worth it.

    python benchmarks/checkpoint_cost.py                 # 2 classes × 30 generated images, 1 round
    python benchmarks/checkpoint_cost.py --per-class 6 --rounds 2

``headstart train DIR --strategy head --head flatten,dense:1024:relu`` (the seed's new-top model) trains a 64 M-
parameter head on cached Lite0 activations: 5 cross-validation folds, a refit and a train-only twin. A checkpoint
of it (weights, best weights, two AdamW moments) is 1 GB. *every epoch*: each epoch saved, as before;
*worth saving*: ``Checkpoints.worth_saving`` skips a save that would take longer than the training since the last
one (and than 1 s). The two variants alternate on the same images in one run; the activations are cached first.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _run(data: Path, out: Path, always: bool) -> float:
    from headstart.training import _checkpoint, train

    real = _checkpoint.Checkpoints.worth_saving
    if always:
        _checkpoint.Checkpoints.worth_saving = lambda self, module, unsaved: True
    try:
        t = time.perf_counter()
        train(data, out, strategy="head", head="flatten,dense:1024:relu", progress=False, overwrite=True)
        return time.perf_counter() - t
    finally:
        _checkpoint.Checkpoints.worth_saving = real


def main(argv=None) -> int:
    from conftest import make_image

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="headstart-ckpt-"))
    for cls, color in (("x", (200, 40, 40)), ("y", (40, 40, 200))):
        for i in range(args.per_class):
            make_image(work / "photos" / cls / f"{i}.png", size=(72, 64), color=color, noise=30, seed=i)
    _run(work / "photos", work / "warm", always=False)  # caches the activations and the ONNX export
    seconds: dict[str, list[float]] = {"every epoch": [], "worth saving": []}
    for r in range(args.rounds):
        for name in seconds:
            seconds[name].append(_run(work / "photos", work / name.replace(" ", "_"), always=name == "every epoch"))
            print(f"round {r + 1}: {name}: {seconds[name][-1]:.1f} s", flush=True)
    best = {k: min(v) for k, v in seconds.items()}
    print(f"| {2 * args.per_class} images | {best['every epoch']:.1f} s | {best['worth saving']:.1f} s | "
          f"{best['every epoch'] / best['worth saving']:.2f}× |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
