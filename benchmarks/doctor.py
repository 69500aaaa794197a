"""`headstart doctor` on injected faults, beside cleanlab's Datalab and an in-sample-loss ranking (issue 26).

    python benchmarks/doctor.py                      # fashion + digits, 3 seeds each; ELPV soft-label enrichment
    python benchmarks/doctor.py --datasets fashion --seeds 1

For each data set and seed (the data sets of benchmarks/quality.py, written under --work, never into the repo):
a stratified 75/25 train/test split as folders, then faults injected by this script:
- 10 % of the training images get a random wrong label (moved to another class folder);
- 5 % of the test images are copied into train (same class) resized ×0.7 (bicubic) and re-encoded as JPEG q70;
- 5 training images are copied byte for byte into test.
`headstart.doctor.check` then runs on the folder (Lite0 features, 5-fold out-of-fold probabilities). Measured:
flips found (recall), label issues per flip, injected train/test pairs found, exact copies found, and false
duplicate pairs (pairs inside reported groups that were not injected) per 1,000 images. Beside it, on the same
out-of-fold probabilities and embeddings: cleanlab's own per-cell rule (``prune_by_noise_rate``, "per_cell"), its
``Datalab`` (label and near_duplicate issues; cleanlab is AGPL-3.0, installed only for this benchmark:
`pip install 'cleanlab[datalab]'`), and fastai's way, the in-sample loss of a model trained on every image, ranked,
cut at the doctor's number of issues. `--elpv`: the doctor on ELPV without
injection, its label issues against ELPV's soft labels (p = 1/3, 2/3: the experts' uncertain cells).
Prints a table and writes every number to --json; results: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from quality import DATASETS  # noqa: E402


def inject(items, classes, root: Path, seed: int) -> dict:
    """Write the faulty train/test folder under ``root``; returns what was injected (absolute paths)."""
    from PIL import Image
    from sklearn.model_selection import train_test_split

    rng = random.Random(seed)
    train, test = train_test_split(items, test_size=0.25, random_state=seed, stratify=[it.label for it in items])
    flipped, pairs, exact = {}, [], []
    for it in sorted(rng.sample(train, round(0.10 * len(train))), key=lambda it: it.path):
        flipped[it.path] = rng.choice([c for c in classes if c != it.label])
    flipped_src = set(flipped)
    for split, part in (("train", train), ("test", test)):
        for it in part:
            label = flipped.get(it.path, it.label) if split == "train" else it.label
            dest = root / split / label / _name(it)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(it.path, dest)
            if split == "train" and it.path in flipped:
                flipped[str(dest)] = flipped.pop(it.path)
    for it in rng.sample(test, round(0.05 * len(test))):
        im = Image.open(it.path).convert("RGB")
        copy = root / "train" / it.label / f"copy_{Path(_name(it)).stem}.jpg"
        im.resize((max(1, round(im.width * 0.7)), max(1, round(im.height * 0.7))), Image.BICUBIC).save(copy,
                                                                                                   quality=70)
        pairs.append((str(root / "test" / it.label / _name(it)), str(copy)))
    for it in rng.sample([t for t in train if t.path not in flipped_src], 5):
        dest = root / "test" / it.label / f"same_{_name(it)}"
        dest.write_bytes(Path(it.path).read_bytes())
        exact.append((str(root / "train" / it.label / _name(it)), str(dest)))
    return {"flipped": set(flipped), "pairs": pairs, "exact": exact}


def _name(it) -> str:
    """A file name unique across classes (the data sets number their files per class)."""
    return f"{it.label}-{Path(it.path).name}"


def _pair_set(groups) -> set[tuple[str, str]]:
    return {tuple(sorted((a, b))) for g in groups for i, a in enumerate(g) for b in g[i + 1:]}


def score_doctor(report, truth) -> dict:
    issues = [d["path"] for d in report.label_issues]
    found = truth["flipped"] & set(issues)
    groups = [d["paths"] for d in report.duplicates]
    reported = _pair_set(groups)
    injected = {tuple(sorted(p)) for p in truth["pairs"]}
    exact = {tuple(sorted(p)) for p in truth["exact"]}
    a = report.arrays
    p = a["probs"][np.arange(len(a["y"])), a["y"]]
    top = {a["paths"][i] for i in np.argsort(p, kind="stable")[:len(truth["flipped"])]}
    return {"flip_recall": len(found) / len(truth["flipped"]), "issues_per_flip": len(issues) / len(truth["flipped"]),
            "ranked_recall_at_flips": len(truth["flipped"] & top) / len(truth["flipped"]),
            "pairs_found": len(injected & reported) / len(injected), "exact_found": len(exact & reported) / len(exact),
            "false_pairs_per_1000": 1000 * len(reported - injected - exact) / report.images,
            "issues": len(issues), "flips": len(truth["flipped"])}


def score_per_cell(report, truth) -> dict:
    """The same probabilities under cleanlab's own rule (prune_by_noise_rate: per-cell margins), the doctor's rule
    before it took the same count by self-confidence."""
    from headstart.doctor import label_issues

    a = report.arrays
    flagged = {a["paths"][d["index"]] for d in label_issues(a["y"], a["probs"], filter_by="prune_by_noise_rate")}
    return {"flip_recall": len(truth["flipped"] & flagged) / len(truth["flipped"]),
            "issues_per_flip": len(flagged) / len(truth["flipped"])}


def score_cleanlab(report, truth) -> dict:
    from cleanlab import Datalab

    a = report.arrays
    lab = Datalab(data={"label": a["y"].tolist()}, label_name="label", verbosity=0)
    lab.find_issues(pred_probs=a["probs"], features=np.asarray(a["x"], np.float32),
                    issue_types={"label": {}, "near_duplicate": {}})
    li = lab.get_issues("label")
    flagged = {a["paths"][i] for i in np.flatnonzero(li["is_label_issue"].to_numpy())}
    nd = lab.get_issues("near_duplicate")
    groups = []
    for i in np.flatnonzero(nd["is_near_duplicate_issue"].to_numpy()):
        groups += [[a["paths"][i], a["paths"][j]] for j in nd["near_duplicate_sets"].iloc[i]]
    reported = _pair_set(groups)
    injected = {tuple(sorted(p)) for p in truth["pairs"]}
    exact = {tuple(sorted(p)) for p in truth["exact"]}
    return {"flip_recall": len(truth["flipped"] & flagged) / len(truth["flipped"]),
            "issues_per_flip": len(flagged) / len(truth["flipped"]),
            "pairs_found": len(injected & reported) / len(injected), "exact_found": len(exact & reported) / len(exact),
            "false_pairs_per_1000": 1000 * len(reported - injected - exact) / report.images}


def score_in_sample(report, truth) -> dict:
    """fastai's ImageClassifierCleaner order: the loss of a model that trained on every image, highest first,
    cut at as many images as the doctor flagged."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from headstart.models import signed_sqrt

    a = report.arrays
    x = signed_sqrt(a["x"]) if report.probe.get("power_norm") == "on" else a["x"]  # the doctor's features
    model = make_pipeline(StandardScaler(), LogisticRegression(C=report.probe["C"], max_iter=2000)).fit(x, a["y"])
    p = model.predict_proba(x)[np.arange(len(a["y"])), a["y"]]
    k = max(1, len(report.label_issues))
    order = np.argsort(p, kind="stable")
    top = {a["paths"][i] for i in order[:k]}
    at_flips = {a["paths"][i] for i in order[:len(truth["flipped"])]}
    return {"flip_recall": len(truth["flipped"] & top) / len(truth["flipped"]), "issues_per_flip": k / len(truth["flipped"]),
            "ranked_recall_at_flips": len(truth["flipped"] & at_flips) / len(truth["flipped"])}


