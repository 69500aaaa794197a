"""Does training layers on the 8 views lift ELPV past the probe? (issue 11: the step after the views probe)

    python benchmarks/partial_views.py --cut 6 --splits 0 --configs 1e-4:15:1e-3,3e-4:15:1e-3
    python benchmarks/partial_views.py --cut 4 --splits 0 --configs 1e-4:12:1e-3

Lite0 (offline ImageNet weights, 224 px): the input of ``blocks.<cut>`` is computed once for the 8 flips/rotations
of every ELPV image and kept as float16 under ``--work`` (cut 6: 7×7×192, 0.4 GB; cut 4: 14×14×80, 0.66 GB).
Per split (``StratifiedShuffleSplit(5, test_size=0.25, random_state=0)``, as ``benchmarks/quality.py``):

- ``probe8``: logistic regression (C = 0.1, the middle of what cross-validation picks) on the pooled features of
  the 8 views of every training image, probabilities averaged over the 8 views of each test image;
- ``partial``: the blocks from ``--cut`` on, ``conv_head`` and a linear head that starts as that logistic
  regression, trained with AdamW (one-cycle, BatchNorm statistics frozen, label smoothing 0.1) on one random view
  of each training image per epoch; test scored as above. ``--configs``: ``backbone_lr:epochs:head_lr`` list.

Prints the test accuracy of each (every 5 epochs for ``partial``) and the seconds. A research script: what it finds
decides what ``headstart train``'s ``partial`` does next (benchmarks/RESULTS.md, "Accuracy (issue 11)").
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# (quarter turns, mirror) as headstart.views' dihedral set
CHANNELS = {4: (80, 14), 5: (112, 14), 6: (192, 7)}  # input of blocks.<cut> at 224 px: channels, side


def cache_cut(work: Path, cut: int):
    """(N, 8, C, H, W) float16 inputs of blocks.<cut> for every view of every ELPV image, and the labels."""
    import torch

    import headstart
    from headstart.data import load_image
    from headstart.views import view_ops
    from quality import elpv_items

    path = work / f"cut{cut}.npy"
    items, classes = elpv_items(work)
    y = np.array([classes.index(it.label) for it in items])
    if path.is_file():
        return np.load(path), y
    m = headstart.create_model("lite0", include_top=False, pooling="avg").eval()
    bb = m.backbone
    prefix = torch.nn.Sequential(bb.conv_stem, bb.bn1, *bb.blocks[:cut]).eval().to(memory_format=torch.channels_last)
    tf, (c, side) = m.preprocessing.array_transform(), CHANNELS[cut]
    out = np.lib.format.open_memmap(work / f".cut{cut}.tmp.npy", mode="w+", dtype=np.float16,
                                    shape=(len(items), 8, c, side, side))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(items), 8):
            views = []
            for it in items[s:s + 8]:
                a = tf(load_image(it.path))
                for k, flip in view_ops("dihedral"):  # headstart's own 8 views, in its order
                    v = np.rot90(a, k, axes=(1, 2))
                    views.append(np.ascontiguousarray(v[:, :, ::-1] if flip else v))
            x = torch.from_numpy(np.stack(views)).to(memory_format=torch.channels_last)
            out[s:s + len(views) // 8] = prefix(x).float().numpy().reshape(-1, 8, c, side, side)
    out.flush()
    del out
    (work / f".cut{cut}.tmp.npy").rename(path)
    print(f"cached blocks.{cut} inputs of {len(items)} × 8 views in {time.perf_counter() - t0:.0f} s", flush=True)
    return np.load(path), y


def run_split(x, y, tr, te, cut: int, configs, label: str) -> None:
    import torch
    import torch.nn.functional as F
    from sklearn.linear_model import LogisticRegression
    from torch import nn

    import headstart

    bb = headstart.create_model("lite0", include_top=False, pooling="avg").eval().backbone

    def tail():
        return nn.Sequential(*(copy.deepcopy(b) for b in bb.blocks[cut:]), copy.deepcopy(bb.conv_head),
                             copy.deepcopy(bb.bn2), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def batches(net, idx, fn):
        with torch.no_grad():
            return np.concatenate([fn(net(torch.from_numpy(x[idx[s:s + 64]].astype(np.float32)).flatten(0, 1)))
                                   for s in range(0, len(idx), 64)])

    t0 = time.perf_counter()
    frozen = tail().eval()
    ftr, fte = (batches(frozen, idx, lambda f: f.reshape(-1, 8, f.shape[-1]).numpy()) for idx in (tr, te))
    lr = LogisticRegression(C=0.1, max_iter=3000).fit(ftr.reshape(-1, ftr.shape[-1]), np.repeat(y[tr], 8))
    p = lr.predict_proba(fte.reshape(-1, fte.shape[-1])).reshape(len(te), 8, 2).mean(1)
    print(f"{label} probe8: {(p.argmax(1) == y[te]).mean():.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    for backbone_lr, epochs, head_lr in configs:
        torch.manual_seed(0)
        rng = np.random.default_rng(0)
        body, head = tail(), nn.Linear(ftr.shape[-1], 2)
        with torch.no_grad():  # the logistic regression as a two-logit head: start where the probe is
            w, b = torch.tensor(lr.coef_[0], dtype=torch.float32), float(lr.intercept_[0])
            head.weight.copy_(torch.stack([-w / 2, w / 2]))
            head.bias.copy_(torch.tensor([-b / 2, b / 2]))
        net = nn.Sequential(body, head)
        opt = torch.optim.AdamW([{"params": body.parameters(), "lr": backbone_lr},
                                 {"params": head.parameters(), "lr": head_lr}], weight_decay=0.01)
        steps = epochs * -(-len(tr) // 32)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[backbone_lr, head_lr], total_steps=steps,
                                                    pct_start=0.1)
        t1 = time.perf_counter()
        for ep in range(epochs):
            net.train()
            for mod in net.modules():  # BatchNorm statistics stay ImageNet's; their weights train
                if isinstance(mod, nn.BatchNorm2d):
                    mod.eval()
            perm, view = rng.permutation(len(tr)), rng.integers(0, 8, len(tr))
            for s in range(0, len(tr), 32):
                j = perm[s:s + 32]
                xb = torch.from_numpy(x[tr[j], view[j]].astype(np.float32))
                loss = F.cross_entropy(net(xb), torch.from_numpy(y[tr[j]]), label_smoothing=0.1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
            if ep == epochs - 1 or ep % 5 == 4:
                net.eval()
                pt = batches(net, te, lambda z: z.softmax(-1).reshape(-1, 8, 2).mean(1).numpy())
                print(f"  {label} partial from blocks.{cut} (lr {backbone_lr:g}, head {head_lr:g}) epoch {ep + 1}: "
                      f"{(pt.argmax(1) == y[te]).mean():.4f} ({time.perf_counter() - t1:.0f} s)", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cut", type=int, choices=sorted(CHANNELS), default=6)
    ap.add_argument("--splits", default="0", help="comma-separated split numbers (0-4)")
    ap.add_argument("--configs", default="1e-4:15:1e-3", help="backbone_lr:epochs:head_lr,...")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/.work/partial_views"))
    args = ap.parse_args(argv)
    import torch
    from sklearn.model_selection import StratifiedShuffleSplit

    torch.set_num_threads(torch.get_num_threads())
    args.work.mkdir(parents=True, exist_ok=True)
    x, y = cache_cut(args.work, args.cut)
    splits = list(StratifiedShuffleSplit(5, test_size=0.25, random_state=0).split(np.zeros(len(y)), y))
    configs = [(float(a), int(b), float(c)) for a, b, c in (s.split(":") for s in args.configs.split(","))]
    for k in (int(s) for s in args.splits.split(",")):
        run_split(x, y, *splits[k], args.cut, configs, f"split {k}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
