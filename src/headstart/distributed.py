"""Running on several processes (``torchrun``, SLURM arrays): who this process is, the process group, gathering.

Two ways to be one of several workers:

- **launched by torchrun** (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment, world size > 1): extraction
  shards without any collective; prediction gathers its rows and DDP training joins a process group, created
  lazily on first need (nccl for CUDA tensors, gloo for CPU ones) and destroyed at exit;
- **an explicit shard** (``--shard R/W``, e.g. ``$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``): extraction only;
  the shards never talk to each other, they meet in the output folder.

A torchrun with one process is the ordinary single-process path. Importing this module does not import torch.
"""
from __future__ import annotations

import atexit
import logging
import os
from datetime import timedelta
from typing import Any, Sequence

from .errors import HeadstartError

__all__ = ["Shard", "launched", "this_shard", "parse_shard", "is_main", "use_local_gpu", "ensure_group",
           "active", "gather", "any_rank", "barrier", "split_evenly"]

_logger = logging.getLogger(__name__)

# gloo's own default is 30 minutes. A rank waiting for a slower one (e.g. rank 0 merging a large store, or
# validating while another still loads images) must not give up before torchrun would notice a dead peer.
TIMEOUT_ENV = "HEADSTART_DIST_TIMEOUT"
_DEFAULT_TIMEOUT_S = 2 * 3600


class Shard(tuple):
    """(rank, world): which part of the work this process does."""

    def __new__(cls, rank: int, world: int) -> "Shard":
        return super().__new__(cls, (rank, world))

    rank = property(lambda self: self[0])
    world = property(lambda self: self[1])

    def __str__(self) -> str:
        return f"{self.rank}/{self.world}"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise HeadstartError(f"${name} must be an integer (torchrun sets it); received {raw!r}.") from None


def launched() -> bool:
    """Whether torchrun (or any launcher setting WORLD_SIZE) started this process as one of several."""
    return _env_int("WORLD_SIZE", 1) > 1


def this_shard() -> Shard:
    """(RANK, WORLD_SIZE) from the environment; (0, 1) outside a launcher."""
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    if world < 1 or not 0 <= rank < world:
        raise HeadstartError(f"$RANK must be in 0..$WORLD_SIZE-1; received RANK={rank}, WORLD_SIZE={world}.")
    return Shard(rank, world)


def parse_shard(text: str | None) -> Shard | None:
    """``"R/W"`` (0 ≤ R < W) → Shard; None → None. SLURM: ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``."""
    if text is None:
        return None
    parts = str(text).split("/")
    try:
        rank, world = (int(p) for p in parts)
    except ValueError:
        rank, world = -1, 0
    if len(parts) != 2 or world < 1 or not 0 <= rank < world:
        raise HeadstartError(f"shard must be RANK/WORLD with 0 ≤ RANK < WORLD (e.g. 0/4); received {text!r}.")
    return Shard(rank, world)


def is_main() -> bool:
    """Rank 0 (or not launched): the process that writes shared outputs and prints."""
    return this_shard().rank == 0


def use_local_gpu() -> None:
    """Make ``cuda`` mean this process's own GPU (LOCAL_RANK), before anything touches CUDA."""
    if not launched():
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(_env_int("LOCAL_RANK", 0) % torch.cuda.device_count())


def active() -> bool:
    """Whether collectives are in use: launched, and the process group exists (or can be created)."""
    return launched()


def ensure_group() -> None:
    """Join the process group once (every rank must call this at the same point); torchrun set the rendezvous."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    # One group for both kinds of tensors: gloo for CPU ones (and object gathers), nccl for CUDA ones.
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, _DEFAULT_TIMEOUT_S)))
    use_local_gpu()
    dist.init_process_group(backend, timeout=timeout)
    atexit.register(_teardown)
    _logger.info("joined the process group as rank %s (%s)", this_shard(), backend)


def _teardown() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (a collective: every rank calls it). Objects travel
    pickled between our own ranks over the group; nothing is read from files."""
    if not active():
        return [obj]
    import torch.distributed as dist

    ensure_group()
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any (so that clock-based decisions, such as a budget that ran
    out, are taken by all ranks together and none is left waiting in a collective)."""
    if not active():
        return flag
    import torch
    import torch.distributed as dist

    ensure_group()
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum over ranks (float64, on the CPU)."""
    if not active():
        return list(values)
    import torch
    import torch.distributed as dist

    ensure_group()
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if active():
        import torch.distributed as dist

        ensure_group()
        dist.barrier()


def split_evenly(n: int, world: int) -> list[tuple[int, int]]:
    """``world`` contiguous ranges covering 0..n, sizes differing by at most one (the first ones larger)."""
    base, extra = divmod(n, world)
    bounds, start = [], 0
    for r in range(world):
        stop = start + base + (1 if r < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def my_batches(batches: list[list[int]]) -> list[list[int]]:
    """This rank's contiguous share of ``batches`` (all of them outside torchrun)."""
    if not active():
        return batches
    rank, world = this_shard()
    lo, hi = split_evenly(len(batches), world)[rank]
    return batches[lo:hi]


def gather_rows(rows: Any, errors: list, mine: list[list[int]]) -> tuple[Any, list]:
    """Fill ``rows`` (an array, one row per item) and ``errors`` on every rank from every rank's ``mine`` batches:
    each item was computed by exactly one rank. A no-op outside torchrun."""
    if not active():
        return rows, errors
    idx = [i for b in mine for i in b]
    for r_idx, r_rows, r_err in gather((idx, rows[idx], [errors[i] for i in idx])):
        if r_idx:
            rows[r_idx] = r_rows
        for i, e in zip(r_idx, r_err):
            errors[i] = e
    return rows, errors