def run(name: str, seed: int, work: Path) -> dict:
    from headstart.doctor import DoctorConfig, check

    items, classes = DATASETS[name](work)
    root = Path(tempfile.mkdtemp(prefix=f"doctor-{name}-{seed}-", dir=work))
    truth = inject(items, classes, root, seed)
    t0 = time.perf_counter()
    report = check(root, DoctorConfig(seed=seed), progress=False)
    seconds = time.perf_counter() - t0
    row = {"dataset": name, "seed": seed, "images": report.images, "seconds": round(seconds, 1),
           "probe": report.probe, "doctor": score_doctor(report, truth),
           "per_cell": score_per_cell(report, truth), "in_sample": score_in_sample(report, truth)}
    try:
        row["cleanlab"] = score_cleanlab(report, truth)
    except ImportError:
        row["cleanlab"] = None
    print(json.dumps(row), flush=True)
    return row


def elpv_enrichment(work: Path) -> dict:
    """The doctor on ELPV as shipped (no injection): how often its label issues are the experts' uncertain cells."""
    from headstart.data import make_elpv
    from headstart.doctor import DoctorConfig, check

    root = work / "elpv-split"
    if not (root / "labels.csv").is_file():
        make_elpv(root)
    prob = {str(root / r["path"]): float(r["defect_probability"]) for r in csv.DictReader(open(root / "labels.csv"))}
    t0 = time.perf_counter()
    report = check(root, DoctorConfig(), progress=False)
    flagged = [d["path"] for d in report.label_issues]
    uncertain = lambda ps: float(np.mean([0 < prob[p] < 1 for p in ps]))  # noqa: E731
    row = {"images": report.images, "seconds": round(time.perf_counter() - t0, 1), "issues": len(flagged),
           "uncertain_among_flagged": uncertain(flagged), "uncertain_overall": uncertain(list(prob)),
           "duplicate_groups": len(report.duplicates), "leaking_groups": len(report.leaks),
           "outliers": sum(d["kind"] == "outlier" for d in report.outliers)}
    row["enrichment"] = row["uncertain_among_flagged"] / row["uncertain_overall"]
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["fashion", "digits"], choices=sorted(DATASETS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--no-elpv", action="store_true", help="skip the ELPV soft-label enrichment")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "headstart-quality"))
    ap.add_argument("--json", default="doctor-results.json")
    args = ap.parse_args(argv)
    work = Path(args.work)
    rows = [run(name, seed, work) for name in args.datasets for seed in range(args.seeds)]
    result = {"injected": rows, "elpv": None if args.no_elpv else elpv_enrichment(work)}
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(table(rows))
    return 0


def table(rows) -> str:
    lines = ["| data set | method | flips found | issues / flip | top-k ranking, k = flips | injected pairs found | "
             "exact found | false pairs / 1000 |", "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        for method in ("doctor", "per_cell", "cleanlab", "in_sample"):
            vals = [r[method] for r in mine if r.get(method)]
            if not vals:
                continue
            cell = lambda k, pct=True: ("—" if k not in vals[0] else  # noqa: E731
                                        f"{np.mean([v[k] for v in vals]):.1%} ± {np.std([v[k] for v in vals]):.1%}"
                                        if pct else f"{np.mean([v[k] for v in vals]):.2f}")
            lines.append(f"| {name} ({len(vals)} seeds) | {method} | {cell('flip_recall')} | "
                         f"{cell('issues_per_flip', False)} | {cell('ranked_recall_at_flips')} | "
                         f"{cell('pairs_found')} | {cell('exact_found')} | "
                         f"{cell('false_pairs_per_1000', False)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
