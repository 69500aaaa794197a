"""What would reach 90.5 % on ELPV? Whole-network fine-tuning on a GPU, paired with the probes (issue 11).

    python benchmarks/finetune_gpu.py --pack .gpu/elpv.npz          # once, here: ELPV as JPEGs (q90) + labels
    python benchmarks/finetune_gpu.py --data .gpu/elpv.npz --deadline 240 --json out.json   # on the GPU
    python benchmarks/finetune_gpu.py --device cpu --limit 96 --epochs 1 --size 64 --splits 1  # smoke test

Same splits as ``benchmarks/quality.py`` (``StratifiedShuffleSplit(5, test_size=0.25, random_state=0)`` over the
``elpv_dataset`` order, defective ⇔ p ≥ 0.5) and, per split, every method on the same images:

- ``hand probe`` / ``hand probe + dihedral``: Lite0 pooled features at 224 px (the product's preprocessing),
  ``LogisticRegression(C=1.0)``, on 1 view / on the 8 flips and rotations (probabilities averaged over the 8 views
  of each test image) — the baselines of RESULTS.md, recomputed on this script's copy of the images;
- ``finetune S px, E epochs``: every layer of Lite0 (offline ImageNet weights) under a new linear head, trained
  on the GPU with the images held there as uint8: each step draws, per image, one of the 8 flips/rotations
  composed with a small random affine (±8°, scale 0.9–1.1, shift ±4 %) and brightness/contrast jitter, sampled
  in one ``grid_sample``; AdamW (backbone 5e-4, head 5e-3, weight decay 0.05), one warm-up epoch then cosine,
  label smoothing 0.1, BatchNorm statistics trained, bf16 autocast, channels_last, an EMA of the weights. Test:
  softmax averaged over the 8 views, for the last weights and the EMA.

The packed copy exists because the device machine takes a working tree of at most 64 MiB and the PNGs are 92 MB:
``--pack`` stores the 2,624 cells as JPEG (quality 90, 28 MB) with their probabilities, in a plain ``.npz``
(no pickle). Its effect is measured, not assumed: the probes above are recomputed on it.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def pack(dest: Path, quality: int = 90) -> None:
    from elpv_dataset.utils import load_dataset
    from PIL import Image

    imgs, probs, _ = load_dataset()
    blobs = []
    for a in imgs:
        b = io.BytesIO()
        Image.fromarray(a).save(b, "JPEG", quality=quality)
        blobs.append(np.frombuffer(b.getvalue(), np.uint8))
    offsets = np.cumsum([0] + [len(b) for b in blobs])
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.savez(dest, jpeg=np.concatenate(blobs), offsets=offsets, probs=np.asarray(probs, np.float32))
    print(f"packed {len(blobs)} cells as JPEG q{quality}: {dest.stat().st_size / 1e6:.1f} MB → {dest}")


def load(data: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, 300, 300) uint8 cells and labels 0 = defective, 1 = functional (quality.py's class order)."""
    from PIL import Image

    if data == "elpv":
        from elpv_dataset.utils import load_dataset

        imgs, probs, _ = load_dataset()
    else:
        z = np.load(data, allow_pickle=False)
        blob, off = z["jpeg"], z["offsets"]
        imgs = np.stack([np.asarray(Image.open(io.BytesIO(blob[off[i]:off[i + 1]].tobytes())).convert("L"))
                         for i in range(len(off) - 1)])
        probs = z["probs"]
    return imgs, np.where(np.asarray(probs) >= 0.5, 0, 1)


def dihedral(x, k: int):
    """View k of ``headstart.views``' 8 (its quarter turns, then its mirror) of a (B, C, H, W) batch on the GPU."""
    import torch

    from headstart.views import view_ops

    turns, mirror = view_ops("dihedral")[k]
    x = torch.rot90(x, turns, dims=(2, 3)) if turns else x
    return x.flip(3) if mirror else x


