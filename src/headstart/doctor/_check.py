"""`headstart doctor DATA`: every check on one data set, from the feature store `train` uses, into one report.

The path: ``load_splits`` (the same splits `train` makes with the same settings) → the pooled features of each
split from the feature store under ``$HEADSTART_HOME/cache`` (the probe's own, so a later `train` or a second
`doctor` reads them instead of running the network) → out-of-fold probabilities (:func:`._rules.oof_probabilities`)
→ label issues; SHA-256 from the store → exact duplicates; perceptual hashes and thumbnails
(:mod:`._images`) plus embedding neighbours → near duplicates, confirmed pixel by pixel; neighbour distances →
outliers; sizes and grey-level spread → unusable images. The user's files are only read.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._config import CSV_COLUMNS, DoctorConfig

__all__ = ["DoctorReport", "check"]


@dataclass
class DoctorReport:
    """The findings; :meth:`to_json` is the `--json` object, :meth:`rows` the lines of doctor.csv."""

    images: int
    classes: dict[str, dict[str, int]]
    label_issues: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    outliers: list[dict] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    # What the checks were computed from, for a caller that compares methods (benchmarks/doctor.py): "paths",
    # "y", "probs" (out-of-fold), "x" (embeddings). Not in the JSON.
    arrays: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def found_issues(self) -> bool:
        return bool(self.label_issues or self.duplicates or self.outliers or self.unreadable)

    @property
    def leaks(self) -> list[dict]:
        """Duplicate groups that span splits (a test image with a copy in train)."""
        return [d for d in self.duplicates if len(d["splits"]) > 1]

    def to_json(self) -> dict[str, Any]:
        return {"images": self.images, "label_issues": self.label_issues, "duplicates": self.duplicates,
                "outliers": self.outliers, "classes": self.classes, "unreadable": self.unreadable,
                "probe": self.probe}

    def rows(self) -> list[dict[str, Any]]:
        """One row per finding and image. ``action`` is what `train --exclude` acts on: "exclude" for label
        issues, unusable and unreadable images and every copy but one of a duplicate group (the one kept is in
        the test split, else val, else the first); "review" for outliers far from everything."""
        rows = [dict(finding="label_issue", path=d["path"], split=d["split"], label=d["label"],
                     suggested=d["suggested"], score=d["score"], action="exclude") for d in self.label_issues]
        for g, d in enumerate(self.duplicates):
            keep = _kept(d)
            for path, split in zip(d["paths"], d["member_splits"]):
                rows.append(dict(finding=f"{d['kind']}_duplicate", path=path, split=split, group=g,
                                 detail=f"{len(d['paths'])} copies in {'+'.join(d['splits'])}",
                                 action="keep" if path == keep else "exclude"))
        rows += [dict(finding=d["kind"], path=d["path"], split=d["split"], label=d.get("label", ""),
                      score=d.get("score", ""), detail=d["detail"],
                      action="review" if d["kind"] == "outlier" else "exclude") for d in self.outliers]
        rows += [dict(finding="unreadable", path=d["path"], detail=d["error"], action="exclude")
                 for d in self.unreadable]
        return [{c: r.get(c, "") for c in CSV_COLUMNS} for r in rows]

    def write_csv(self, path: str | os.PathLike) -> Path:
        from ..atomic import atomic_write_text

        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows())
        atomic_write_text(Path(path), buf.getvalue())
        return Path(path)


def _kept(d: dict) -> str:
    for split in ("test", "val", "train"):
        for path, s in zip(d["paths"], d["member_splits"]):
            if s == split:
                return path
    return d["paths"][0]


def check(data: str | os.PathLike, config: DoctorConfig | None = None, *, progress: bool = True,
          log: Callable[[str], None] | None = None) -> DoctorReport:
    """Run every check on the labelled images in ``data`` (a folder of class folders, with or without
    train/val/test, or a CSV path,label[,split]) and return the findings. Files are only read."""
    from ..data import load_splits
    from ..data import CopyIndex

    config = (config or DoctorConfig()).check()
    say = log or (lambda msg: None)
    # The same splits train makes with the same settings (copies kept on one side of a split made here), so the
    # feature store is shared; the index hashes every image once.
    index = CopyIndex(hash_bits=config.hash_bits, similarity=config.similarity, workers=config.workers,
                      progress=progress)
    splits = load_splits(data, val_split=config.val_split, test_split=config.test_split, seed=config.seed,
                         group=index)
    index.add(splits.test)  # a given test/ folder is not in the pool load_splits hashes
    table = _features(splits, config, progress)
    say(f"features of {len(table['paths'])} images ({config.model}); out-of-fold probabilities, "
        f"{config.cv_folds} folds")
    stats = [index.stats.get(p) for p in table["paths"]]
    unreadable = {d["path"]: d for d in table["skipped"] + index.unreadable}
    report = DoctorReport(len(table["paths"]) + len(table["skipped"]), _class_counts(splits),
                          unreadable=sorted(unreadable.values(), key=lambda d: d["path"]))
    _label_checks(report, table, config)
    _duplicate_checks(report, table, stats, config)
    _outlier_checks(report, table, stats, config)
    return report


def _features(splits, config: DoctorConfig, progress: bool) -> dict[str, Any]:
    """Pooled features of every split, from the store `train`'s probe uses (same items, same settings)."""
    from ..backends import resolve_device
    from ..features import ExtractConfig, cached_features

    ecfg = ExtractConfig(model=config.model, weights=config.weights, input_shape=config.input_shape,
                         workers=config.workers, device=str(resolve_device(config.device)), pooling="avg")
    xs, ys, paths, names, sha, skipped = [], [], [], [], [], []
    for name in ("train", "val", "test"):
        items = getattr(splits, name)
        if not items:
            continue
        fs = cached_features(items, ecfg, progress=progress)
        xs.append(np.asarray(fs.features, dtype=np.float32))
        ys.append(np.array([splits.classes.index(label) for label in fs.labels]))
        paths += fs.paths
        names += [name] * len(fs)
        sha += fs.sha256
        skipped += [{"path": r["path"], "error": r.get("reason", "")} for r in fs.skipped]
    return {"x": np.concatenate(xs), "y": np.concatenate(ys), "paths": paths, "splits": names, "sha256": sha,
            "classes": splits.classes, "skipped": skipped}


