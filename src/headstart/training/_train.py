"""``train``: data → strategies → the winner on validation → test once → a run directory (:mod:`headstart.run`)."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..errors import HeadstartError
from ._choose import choose_winner, say_choice, scored
from ._config import AUTO, TrainConfig
from ._context import StrategyResult, TrainContext
from ._strategies import run_strategy

if TYPE_CHECKING:
    from ..models import HeadstartModel

__all__ = ["train", "TrainResult", "choose_winner"]

_logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    strategy: str
    val_accuracy: float
    test: dict[str, Any] | None
    table: list[dict[str, Any]] = field(default_factory=list)
    model: "HeadstartModel | None" = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, cause): images that could not be read
    unfinished: str | None = None  # auto was interrupted during this candidate; the run is complete, resumable


def train(data: str | os.PathLike, out: str | os.PathLike, config: TrainConfig | None = None, *,
          progress: bool = True, log=None, resume: bool = False, overwrite: bool = False,
          given: set[str] | None = None, **overrides) -> TrainResult:
    """Train on the labelled images in ``data`` and write the run directory ``out``.

    ``config.strategy`` is one of probe, head, partial, finetune, or auto (all within ``config.budget`` seconds,
    chosen on training images only: :func:`choose_winner`; the test split is scored once, for the winner). Every
    epoch is checkpointed in ``out/.checkpoints``; after an interruption, ``resume=True`` with the same arguments
    continues from the last finished epoch (finished training loops are not repeated). The checkpoints are removed on success.
    A finished run in ``out`` is replaced only with ``overwrite=True``. ``given``: the settings the user chose
    (each must apply to the strategy).
    """
    from contextlib import nullcontext

    from ..atomic import remove_if_failed
    from ..backends import resolve_device
    from ..distributed import is_main
    from ._checkpoint import CHECKPOINT_DIR, Checkpoints

    config = replace(config or TrainConfig(), **overrides).check(given)
    say = log or (lambda msg: _logger.info(msg))
    splits, index = _load_splits(data, config, progress, say)
    if not splits.val and config.strategy != "probe":
        raise HeadstartError(f"No validation images: --val-split {config.val_split} of {len(splits.train)} training "
                             f"images leaves none, and {config.strategy} chooses on them (epochs; auto: also the "
                             f"strategy). Use --val-split 0.15 (the default) or more, add a val/ folder, or use "
                             f"--strategy probe (cross-validated on the training images).")
    device = resolve_device(config.device)
    if config.sync_bn and device.type != "cuda":
        raise HeadstartError(f"--sync-bn needs CUDA GPUs (SyncBatchNorm refuses CPU tensors); this run trains on "
                             f"{device}. Drop --sync-bn, or train with --device cuda.")
    out, main = Path(out), is_main()  # under torchrun, rank 0 alone writes the run directory
    _refuse_finished(out, resume, overwrite)
    keep = lambda: any((out / CHECKPOINT_DIR).glob("*.safetensors"))  # noqa: E731
    with remove_if_failed(out, keep=keep) if main else nullcontext():
        record = {k: v for k, v in config.to_dict().items() if k not in ("workers", "device")}
        if main:
            out.mkdir(parents=True, exist_ok=True)
        ckpt = Checkpoints.open(out, {"config": record, "data": splits.source, "counts": splits.counts(),
                                      "classes": splits.classes}, resume) if main else \
            Checkpoints(out / CHECKPOINT_DIR, resume)  # reads only
        if resume:
            say(f"resuming from the checkpoints in {ckpt.root}")
        say(f"data: {len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test images, classes "
            f"{', '.join(splits.classes)} (imbalance {splits.imbalance():.2f}×); device {device}")
        # settings given in the call count as chosen too: they win over a recipe's (not checked: see .check)
        chosen = frozenset(given or ()) | frozenset(overrides)
        ctx = TrainContext(splits, config, device, ckpt, progress, given=chosen)
        results, plan = _run_strategies(ctx, say, chosen)
        winner = choose_winner(results)
        say_choice(winner, results, config.metric, say)
        _warn_test_copies(splits, index)  # the model is chosen: now the test images may be read
        result = _finish(out, winner, results, ctx, say, index, plan)
        result.unfinished = plan.interrupted if plan is not None else None
        if main and not result.unfinished:
            ckpt.clear()  # an interrupted auto keeps them: --resume goes on with the plan
        elif main:
            say(f"unfinished: {out} holds the best model so far ({winner.name}); to go on with the plan, run the "
                f"same command with --resume")
    if main:
        _write_report(out, say)
    return result


def _load_splits(data, config: TrainConfig, progress: bool, say):
    """The splits without the images ``--exclude`` lists, with copies kept on one side of a split made here, and
    the copy index (None with --no-copy-check) that later checks the test split (:func:`_warn_test_copies`)."""
    from ..data import CopyIndex, load_splits, read_exclude

    exclude = read_exclude(config.exclude) if config.exclude else None
    index = CopyIndex(workers=config.workers, progress=progress) if config.copy_check else None
    splits = load_splits(data, val_split=config.val_split, test_split=config.test_split, seed=config.seed,
                         exclude=exclude, group=index)
    if splits.excluded:
        say(f"left out {splits.excluded} images listed in {config.exclude}")
    if splits.leaks("train", "val"):
        say(f"{splits.leaks('train', 'val')} validation images have a near-identical image in train (see "
            f"`headstart doctor {data}`)")
    return splits, index


def _warn_test_copies(splits, index) -> None:
    """One warning line when test images have a near-identical image in train. Run after the choice: the test
    images are hashed only now (a split made by headstart hashed them with the rest and kept copies together)."""
    if index is None or not splits.test:
        return
    splits.groups = index.add(splits.test)
    leaked = splits.leaks("train", "test")
    if leaked:
        _logger.warning(f"{leaked} of {len(splits.test)} test images have a near-identical image in train (a "
                        f"copy, resized or re-encoded): the test accuracy will flatter the model. `headstart doctor "
                        f"{splits.source}` lists them; `--exclude doctor.csv` leaves them out.")


def _refuse_finished(out: Path, resume: bool, overwrite: bool) -> None:
    from ..run import CONFIG

    finished = (out / CONFIG).is_file() and not (out / ".checkpoints").is_dir()
    if finished and not overwrite:
        what = "there is nothing to resume" if resume else "it would be overwritten"
        raise HeadstartError(f"{out} already holds a finished run; {what}. Pass --overwrite (overwrite=True) to "
                             f"train it again, or choose another --out.")


def _run_strategies(ctx: TrainContext, say, given: set[str] | None):
    """One strategy, or auto's planned search (:mod:`._auto`); the results and the plan (None without auto)."""
    import torch

    from ._auto import run_auto

    config = ctx.config
    torch.manual_seed(config.seed)
    if config.strategy != AUTO:
        r = run_strategy(config.strategy, ctx)
        say(f"{r.name}: {scored(r, config.metric)} in {r.seconds:.0f} s")
        return [r], None
    return run_auto(ctx, say, frozenset(given or ()))