def augment(x, size: int, gen):
    """(B, 1, H, W) float in [0, 1] → (B, 1, size, size): a random view of the 8 composed with a small affine."""
    import torch
    import torch.nn.functional as F

    b, dev = len(x), x.device
    rnd = lambda *s: torch.rand(*s, device=dev, generator=gen)  # noqa: E731
    k = torch.randint(0, 8, (b,), device=dev, generator=gen)
    theta = (k // 2) * (math.pi / 2) + (rnd(b) * 2 - 1) * math.radians(8)
    scale = 0.9 + 0.2 * rnd(b)
    mirror = torch.where(k % 2 == 1, -1.0, 1.0)
    cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
    mat = torch.stack([torch.stack([cos * mirror, -sin, (rnd(b) * 2 - 1) * 0.08], 1),
                       torch.stack([sin * mirror, cos, (rnd(b) * 2 - 1) * 0.08], 1)], 1)
    grid = F.affine_grid(mat, (b, 1, size, size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    mean = x.mean((2, 3), keepdim=True)
    return ((x - mean) * (0.9 + 0.2 * rnd(b, 1, 1, 1)) + mean + (rnd(b, 1, 1, 1) - 0.5) * 0.1).clamp(0, 1)


def to_input(x, mean: float = 0.5, std: float = 0.5):
    """(B, 1, H, W) in [0, 1] → normalized 3-channel channels_last input (Lite weights: mean = std = 0.5)."""
    import torch

    return ((x - mean) / std).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)


def probes(imgs_dev, y, splits, device) -> dict[str, list[float]]:
    """The hand probes of quality.py on pooled Lite0 features of the 8 views (product preprocessing at 224 px)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    import headstart

    m = headstart.create_model("lite0", include_top=False, pooling="avg").eval().to(device)
    m = m.to(memory_format=torch.channels_last)
    tf = m.preprocessing.tensor_transform()  # resize 256 + centre crop 224, the product's eval transform
    feats = []
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        for s in range(0, len(imgs_dev), 128):
            x = tf(imgs_dev[s:s + 128].unsqueeze(1).expand(-1, 3, -1, -1))
            feats.append(torch.stack([m(dihedral(x, k).contiguous(memory_format=torch.channels_last)).float()
                                      for k in range(8)], 1).cpu())
    f = torch.cat(feats).numpy()
    out: dict[str, list[float]] = {"hand probe": [], "hand probe + dihedral": []}
    for tr, te in splits:
        for name, v in (("hand probe", 1), ("hand probe + dihedral", 8)):
            clf = LogisticRegression(C=1.0, max_iter=5000).fit(f[tr, :v].reshape(-1, f.shape[2]), np.repeat(y[tr], v))
            p = clf.predict_proba(f[te, :v].reshape(-1, f.shape[2])).reshape(len(te), v, -1).mean(1)
            out[name].append(float((clf.classes_[p.argmax(1)] == y[te]).mean()))
    return out


def finetune(imgs_dev, y, tr, te, size: int, epochs: int, device, seed: int = 0, batch: int = 64) -> dict:
    """Train every layer on augmented views; return test accuracy (8-view average) of the last and EMA weights."""
    import torch
    import torch.nn.functional as F
    from timm.utils import ModelEmaV3
    from torch import nn

    import headstart

    torch.manual_seed(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    body = headstart.create_model("lite0", include_top=False, pooling="avg")
    net = nn.Sequential(body, nn.Linear(1280, 2)).to(device).to(memory_format=torch.channels_last)
    ema = ModelEmaV3(net, decay=0.995)
    opt = torch.optim.AdamW([{"params": body.parameters(), "lr": 5e-4}, {"params": net[1].parameters(), "lr": 5e-3}],
                            weight_decay=0.05)
    steps_per_epoch = max(1, len(tr) // batch)
    total, warm = epochs * steps_per_epoch, steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, total - warm))))
    ytr = torch.as_tensor(y[tr], device=device)
    tr_dev = torch.as_tensor(tr, device=device)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    t0, losses = time.perf_counter(), []
    for _ in range(epochs):
        net.train()
        run_loss = torch.zeros((), device=device)
        perm = torch.randperm(len(tr), device=device, generator=gen)
        for s in range(steps_per_epoch):
            j = perm[s * batch:(s + 1) * batch]
            x = augment(imgs_dev[tr_dev[j]].unsqueeze(1).float() / 255, size, gen)
            with torch.autocast(**amp):
                loss = F.cross_entropy(net(to_input(x)), ytr[j], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ema.update(net)
            run_loss += loss.detach()
        losses.append(run_loss / steps_per_epoch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    out = {"train_s": train_s, "train_img_s": epochs * steps_per_epoch * batch / train_s,
           "loss": [round(float(v), 3) for v in losses]}
    te_dev = torch.as_tensor(te, device=device)
    for name, model in (("last", net), ("ema", ema.module)):
        model.eval()
        probs = []
        with torch.inference_mode(), torch.autocast(**amp):
            for s in range(0, len(te), 128):
                x = imgs_dev[te_dev[s:s + 128]].unsqueeze(1).float() / 255
                if x.shape[-1] != size:
                    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                probs.append(torch.stack([model(to_input(dihedral(x, k))).float().softmax(-1) for k in range(8)], 1))
        p = torch.cat(probs).cpu().numpy()
        out[name] = float((p.mean(1).argmax(1) == y[te]).mean())
        out[name + "_1view"] = float((p[:, 0].argmax(1) == y[te]).mean())
    return out


def summary(name: str, acc: list[float], base: list[float] | None) -> str:
    a = np.array(acc) * 100
    line = f"| {name} | {a.mean():.2f} % ± {a.std():.2f} | {len(a)} |"
    if base is not None:
        d = a - np.array(base[:len(a)]) * 100
        line += f" {d.mean():+.2f} ± {d.std():.2f} | {d.min():+.2f} |"
    else:
        line += " – | – |"
    return line + " " + " / ".join(f"{v:.2f}" for v in a) + " |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pack", type=Path, help="write ELPV as a packed .npz here (needs elpv-dataset) and exit")
    ap.add_argument("--data", default="elpv", help="'elpv' (the installed package) or a file made by --pack")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--configs", default="300:30,224:30,300:60", help="SIZE:EPOCHS fine-tuning runs, in order")
    ap.add_argument("--epochs", type=int, help="override every config's epochs (smoke tests)")
    ap.add_argument("--size", type=int, help="override every config's size (smoke tests)")
    ap.add_argument("--limit", type=int, help="use the first N images only (smoke tests)")
    ap.add_argument("--deadline", type=float, default=1e9, help="seconds: start no config that would end later")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--no-probes", action="store_true", help="skip the baselines (already measured)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.pack:
        pack(args.pack)
        return 0
    import torch
    from sklearn.model_selection import StratifiedShuffleSplit

    t_start, device = time.perf_counter(), torch.device(args.device)
    imgs, y = load(args.data)
    if args.limit:
        imgs, y = imgs[:args.limit], y[:args.limit]
    splits = list(StratifiedShuffleSplit(5, test_size=0.25, random_state=0).split(np.zeros(len(y)), y))[:args.splits]
    print(f"{len(y)} cells ({(y == 0).sum()} defective), {len(splits)} splits, device "
          f"{torch.cuda.get_device_name() if device.type == 'cuda' else device}, torch {torch.__version__}", flush=True)
    imgs_dev = torch.as_tensor(imgs, device=device)
    t, res = time.perf_counter(), {}
    if not args.no_probes:
        try:  # the baselines must not cost the fine-tuning figures, which are what a lent GPU is for
            res = probes(imgs_dev, y, splits, device)
            print(f"probes: {time.perf_counter() - t:.0f} s", {k: [round(v, 4) for v in a] for k, a in res.items()},
                  flush=True)
        except Exception as e:  # noqa: BLE001
            print(f"probes failed: {type(e).__name__}: {e}", flush=True)
    runs, last_s, last_cost = {}, 0.0, 1
    for cfg in args.configs.split(","):
        size, epochs = (int(v) for v in cfg.split(":"))
        size, epochs = args.size or size, args.epochs or epochs
        name = f"finetune {size} px, {epochs} epochs"
        accs: dict[str, list[float]] = {"last": [], "ema": [], "last_1view": [], "ema_1view": []}
        for i, (tr, te) in enumerate(splits):
            per_split = last_s * (epochs * size ** 2) / last_cost  # the last split's time, scaled to this config
            if time.perf_counter() - t_start + per_split > args.deadline:
                print(f"{name}: stopped before split {i + 1} (deadline)", flush=True)
                break
            r = finetune(imgs_dev, y, tr, te, size, epochs, device, seed=i)
            last_s, last_cost = r["train_s"] + 5, epochs * size ** 2
            for k in accs:
                accs[k].append(r[k])
            print(f"{name} split {i + 1}: last {r['last']:.4f} ema {r['ema']:.4f} (1 view {r['last_1view']:.4f}) "
                  f"train {r['train_s']:.0f} s, {r['train_img_s']:.0f} img/s; loss by epoch {r['loss'][::max(1, epochs // 6)]}",
                  flush=True)
            runs.setdefault(name, {"img_s": r["train_img_s"], "train_s": []})["train_s"].append(r["train_s"])
        if accs["last"]:
            res[name] = accs["last"]
            res[name + " (EMA)"] = accs["ema"]
            res[name + " (1 view)"] = accs["last_1view"]
    base = res.get("hand probe")
    print("\n| method | accuracy mean ± std | splits | Δ vs hand probe | worst split Δ | per split |")
    print("|---|---:|---:|---:|---:|---|")
    for k, a in res.items():
        print(summary(k, a, None if k == "hand probe" else base))
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if args.json:
        args.json.write_text(json.dumps({"accuracy": res, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