def _class_counts(splits) -> dict[str, dict[str, int]]:
    counts = splits.counts()
    return {c: {**{s: counts[s].get(c, 0) for s in ("train", "val", "test")},
                "total": sum(counts[s].get(c, 0) for s in counts)} for c in splits.classes}


def _label_checks(report: DoctorReport, t: dict, config: DoctorConfig) -> None:
    from ._rules import label_issues, oof_probabilities, projection

    t["z"] = projection(t["x"], config.seed)  # one PCA for the label and neighbour checks of a large set
    probs, c, norm = oof_probabilities(t["x"], t["y"], folds=config.cv_folds, seed=config.seed, projected=t["z"])
    report.arrays = {"paths": t["paths"], "y": t["y"], "probs": probs, "x": t["x"], "splits": t["splits"]}
    classes = t["classes"]
    report.probe = {"C": c, "power_norm": norm, "folds": config.cv_folds,
                    "oof_accuracy": round(float((probs.argmax(1) == t["y"]).mean()), 4)}
    report.label_issues = [{"path": t["paths"][d["index"]], "label": classes[d["label"]],
                            "suggested": classes[d["suggested"]], "score": d["score"],
                            "split": t["splits"][d["index"]]} for d in label_issues(t["y"], probs)]


def _duplicate_checks(report: DoctorReport, t: dict, stats: list, config: DoctorConfig) -> None:
    from ..data import copy_groups
    from ._rules import neighbours

    idx, sims = neighbours(t["x"], k=10, projected=t.get("z"))
    t["neighbour_sims"] = sims
    close = [(int(i), int(idx[i, j])) for i, j in zip(*np.nonzero(sims >= config.cosine))]
    exact, near = copy_groups(stats, hash_bits=config.hash_bits, similarity=config.similarity,
                              candidates=close)
    for kind, groups in (("exact", exact), ("near", near)):
        for g in groups:
            member_splits = [t["splits"][i] for i in g]
            report.duplicates.append({"paths": [t["paths"][i] for i in g], "kind": kind,
                                      "splits": sorted(set(member_splits), key=("train", "val", "test").index),
                                      "member_splits": member_splits})


def _outlier_checks(report: DoctorReport, t: dict, stats: list, config: DoctorConfig) -> None:
    from ..data import unusable
    from ._rules import outliers

    classes = t["classes"]
    for d in outliers(t["neighbour_sims"], spread=config.outlier_spread):
        i = d["index"]
        report.outliers.append({"path": t["paths"][i], "kind": "outlier", "split": t["splits"][i],
                                "label": classes[t["y"][i]], "score": d["score"],
                                "detail": f"far from every other image ({d['score']:.1f} robust SD above the "
                                          f"median neighbour distance)"})
    for i, s in enumerate(stats):
        why = unusable(s) if s is not None else None
        if why:
            report.outliers.append({"path": t["paths"][i], "kind": "unusable", "split": t["splits"][i],
                                    "label": classes[t["y"][i]], "detail": why})
