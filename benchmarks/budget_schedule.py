"""A budget cut with and without the fitted cosine (issue 11, item 4: "more epochs fit the budget").

    python benchmarks/budget_schedule.py --work /tmp/fq          # ELPV, the same 5 splits as quality.py

When ``auto``'s budget runs out, ``fit`` stops after the last epoch that fits. Before, the LR schedule had been
planned for every epoch asked for, so a cut left training part-way down the cosine, at a high LR; now the cosine is
fitted at each epoch's start to the epochs that still fit (``_loop._Budget``), so the last epoch ends at LR 0.

Measured on what trains fast enough to repeat: a Keras-style head (Dense 1024 relu → Dense 2, AdamW, lr 1e-3)
on the cached Lite0 features of the 8 flips/rotations of the ELPV cells, planned for 30 epochs and cut by the budget
after ``--cut`` of them. The clock is simulated (one tick per batch), so both arms train the very same number of
epochs and steps on the same batches; only the LR schedule differs. Validation: 15 % of each split's training images
(best epoch restored, as in ``fit``); test: the split's 25 %, probabilities averaged over the 8 views. Prints the
paired difference per cut.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import Ticking  # noqa: E402
from quality import elpv_items  # noqa: E402


def _one(x, y, tr, va, te, cut: int, fitted: bool, seed: int) -> float:
    from headstart.training import _loop
    from headstart.training._data import tensor_loader

    clock = [0.0]
    real_time, real_fit = _loop.time, _loop._fit_schedule
    _loop.time = SimpleNamespace(perf_counter=lambda: clock[0])
    if not fitted:
        _loop._fit_schedule = lambda *a, **k: None  # the behaviour before: the cosine planned for every epoch
    try:
        v = x.shape[1]
        xt = torch.from_numpy(x[tr].reshape(-1, x.shape[2])).float()
        yt = torch.from_numpy(np.repeat(y[tr], v)).long()
        mean, std = xt.mean(0), xt.std(0) + 1e-6
        torch.manual_seed(seed)
        head = torch.nn.Sequential(torch.nn.Linear(x.shape[2], 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 2))
        train = Ticking(tensor_loader((xt - mean) / std, yt, 64, train=True, seed=seed), clock)
        xv = (torch.from_numpy(x[va, 0]).float() - mean) / std
        val = tensor_loader(xv, torch.from_numpy(y[va]).long(), 256, train=False)
        steps = len(train)
        _loop.fit(head, train, val, [{"params": head.parameters(), "lr": 1e-3}], epochs=30, patience=100,
                  progress=False, deadline=cut * steps + 0.5)
        head.eval()
        with torch.no_grad():
            xe = (torch.from_numpy(x[te]).float() - mean) / std
            p = head(xe.reshape(-1, x.shape[2])).softmax(1).reshape(len(te), v, -1).mean(1)
        return float((p.argmax(1).numpy() == y[te]).mean())
    finally:
        _loop.time, _loop._fit_schedule = real_time, real_fit


def main(argv=None) -> int:
    from sklearn.model_selection import StratifiedShuffleSplit, train_test_split

    from headstart.features import ExtractConfig
    from headstart.training._views import view_features

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=None, help="where the ELPV cells are written (default: a temporary folder)")
    ap.add_argument("--cuts", default="2,4,8", help="epochs the budget leaves, of 30 planned")
    ap.add_argument("--splits", type=int, default=5)
    args = ap.parse_args(argv)
    items, classes = elpv_items(Path(args.work or tempfile.mkdtemp(prefix="headstart-budget-")))
    x, y, good = view_features(items, classes, ExtractConfig(model="lite0"), "dihedral")
    splits = list(StratifiedShuffleSplit(args.splits, test_size=0.25, random_state=0).split(np.zeros(len(y)), y))
    for cut in (int(c) for c in args.cuts.split(",")):
        acc = {False: [], True: []}
        for k, (tr_all, te) in enumerate(splits):
            tr, va = train_test_split(tr_all, test_size=0.15, stratify=y[tr_all], random_state=k)
            for fitted in (False, True):
                acc[fitted].append(_one(x, y, tr, va, te, cut, fitted, seed=k))
            print(f"cut after {cut} of 30 epochs, split {k + 1}: planned cosine {acc[False][-1]:.2%}, "
                  f"fitted cosine {acc[True][-1]:.2%}", flush=True)
        a, b = np.array(acc[False]) * 100, np.array(acc[True]) * 100
        d = b - a
        print(f"| {cut} of 30 | {a.mean():.2f} % ± {a.std():.2f} | {b.mean():.2f} % ± {b.std():.2f} | "
              f"{d.mean():+.2f} ± {d.std():.2f} pt | {d.min():+.2f} | {(d > 0).sum()} / {(d < 0).sum()} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