def _train_only(r: StrategyResult, metric: str) -> dict[str, float]:
    """A cross-validated strategy's twin (fitted on train only) as scored on the validation split, when it was."""
    if r.held is None or r.held.val_score is None:
        return {}
    return {"train_only_val_accuracy": round(r.held.val_acc, 4), f"train_only_val_{metric}": round(r.held.val_score, 4)}


def _finish(out: Path, winner: StrategyResult, results: Sequence[StrategyResult], ctx: TrainContext, say,
            index=None, plan=None) -> TrainResult:
    from ..evaluate import evaluate_items
    from ..inference import predictor_for
    from ..run import hash_images, save_run

    splits, config = ctx.splits, ctx.config
    test, predictions = None, None
    if splits.test:
        say(f"scoring the winner ({winner.name}) on the {len(splits.test)} test images, once")
        predictor = predictor_for(winner.model, device=str(ctx.device))
        test = evaluate_items(predictor, splits.test, workers=config.workers)
        predictions = test.pop("predictions")
    table = [{"strategy": r.name, "val_accuracy": r.val_acc, f"val_{config.metric}": r.score,
              "seconds": round(r.seconds, 1), **r.details, **_train_only(r, config.metric)} for r in results]
    metrics = {"strategy": winner.name, "val_accuracy": winner.val_acc, "metric": config.metric,
               "val_score": winner.score, "device": str(ctx.device), "strategies": table, "test": test,
               "histories": {r.name: r.history.to_dict() for r in results if r.history},
               **({"plan": plan.to_dict(), "unfinished": plan.interrupted} if plan is not None else {})}
    record = {**config.to_dict(), "data": splits.source, "split_counts": splits.counts(), "classes": splits.classes}
    train_seen, bad_train = hash_images(it.path for it in splits.train)
    val_seen, bad_val = hash_images(it.path for it in splits.val)
    seen = {"train": train_seen, "val": val_seen}
    skipped = bad_train + bad_val + [(s["path"], s["reason"]) for s in (test or {}).get("skipped", [])]
    from ..distributed import is_main

    if is_main():  # every rank scored the test split together (each image once); rank 0 writes the run
        save_run(out, winner.model, winner.name, record, metrics, predictions, seen)
        _write_seen_copies(out, splits, index)
        _write_data_checks(out, ctx, results, say)
    return TrainResult(out, winner.name, winner.val_acc, test, table, winner.model, skipped)


