"""AdaBN for the probe's frozen features on ELPV? (issue 25; ELPV.md's ranked list, CPU step 5)

    python benchmarks/adabn.py --splits 2          # the first 2 of quality.py's 5 ELPV splits

AdaBN (Li et al. 2016): re-estimate every BatchNorm layer's running mean and variance on the target images (here
each split's training cells only, no labels, no test image), then extract. Beside it on the same split, the same
probe on the ImageNet statistics: Lite0 at the weights' 224 px, 1 view, signed square root, standardization,
logistic regression with C by 5-fold CV on the training cells. Results: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from quality import DATASETS  # noqa: E402


def _features(net, x, batch: int = 64) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.cat([net(x[i:i + batch]).float() for i in range(0, len(x), batch)]).numpy()


def _adapted(model, x):
    """A copy of ``model`` whose BatchNorm statistics are the plain average over the images ``x``."""
    import torch

    net = copy.deepcopy(model)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over every batch, not an exponential one
            m.train()
    _features(net, x)
    return net.eval()


def _probe(x, y, tr, te) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.sign(x) * np.sqrt(np.abs(x))
    model = lambda c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))  # noqa: E731
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    c = max((0.01, 0.1, 1.0), key=lambda c: cross_val_score(model(c), x[tr], y[tr], cv=cv).mean())
    return float((model(c).fit(x[tr], y[tr]).predict(x[te]) == y[te]).mean()), c


def main(argv=None) -> int:
    import torch
    from sklearn.model_selection import StratifiedShuffleSplit

    import headstart
    from headstart.data import load_image

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--splits", type=int, default=5, help="how many of the 5 splits to run")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "headstart-bench"))
    args = ap.parse_args(argv)
    items, classes = DATASETS["elpv"](Path(args.work))
    y = np.array([classes.index(it.label) for it in items])
    model = headstart.create_model("lite0", include_top=False, pooling="avg").eval()
    transform = model.preprocessing.transform()
    x = torch.stack([transform(load_image(it.path)) for it in items])
    base = _features(model, x)
    splits = list(StratifiedShuffleSplit(5, test_size=0.25, random_state=0).split(np.zeros(len(y)), y))
    rows = []
    for k, (tr, te) in enumerate(splits[:args.splits]):
        t = time.perf_counter()
        a0, c0 = _probe(base, y, tr, te)
        a1, c1 = _probe(_features(_adapted(model, x[tr]), x), y, tr, te)
        rows.append((a0, a1))
        print(f"split {k + 1}: ImageNet statistics {a0:.2%} (C {c0}), AdaBN {a1:.2%} (C {c1}), "
              f"Δ {100 * (a1 - a0):+.2f} pt ({time.perf_counter() - t:.0f} s)", flush=True)
    r = 100 * np.array(rows)
    print(f"ImageNet {r[:, 0].mean():.2f} ± {r[:, 0].std():.2f}, AdaBN {r[:, 1].mean():.2f} ± {r[:, 1].std():.2f}, "
          f"paired Δ {np.mean(r[:, 1] - r[:, 0]):+.2f} ± {np.std(r[:, 1] - r[:, 0]):.2f} pt")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
