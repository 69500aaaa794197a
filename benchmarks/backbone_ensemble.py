"""Two backbones' frozen features on ELPV: Lite0, Lite2, their probabilities averaged, and their features joined.

    python benchmarks/backbone_ensemble.py --work /tmp/fq     # the same 5 splits as quality.py

Each method is the "hand probe + dihedral" of ``quality.py`` (a logistic regression trained on the pooled
features of the 8 flips/rotations of every training cell, probabilities averaged over the 8 views of each test
cell) at C = 1 and C = 0.1, on Lite0 (224 px) and Lite2 (260 px) features from headstart's per-file view cache;
*average*: the two models' probabilities averaged; *joined*: one model on the 2 × 1280 features side by side.
Prints mean ± std and the paired difference to Lite0 per C (an ensemble of backbones, issue 11 item 4).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import elpv_items  # noqa: E402


def _probs(x, y, tr, te, c: float):
    from sklearn.linear_model import LogisticRegression

    n, v, d = x.shape
    clf = LogisticRegression(C=c, max_iter=5000).fit(x[tr].reshape(-1, d), np.repeat(y[tr], v))
    return clf.predict_proba(x[te].reshape(-1, d)).reshape(len(te), v, -1).mean(1)


def main(argv=None) -> int:
    from sklearn.model_selection import StratifiedShuffleSplit

    from headstart.features import ExtractConfig
    from headstart.training._views import view_features

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=None, help="where the ELPV cells are written (default: a temporary folder)")
    ap.add_argument("--splits", type=int, default=5)
    args = ap.parse_args(argv)
    items, classes = elpv_items(Path(args.work or tempfile.mkdtemp(prefix="headstart-ensemble-")))
    x = {}
    for model in ("lite0", "lite2"):
        x[model], y, good = view_features(items, classes, ExtractConfig(model=model), "dihedral")
        assert len(good) == len(items), "every cell decodes"
    joined = np.concatenate([x["lite0"], x["lite2"]], 2)
    splits = list(StratifiedShuffleSplit(args.splits, test_size=0.25, random_state=0).split(np.zeros(len(y)), y))
    for c in (1.0, 0.1):
        acc: dict[str, list[float]] = {}
        for k, (tr, te) in enumerate(splits):
            p0, p2 = _probs(x["lite0"], y, tr, te, c), _probs(x["lite2"], y, tr, te, c)
            for name, p in (("Lite0", p0), ("Lite2", p2), ("average", (p0 + p2) / 2),
                            ("joined", _probs(joined, y, tr, te, c))):
                acc.setdefault(name, []).append(float((p.argmax(1) == y[te]).mean()) * 100)
            print(f"C={c} split {k + 1}: " + ", ".join(f"{n} {a[-1]:.2f}" for n, a in acc.items()), flush=True)
        base = np.array(acc["Lite0"])
        for name, a in acc.items():
            a = np.array(a)
            d = a - base
            print(f"| {name}, C = {c} | {a.mean():.2f} % ± {a.std():.2f} | {d.mean():+.2f} ± {d.std():.2f} | "
                  f"{d.min():+.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