def _write_seen_copies(out: Path, splits, index) -> None:
    """RUN/seen_copies.safetensors: the copy index's hashes and signatures of the train and val images, so `evaluate`
    can leave out resized or re-encoded copies of them too (seen.json catches byte-identical ones only)."""
    from ..data import save_signatures
    from ..run import SEEN_COPIES

    if index is None:
        return
    rows = [(index.stats[it.path], name) for name in ("train", "val") for it in getattr(splits, name)
            if it.path in index.stats]
    save_signatures(out / SEEN_COPIES, [r[0] for r in rows], [r[1] for r in rows])


def _write_data_checks(out: Path, ctx: TrainContext, results: Sequence[StrategyResult], say) -> None:
    """RUN/data_checks.json for the report's "Data" section: the copy groups that span splits, and — when the
    probe ran, so its pooled features are cached — label issues from out-of-fold probabilities at the probe's C
    (one 5-fold fit on train + val: seconds). `headstart doctor` runs every check."""
    from ..atomic import atomic_write_json
    from ..run import DATA_CHECKS

    s = ctx.splits
    where = {it.path: name for name in ("train", "val", "test") for it in getattr(s, name)}
    groups: dict[int, list[str]] = {}
    for path, g in s.groups.items():
        if path in where:
            groups.setdefault(g, []).append(path)
    copies = [{"paths": sorted(m), "splits": sorted({where[p] for p in m}, key=("train", "val", "test").index)}
              for m in groups.values() if len(m) > 1]
    checks: dict = {"excluded": s.excluded, "exclude": ctx.config.exclude,
                    "copies": sorted(copies, key=lambda d: (-len(d["splits"]), d["paths"])), "label_issues": None}
    probe = next((r for r in results if r.name == "probe"), None)
    if probe is not None and ctx.config.cv_folds >= 2 and len(s.train) + len(s.val) >= 20:
        try:
            checks["label_issues"] = _label_issues(ctx, probe.details.get("C", 0.1),
                                                   probe.details.get("power_norm", "off"))
        except HeadstartError as exc:  # e.g. a class with one image: the run stands, the section says why
            checks["label_issues_error"] = str(exc)
    atomic_write_json(out / DATA_CHECKS, checks)
    if checks["label_issues"]:
        say(f"{len(checks['label_issues'])} training images look mislabelled (out-of-fold); see report.html or "
            f"`headstart doctor {s.source}`")


def _label_issues(ctx: TrainContext, c: float, norm: str, keep: int = 100) -> list[dict]:
    import numpy as np

    from ..doctor import label_issues, oof_probabilities
    from ._data import cached_activations
    from ._strategies import _extract_cfg

    s = ctx.splits
    ecfg = _extract_cfg(ctx, pooling="avg")
    x, y, paths, names = [], [], [], []
    for name in ("train", "val"):
        xs, ys, fs = cached_activations(getattr(s, name), s.classes, ecfg, progress=False)
        x.append(xs.float().numpy())
        y.append(ys.numpy())
        paths += fs.paths
        names += [name] * len(fs)
    y_all = np.concatenate(y)
    probs, _, _ = oof_probabilities(np.concatenate(x), y_all, folds=ctx.config.cv_folds, seed=ctx.config.seed,
                                    grid=(c,), norms=(norm,))
    return [{"path": paths[d["index"]], "label": s.classes[d["label"]], "suggested": s.classes[d["suggested"]],
             "score": d["score"], "split": names[d["index"]]} for d in label_issues(y_all, probs)[:keep]]


def _write_report(out: Path, say) -> None:
    """The browsable report (report.html) when a test split was scored; a failure here never fails the run."""
    from ..run import PREDICTIONS

    if not (out / PREDICTIONS).is_file():
        return
    try:
        from ..report import write_report
    except ImportError:  # the report module is optional in this build
        return
    try:
        path = write_report(out)
        say(f"report: {path}")
    except Exception as exc:  # the run itself is complete and saved; say why the page is missing
        _logger.warning("the run is saved, but its report could not be written (%s: %s); try `headstart report %s`",
                        type(exc).__name__, exc, out)
