"""Which pooled features should the probe's cross-validation choose from? (issue 25, item 2)

    python benchmarks/probe_pooling.py                  # ELPV, the 5 splits of quality.py, 1 view and 8 views
    python benchmarks/probe_pooling.py --views 1        # the quick half

One forward pass of Lite0 per view of each ELPV cell (the weights' preprocessing, headstart's eval transform)
captures the final map and the outputs of the mid stages (blocks.3 … blocks.6), each pooled by average and by
max. The same logistic regression (standardized features, the signed square root, C chosen by 5-fold CV on the
training images from quality.py's grid, as the product's probe does) is then fitted on each feature set, on the
same 5 splits (``StratifiedShuffleSplit(5, 0.25, random_state=0)``), so every difference is paired. With 8 views
the LR trains on all 8 dihedral views of each training cell and averages the test probabilities over them.
Prints mean ± std and the paired difference to "avg" (the product's feature today) per feature set.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

STAGES = ("blocks.3", "blocks.4", "blocks.5", "blocks.6")
C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3)


def extract(items, views: int, batch: int = 32) -> dict[str, np.ndarray]:
    """{name: N × V × D} pooled features: final map and each stage, avg and max."""
    import torch

    from headstart.data import load_image
    from headstart.models import create_model
    from headstart.views import VIEW_SETS

    model = create_model("lite0", include_top=False).eval()
    transform = model.preprocessing.transform()
    caught: dict[str, torch.Tensor] = {}
    for s in STAGES:
        model.backbone.get_submodule(s).register_forward_hook(lambda m, a, out, s=s: caught.__setitem__(s, out))
    ops = VIEW_SETS["dihedral" if views == 8 else "none"]
    out: dict[str, list] = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(items), batch):
            x = torch.stack([transform(load_image(it.path)) for it in items[i:i + batch]])
            per_view = []
            for op in ops:
                k, flip = op
                xv = torch.rot90(x, k, (2, 3))
                xv = xv.flip(3) if flip else xv
                final = model.backbone.forward_features(xv)
                maps = {"final": final, **{s: caught[s] for s in STAGES}}
                per_view.append({f"{k}.{p}": (m.mean((2, 3)) if p == "avg" else m.amax((2, 3))).numpy()
                                 for k, m in maps.items() for p in ("avg", "max")})
            for k in per_view[0]:
                out.setdefault(k, []).append(np.stack([v[k] for v in per_view], 1))
            print(f"\r{min(i + batch, len(items))}/{len(items)} images, {time.perf_counter() - t0:.0f} s",
                  end="", file=sys.stderr)
    print(file=sys.stderr)
    return {k: np.concatenate(v) for k, v in out.items()}


def probe(x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray) -> tuple[float, float]:
    """(test accuracy, chosen C): signed sqrt, standardized, C by 5-fold CV on train (views kept together)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    x = np.sign(x) * np.sqrt(np.abs(x))
    v = x.shape[1]

    def fit(rows, c):
        scaler = StandardScaler().fit(x[rows].reshape(-1, x.shape[2]))
        clf = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(x[rows].reshape(-1, x.shape[2])),
                                                         np.repeat(y[rows], v))
        return lambda r: clf.predict_proba(scaler.transform(x[r].reshape(-1, x.shape[2]))).reshape(len(r), v, -1
                                                                                                  ).mean(1)

    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(tr, y[tr]))
    cv = {c: np.mean([(fit(tr[a], c)(tr[b]).argmax(1) == y[tr[b]]).mean() for a, b in folds]) for c in C_GRID}
    c = max(C_GRID, key=lambda k: (round(cv[k], 6), -k))
    return float((fit(tr, c)(te).argmax(1) == y[te]).mean()), c


def main(argv=None) -> int:
    from sklearn.model_selection import StratifiedShuffleSplit

    from quality import elpv_items

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/headstart-bench")
    ap.add_argument("--views", default="1,8")
    ap.add_argument("--splits", type=int, default=5)
    args = ap.parse_args(argv)
    items, classes = elpv_items(Path(args.work))
    y = np.array([classes.index(it.label) for it in items])
    splits = list(StratifiedShuffleSplit(args.splits, test_size=0.25, random_state=0).split(np.zeros(len(y)), y))
    for views in (int(v) for v in args.views.split(",")):
        t0 = time.perf_counter()
        f = extract(items, views)
        print(f"\nELPV, Lite0, {views} view(s): features in {time.perf_counter() - t0:.0f} s")
        sets = {"avg (today)": ["final.avg"], "max": ["final.max"], "avgmax": ["final.avg", "final.max"],
                "avg + blocks.4 avg": ["final.avg", "blocks.4.avg"],
                "avg + blocks.5 avg": ["final.avg", "blocks.5.avg"],
                "avg + blocks.3,4,5 avg": ["final.avg", "blocks.3.avg", "blocks.4.avg", "blocks.5.avg"],
                "avgmax + blocks.4,5 avgmax": ["final.avg", "final.max", "blocks.4.avg", "blocks.4.max",
                                               "blocks.5.avg", "blocks.5.max"]}
        base = None
        for name, keys in sets.items():
            x = np.concatenate([f[k] for k in keys], 2)
            t = time.perf_counter()
            res = [probe(x, y, tr, te) for tr, te in splits]
            acc = np.array([r[0] for r in res]) * 100
            base = acc if base is None else base
            d = acc - base
            print(f"  {name:<28} {x.shape[2]:>5}-d  {acc.mean():.2f} ± {acc.std():.2f}   Δ {d.mean():+.2f} ± "
                  f"{d.std():.2f} (worst {d.min():+.2f})   per split {' '.join(f'{a:.2f}' for a in acc)}   C "
                  f"{[r[1] for r in res]}   {time.perf_counter() - t:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
