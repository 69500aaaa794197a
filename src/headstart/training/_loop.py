"""The training loop shared by the head, partial and fine-tuning strategies.

AdamW with parameter groups (discriminative learning rates), linear warm-up then cosine decay, label smoothing,
optional class weights, early stopping on the validation metric (accuracy or balanced accuracy) with the best
weights restored, bf16 autocast on CUDA, and a live progress bar. The device and the checkpoints are arguments:
the loop trains wherever it is told (a GPU when the run chose one) and saves where it is told.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

import torch
from torch import nn

from ..data import IMBALANCE_RATIO

if TYPE_CHECKING:
    from ..data import Splits
    from ._checkpoint import Checkpoints

__all__ = ["History", "fit", "evaluate_loader", "class_weights", "gradual_unfreezing", "score"]


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)  # the choice metric (== val_acc for "accuracy")
    best_epoch: int = -1
    seconds: float = 0.0
    stopped_early: bool = False
    fitted_epochs: int | None = None  # the LR schedule was shortened to this many epochs to end within the budget
    pruned: bool = False  # stopped by ``should_stop`` (auto: it could no longer win)

    @property
    def best_val_acc(self) -> float:
        return self.val_acc[self.best_epoch] if self.best_epoch >= 0 else 0.0

    @property
    def best_val_score(self) -> float:
        return self.val_score[self.best_epoch] if self.best_epoch >= 0 else 0.0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("train_loss", "train_acc", "val_loss", "val_acc", "val_score",
                                              "best_epoch", "seconds", "stopped_early", "fitted_epochs", "pruned")}


def score(y_true, y_pred, metric: str, n_classes: int) -> float:
    """Accuracy, or balanced accuracy (the mean per-class recall over the classes present)."""
    import numpy as np

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return 0.0
    if metric == "accuracy":
        return float((y_true == y_pred).mean())
    recalls = [float((y_pred[y_true == k] == k).mean()) for k in range(n_classes) if (y_true == k).any()]
    return float(sum(recalls) / len(recalls))


def class_weights(splits: "Splits", balance: str) -> torch.Tensor | None:
    """Inverse-frequency class weights for the loss when classes are skewed (``balance``: auto | on | off)."""
    on = balance == "on" or (balance == "auto" and splits.imbalance() > IMBALANCE_RATIO)
    if not on:
        return None
    y = torch.tensor(splits.y("train"))
    counts = torch.bincount(y, minlength=len(splits.classes)).float().clamp(min=1)
    return counts.sum() / (len(counts) * counts)


def gradual_unfreezing(model: nn.Module) -> Callable[[int], None]:
    """Epoch 0 trains the head alone (a random head's large gradients would wreck pretrained features);
    from epoch 1 every layer trains."""

    def on_epoch(epoch: int) -> None:
        for name, p in model.named_parameters():
            p.requires_grad_(epoch > 0 or name.startswith("head."))

    return on_epoch


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on ``device``; image-shaped batches in channels_last, the layout the convolutions run fastest in
    (CPU and GPU alike: 1.19× a plain training loop on this 2-core CPU, `benchmarks/train_speed.py`)."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def evaluate_loader(module: nn.Module, loader: Iterable, device: torch.device,
                    loss_fn: Callable | None = None, targets: bool = False) -> tuple:
    """(mean loss, accuracy, logits[, targets]) of ``module`` on ``loader`` (batches of (x, y)), in eval mode."""
    was = module.training
    module.eval()
    total, correct, loss_sum, outs, ys = 0, 0, 0.0, [], []
    for x, y in loader:
        x, y = _to(x, device), y.to(device, non_blocking=True)
        with _autocast(device):
            logits = module(x).float()
        if loss_fn is not None:
            loss_sum += loss_fn(logits, y).item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
        outs.append(logits.cpu())
        ys.append(y.cpu())
    module.train(was)
    out = (loss_sum / max(total, 1), correct / max(total, 1), torch.cat(outs) if outs else torch.empty(0, 0))
    return (*out, torch.cat(ys) if ys else torch.empty(0, dtype=torch.long)) if targets else out


def fit(module: nn.Module, train_loader, val_loader, param_groups: list[dict], *, epochs: int,
        device: torch.device | str = "cpu", checkpoints: "Checkpoints | None" = None, name: str = "train",
        warmup_epochs: float = 1.0, weight_decay: float = 0.01, label_smoothing: float = 0.1,
        class_weights: torch.Tensor | None = None, patience: int = 4, metric: str = "accuracy",
        progress: bool = True, deadline: float | None = None,
        on_epoch: Callable[[int], None] | None = None, sync_bn: bool = False,
        should_stop: Callable[[int, History], bool] | None = None, ema_decay: float | None = None) -> History:
    """Train ``module`` in place on ``device``; the weights of the best validation epoch are restored at the end.

    ``param_groups`` are AdamW groups with their own ``lr`` (e.g. backbone lower than head). ``checkpoints``
    (``None``: none) saves after each epoch under ``name``, unless the save would cost more than the training it
    protects (``Checkpoints.worth_saving``), and, when resuming, continues after the last saved one.
    ``deadline`` (a ``time.perf_counter()`` value) stops training before an epoch that would pass it, and fits the
    cosine to the epochs that do (:class:`_Budget`), so the last one ends at a low LR. ``on_epoch(e)``
    runs before each epoch (gradual unfreezing); ``should_stop(e, history)``, after each validated epoch, ends
    training when True (``auto``'s rule for a candidate that can no longer win; ``history.pruned``). ``metric``
    (accuracy | balanced_accuracy) picks the best epoch. ``ema_decay``: an exponential moving average of the
    weights (timm's ``ModelEmaV3``), updated every step, is what is validated and kept (the ``gpu`` recipe); a
    resumed run restarts it from the weights it resumes.
    ``val_loader=None``: a refit on every image (cross-validation chose ``epochs``): no validation, no early
    stopping, the last epoch's weights are kept.

    Under torchrun, loaders made by :func:`._data.image_loader` are split over the ranks: the module trains as
    DistributedDataParallel (``sync_bn``: SyncBatchNorm, CUDA only), validation is gathered so every image counts
    once, and rank 0 alone writes checkpoints. Other loaders (cached features) are whole on every rank: each rank
    runs the same fit. Either way, clock-based stops are agreed by all ranks, so none waits alone in a collective.
    """
    device = torch.device(device)
    module.to(device).to(memory_format=torch.channels_last)  # weights too (4-D ones only); undone at the end
    ranks = _Ranks(train_loader, val_loader, module, device, sync_bn)
    steps_per_epoch = max(1, len(train_loader))
    opt, sched = _optimizer(param_groups, weight_decay, epochs * steps_per_epoch,
                            max(1, int(warmup_epochs * steps_per_epoch)))
    cw = class_weights.to(device) if class_weights is not None else None
    loss_fn = nn.CrossEntropyLoss(weight=cw, label_smoothing=label_smoothing)
    eval_loss = nn.CrossEntropyLoss()
    generator = getattr(train_loader, "generator", None)
    restored = checkpoints.restore(name, module, opt, sched, generator) if checkpoints is not None else None
    run = _Run.from_checkpoint(*restored) if restored is not None else _Run()  # --resume: after the last epoch
    if checkpoints is not None and checkpoints.resume:
        ranks.barrier()  # every rank has read the checkpoint before rank 0 may write the next one
    t0 = time.perf_counter() - run.hist.seconds
    checkpoint = _Saver(checkpoints, ranks, name, module, opt, sched, generator, val_loader is not None, run, t0)
    hist, budget, desc = run.hist, _Budget(deadline, ranks), name
    ema = _ema(module, ema_decay)
    kept = ema.module if ema is not None else module  # what is validated, and whose best weights are kept
    with _Bar(progress, desc, epochs * steps_per_epoch) as bar:
        for epoch in range(run.start_epoch, epochs if not run.finished else 0):
            if not budget.next_epoch_fits(epoch, run, sched, epochs, steps_per_epoch):
                hist.stopped_early = True  # the next epoch would not finish within the budget
                break
            if on_epoch is not None:
                on_epoch(epoch)
            shown = lambda lo, ac, e=epoch: bar(e, lo, ac, hist.val_acc[-1] if hist.val_acc else None)  # noqa: E731
            tloss, tacc = _train_epoch(ranks.net(module), train_loader, opt, sched, loss_fn, device, deadline, shown,
                                       ranks, ema)
            if val_loader is None:
                hist.train_loss.append(tloss)
                hist.train_acc.append(tacc)
            else:
                vloss, vacc, logits, targets = ranks.validate(kept, val_loader, device, eval_loss)
                vscore = score(targets, logits.argmax(1), metric, logits.shape[1]) if len(logits) else 0.0
                run.record(kept, epoch, tloss, tacc, vloss, vacc, vscore)
            run.last_epoch_seconds = time.perf_counter() - budget.epoch_start
            late = deadline is not None and ranks.agree(time.perf_counter() > deadline)  # a collective: every rank
            # the scores are the same on every rank (gathered), so is this decision; agreed anyway, as the clock is
            hist.pruned = bool(should_stop is not None and val_loader is not None
                               and ranks.agree(should_stop(epoch, hist)))
            if run.bad >= patience or late or hist.pruned:
                hist.stopped_early = epoch < epochs - 1
                checkpoint(epoch, True)
                break
            checkpoint(epoch, epoch == epochs - 1)
    ranks.close(module)
    if run.best_state is not None:
        module.load_state_dict(run.best_state)
    elif ema is not None:  # a refit (no validation): the average is the model
        module.load_state_dict(ema.module.state_dict())
    module.to(memory_format=torch.contiguous_format)
    hist.seconds = time.perf_counter() - t0
    return hist


class _Saver:
    """``saver(epoch, done)``: the epoch's checkpoint, written by rank 0 when it is worth its cost
    (``Checkpoints.worth_saving``: a save dearer than the training it protects waits)."""

    def __init__(self, ckpt: "Checkpoints | None", ranks: "_Ranks", name: str, module, opt, sched, generator,
                 validated: bool, run: "_Run", t0: float):
        self.ckpt, self.ranks, self.name, self.run, self.t0 = ckpt, ranks, name, run, t0
        self.module, self.opt, self.sched, self.generator = module, opt, sched, generator
        self.size = ckpt.size_of(module, opt, validated) if ckpt is not None else 0
        self.saved_at = time.perf_counter()

    def __call__(self, epoch: int, done: bool) -> None:
        ckpt = self.ckpt
        if ckpt is None or not self.ranks.main or not ckpt.worth_saving(self.size, time.perf_counter() - self.saved_at):
            return
        self.run.hist.seconds = time.perf_counter() - self.t0
        ckpt.save(self.name, self.module, self.opt, self.sched, self.run.best_state, self.generator,
                  self.run.to_checkpoint(epoch, done))
        self.saved_at = time.perf_counter()


def _ema(module: nn.Module, decay: float | None):
    if decay is None:
        return None
    from timm.utils import ModelEmaV3

    return ModelEmaV3(module, decay=decay)


def _optimizer(param_groups: list[dict], weight_decay: float, total: int, warm: int):
    """AdamW with linear warm-up over ``warm`` steps, then cosine decay to 0 at ``total``."""
    # foreach: one fused update over all tensors instead of a Python loop per tensor (much faster on CPU)
    opt = torch.optim.AdamW(param_groups, weight_decay=weight_decay, foreach=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [_WarmCosine(warm, total) for _ in param_groups])
    return opt, sched


@dataclass
class _WarmCosine:
    """LR factor at step ``s``: linear warm-up over ``warm`` steps, then cosine to 0 at ``total``.

    An object, not a lambda: LambdaLR saves its ``__dict__`` in checkpoints, so a shortened ``total`` resumes too.
    """

    warm: int
    total: int

    def __call__(self, s: int) -> float:
        if s < self.warm:
            return (s + 1) / self.warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - self.warm) / max(1, self.total - self.warm))))


class _Budget:
    """The deadline as ``fit`` sees it at the start of each epoch: whether the epoch fits, and the cosine fitted to
    the epochs that do.

    Without the fitting, a budget cut stops training part-way down a cosine planned for every epoch asked for, at a
    high LR; with it the LR reaches 0 at the last epoch that fits, as in a shorter planned run. An epoch's cost is
    the whole cycle from one epoch's start to the next (training, validation and its checkpoint), re-measured every
    epoch, so the schedule follows the estimate both ways. Every rank takes the same decisions (collectives).
    """

    def __init__(self, deadline: float | None, ranks: "_Ranks"):
        self.deadline, self.ranks = deadline, ranks
        self.epoch_start: float = 0.0
        self.previous: float | None = None

    def next_epoch_fits(self, epoch: int, run: "_Run", sched, epochs: int, steps_per_epoch: int) -> bool:
        start = self.epoch_start = time.perf_counter()
        cycle = start - self.previous if self.previous is not None else run.last_epoch_seconds
        self.previous = start
        if self.deadline is None or not run.hist.train_loss:  # no budget, or nothing measured yet
            return True
        if self.ranks.agree(start + cycle > self.deadline):
            return False
        fits = self.ranks.agree_min(epoch + int((self.deadline - start) // max(cycle, 1e-9)))
        _fit_schedule(sched, run.hist, min(fits, epochs), epochs, steps_per_epoch)
        return True


def _fit_schedule(sched, hist: History, fits: int, epochs: int, steps_per_epoch: int) -> None:
    """End the cosine at the ``fits`` epochs that fit (all ``epochs`` when they do)."""
    hist.fitted_epochs = fits if fits < epochs else None
    for f in sched.lr_lambdas:
        f.total = fits * steps_per_epoch


@dataclass
class _Run:
    """The state of one training loop besides the weights and optimizer: what a checkpoint must bring back."""

    hist: History = field(default_factory=History)
    best_state: dict | None = None
    best_key: tuple | None = None
    bad: int = 0  # epochs since the best one (early stopping)
    last_epoch_seconds: float = 0.0
    start_epoch: int = 0
    finished: bool = False

    def record(self, module: nn.Module, epoch: int, tloss: float, tacc: float, vloss: float, vacc: float,
               vscore: float) -> None:
        for name, value in (("train_loss", tloss), ("train_acc", tacc), ("val_loss", vloss), ("val_acc", vacc),
                            ("val_score", vscore)):
            getattr(self.hist, name).append(value)
        key = (vscore, -vloss)
        if self.best_key is None or key > self.best_key:
            self.best_key, self.bad, self.hist.best_epoch = key, 0, epoch
            self.best_state = copy.deepcopy(module.state_dict())
        else:
            self.bad += 1

    def to_checkpoint(self, epoch: int, done: bool) -> dict:
        return {"epoch": epoch, "history": self.hist.to_dict(), "best_key": self.best_key, "bad": self.bad,
                "last_epoch_seconds": self.last_epoch_seconds, "finished": done}

    @classmethod
    def from_checkpoint(cls, st: dict, best_state: dict | None) -> "_Run":
        return cls(History(**st["history"]), best_state,
                   tuple(st["best_key"]) if st["best_key"] is not None else None, st["bad"],
                   st["last_epoch_seconds"], st["epoch"] + 1, st["finished"])


def _train_epoch(module: nn.Module, loader, opt, sched, loss_fn, device: torch.device, deadline: float | None,
                 report: Callable[[float, float], None], ranks: "_Ranks", ema=None) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean loss, accuracy). Stops early once past ``deadline``."""
    module.train()
    seen, correct, loss_sum = 0, 0, 0.0
    for x, y in loader:
        late = bool(deadline is not None and seen and time.perf_counter() > deadline)
        share, late = ranks.step(len(y), late, deadline is not None)
        if late:
            break  # out of budget mid-epoch: validate what we have
        x, y = _to(x, device), y.to(device, non_blocking=True)
        with _autocast(device):
            logits = module(x).float()
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        (loss * share if share != 1.0 else loss).backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(getattr(module, "module", module))  # the unwrapped module under DDP
        seen += len(y)
        correct += (logits.argmax(1) == y).sum().item()
        loss_sum += loss.item() * len(y)
        report(loss_sum / seen, correct / seen)
    seen, correct, loss_sum = ranks.total(seen, correct, loss_sum)
    return loss_sum / max(seen, 1), correct / max(seen, 1)


class _Ranks:
    """How one training loop shares work with the other torchrun ranks: not at all (a single process), only its
    clock-based decisions (the same fit on every rank: cached features), or as DDP (loaders split per rank)."""

    def __init__(self, train_loader, val_loader, module: nn.Module, device: torch.device, sync_bn: bool):
        from ..distributed import is_main, launched

        self.launched, self.main = launched(), is_main()
        self.ddp = self.launched and getattr(train_loader, "sharded", False)
        self.split_val = self.launched and getattr(val_loader, "sharded", False)
        self.device, self.sync_bn = device, sync_bn and self.ddp
        self._net, self._key = None, None
        if self.ddp:
            from ..distributed import ensure_group

            ensure_group()
        if self.sync_bn:
            if device.type != "cuda":
                from ..errors import HeadstartError

                raise HeadstartError(f"--sync-bn needs CUDA (SyncBatchNorm runs on GPUs only); this run trains on "
                                     f"{device}. Drop --sync-bn, or train on GPUs (--device cuda).")
            nn.SyncBatchNorm.convert_sync_batchnorm(module)  # in place below the top module

    def net(self, module: nn.Module) -> nn.Module:
        """The module to train this epoch: DDP-wrapped under torchrun, rebuilt when the trainable set changes
        (gradual unfreezing), since DDP registers its gradient hooks once."""
        if not self.ddp:
            return module
        key = tuple(p.requires_grad for p in module.parameters())
        if key != self._key:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
                if self.device.type == "cuda" else None
            self._net, self._key = DistributedDataParallel(module, device_ids=ids), key
        return self._net

    def agree(self, flag: bool) -> bool:
        from ..distributed import any_rank

        return any_rank(flag) if self.launched else flag

    def agree_min(self, value: int) -> int:
        """The smallest ``value`` over the ranks."""
        if not self.launched:
            return value
        from ..distributed import gather

        return min(gather(value))

    def barrier(self) -> None:
        if self.launched:
            from ..distributed import barrier

            barrier()

    def step(self, n: int, late: bool, timed: bool) -> tuple[float, bool]:
        """(loss factor, stop): DDP averages the ranks' gradients, so a rank's loss is weighted by its share of
        the global batch (1.0 when the ranks hold equal slices); a stop applies to every rank or none."""
        if self.ddp:
            from ..distributed import all_sum

            total, stops = all_sum([n, 1.0 if late else 0.0])
            return n * _world() / max(total, 1.0), stops > 0
        return 1.0, (self.agree(late) if timed else late)

    def total(self, seen: int, correct: int, loss_sum: float) -> tuple[int, int, float]:
        if not self.ddp:
            return seen, correct, loss_sum
        from ..distributed import all_sum

        s, c, lo = all_sum([seen, correct, loss_sum])
        return int(s), int(c), lo

    def validate(self, module: nn.Module, loader, device: torch.device, loss_fn) -> tuple:
        """(loss, accuracy, logits, targets) over the whole validation split: each rank scores its own range,
        then the ranges are gathered in order (every image once, none padded)."""
        vloss, vacc, logits, targets = evaluate_loader(module, loader, device, loss_fn, targets=True)
        if not self.split_val:
            return vloss, vacc, logits, targets
        from ..distributed import gather

        parts = gather((vloss * len(targets), logits.numpy(), targets.numpy()))
        n = sum(len(t) for _, _, t in parts)
        if n == 0:
            return 0.0, 0.0, logits, targets
        logits = torch.cat([torch.from_numpy(lg) for _, lg, _ in parts if len(lg)])
        targets = torch.cat([torch.from_numpy(t) for _, _, t in parts])
        acc = (logits.argmax(1) == targets).sum().item() / max(n, 1)
        return sum(s for s, _, _ in parts) / max(n, 1), acc, logits, targets

    def close(self, module: nn.Module) -> None:
        self._net = None
        if self.sync_bn:
            _revert_sync_bn(module)


def _world() -> int:
    from ..distributed import this_shard

    return this_shard().world


def _revert_sync_bn(module: nn.Module) -> None:
    """SyncBatchNorm back to BatchNorm2d (same parameters and statistics), so the saved model runs anywhere."""
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            bn = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                child.track_running_stats).to(next(child.buffers()).device)
            bn.load_state_dict(child.state_dict())
            bn.train(child.training)
            setattr(module, name, bn)
        else:
            _revert_sync_bn(child)


class _Bar:
    def __init__(self, enabled: bool, desc: str, total: int):
        from rich.console import Console

        self.enabled = enabled and Console(stderr=True).is_terminal
        self.desc, self.total = desc, total

    def __enter__(self):
        if not self.enabled:
            return lambda *a: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn(f"{self.desc}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("epoch {task.fields[epoch]} loss {task.fields[loss]} acc {task.fields[acc]} "
                                     "val {task.fields[val]}"), TimeRemainingColumn(), console=Console(stderr=True),
                          transient=True)
        self.p.start()
        self.task = self.p.add_task(self.desc, total=self.total, epoch=0, loss="-", acc="-", val="-")

        def update(epoch, loss, acc, val):
            self.p.update(self.task, advance=1, epoch=epoch + 1, loss=f"{loss:.3f}", acc=f"{acc:.3f}",
                          val="-" if val is None else f"{val:.3f}")

        return update

    def __exit__(self, *exc):
        if self.enabled:
            self.p.stop()
