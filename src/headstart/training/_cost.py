"""What this machine does on these images, measured in a few seconds before ``auto`` trains anything, and what each
candidate is therefore expected to cost (:mod:`._auto` reads these; they land in ``metrics.json``).

Measured, not assumed, because the same recipe costs 100× more on a 2-core CPU than on a GPU: decoding (the
images' own files through the eval transform), forward passes of the frozen network at each input size a
candidate uses, and training steps (every layer; the layers after ``partial``'s cut). Each is timed after one
warm-up batch, best of two, so the first call's allocations and thread start-up do not count.

Two costs are not measured but scaled from what RESULTS.md recorded on ELPV (2-core CPU): the probe's
cross-validated logistic-regression search (48 s for 15,744 view rows of 1,280 features on a free CPU) and a head
on cached features (~22 s for 2,263 images, 5 folds + refit + twin). Both are small beside extraction.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..models import HeadstartModel
    from ._context import TrainContext

__all__ = ["Measured", "measure", "LR_SECONDS_PER_ROW", "HEAD_SECONDS_PER_IMAGE_EPOCH"]

LR_SECONDS_PER_ROW = 48 / 15744 / 1280  # × rows × feature width: the probe's CV search (ELPV, RESULTS.md)
HEAD_SECONDS_PER_IMAGE_EPOCH = 22 / (2263 * 20 * 7)  # a head on cached features, per image, epoch and fit
_SAMPLE = 16  # images decoded to time decoding


@dataclass
class Measured:
    """Images per second on this device (``forward``/``train_step``/``partial_step`` keyed by input side)."""

    device: str
    decode: float  # images/s through the eval transform (one process)
    forward: dict[int, float] = field(default_factory=dict)  # frozen network, eval mode, no gradients
    train_step: dict[int, float] = field(default_factory=dict)  # every layer: forward, backward, AdamW step
    partial_step: dict[int, float] = field(default_factory=dict)  # the layers after partial's cut, from activations
    seconds: float = 0.0  # what measuring cost

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("forward", "train_step", "partial_step"):
            d[k] = {str(side): round(v, 1) for side, v in d[k].items()}
        return {**d, "decode": round(self.decode, 1), "seconds": round(self.seconds, 2)}


def measure(ctx: "TrainContext", model: "HeadstartModel", sides: dict[str, int], cut: str | None) -> Measured:
    """Time decoding, forward passes at every side in ``sides`` (role → side), a whole-network training step at
    the ``finetune`` side and, with ``cut``, a step of the layers after it at the ``partial`` side."""
    import torch

    t0 = time.perf_counter()
    batch = 64 if ctx.device.type == "cuda" else 8
    m = Measured(str(ctx.device), _decode_rate(ctx, model))
    net = model.to(ctx.device)
    for side in sorted(set(sides.values())):
        m.forward[side] = _rate(lambda x: net(x), _images(batch, side, ctx.device), grad=False)
    if "finetune" in sides:
        m.train_step[sides["finetune"]] = _train_rate(net, _images(batch, sides["finetune"], ctx.device))
    if cut is not None and "partial" in sides:
        m.partial_step[sides["partial"]] = _partial_rate(net, cut, _images(batch, sides["partial"], ctx.device))
    net.to("cpu")
    for p in net.parameters():
        p.requires_grad_(True)
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    m.seconds = time.perf_counter() - t0
    return m


def _images(n: int, side: int, device):
    import torch

    return torch.randn(n, 3, side, side, device=device).contiguous(memory_format=torch.channels_last)


def _timed(step, reps: int = 2) -> float:
    """Seconds of the fastest of ``reps`` calls of ``step`` after one warm-up call."""
    import torch

    step()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return max(best, 1e-6)


def _rate(fn, x, *, grad: bool) -> float:
    import torch

    with torch.set_grad_enabled(grad):
        return len(x) / _timed(lambda: fn(x))


def _train_rate(net, x) -> float:
    """Images/s of a training step of every layer (what finetune does per image)."""
    for p in net.parameters():
        p.requires_grad_(True)
    return _step_rate(net, net, list(net.parameters()), x)


def _partial_rate(net, cut: str, x) -> float:
    """Images/s of a training step of the layers from ``cut`` on, fed the activations at the cut (what partial
    trains on), measured on the real activations of random images."""
    import torch

    from ..models import FromCut

    captured = []
    handle = net.get_submodule(cut).register_forward_pre_hook(lambda m, args: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    trainable, seen = [], False
    for name, p in net.named_parameters():
        seen = seen or name.startswith(cut + ".") or name.startswith("head.")
        p.requires_grad_(seen)
        if seen:
            trainable.append(p)
    return _step_rate(net, FromCut(net, cut).to(x.device), trainable, captured[0])


def _step_rate(net, fn, params: list, x) -> float:
    """Images/s of forward + backward + AdamW step of ``fn`` on ``x``, ``net`` in train mode (lr 0: the weights
    are used again later; BatchNorm statistics move, which a measuring copy may)."""
    import torch

    opt = torch.optim.AdamW(params, lr=0.0)
    y = torch.zeros(len(x), dtype=torch.long, device=x.device)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(fn(x).float(), y).backward()
        opt.step()

    net.train()
    try:
        return len(x) / _timed(step)
    finally:
        net.eval()
        opt.zero_grad(set_to_none=True)


def _decode_rate(ctx: "TrainContext", model: "HeadstartModel") -> float:
    """Training images per second read from disk and through the eval transform, in this process."""
    from ..data import load_image

    items = list(ctx.splits.train)[:: max(1, len(ctx.splits.train) // _SAMPLE)][:_SAMPLE]
    transform = model.preprocessing.transform()
    t, n = time.perf_counter(), 0
    for it in items:
        try:
            transform(load_image(it.path))
            n += 1
        except Exception:  # an unreadable file: the loaders report it; it is no timing
            continue
    return n / max(time.perf_counter() - t, 1e-6) if n else float("inf")
