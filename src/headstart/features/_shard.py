"""Sharded extraction: several processes (torchrun ranks, SLURM array tasks) fill one store without talking.

Layout while shards run (next to where the ordinary store will be)::

    OUT/plan.json                     frozen: inputs + configuration fingerprint, world size, batch size, chunking,
                                      backend, and each shard's contiguous, batch-aligned item range
    OUT/shards/00001-of-00004/        shard 1's own store (the ordinary format, resumable chunk by chunk); its
                                      meta.json, written last, is the shard's completion marker

The first shard to start writes the plan (an exclusive create); every later one adopts it, so all shards batch
identically, and a batch-aligned range gives each image the same batch as a single-process run. That, and the
same backend everywhere (the plan's), is why the merged store is byte-identical to a single-process extraction.
``merge`` checks that the shards tile the plan exactly (no gap, no overlap, none incomplete, none from another
plan), then concatenates them into ``OUT/features.npy``, ``index.csv``, ``skipped.csv`` and ``meta.json``, and
removes the plan and the shards. Nothing is exchanged between processes but files, so a killed shard resumes alone
and a finished one is never recomputed.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_write_json, atomic_write_text, fsync_dir
from ..data import Item
from ..distributed import TIMEOUT_ENV, Shard, split_evenly
from ..errors import HeadstartError
from ._store import FEATURES, INDEX, INDEX_COLUMNS, META, SKIPPED, FeatureSet, StoreWriter, _csv, open_reserved

__all__ = ["PLAN", "SHARDS", "merge", "extract_sharded", "shard_dir"]

_logger = logging.getLogger(__name__)

PLAN, SHARDS, LOCK = "plan.json", "shards", "merge.lock"
_FORMAT = "headstart-shard-plan/1"
_POLL_S = 0.2


def shard_dir(out: Path, rank: int, world: int) -> Path:
    return Path(out) / SHARDS / f"{rank:05d}-of-{world:05d}"


def _plan_hash(plan: dict[str, Any]) -> str:
    body = {k: v for k, v in plan.items() if k not in ("sha256", "created")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def make_plan(fingerprint: dict[str, Any], n: int, batch_size: int, chunk_batches: int, world: int,
              backend: str) -> dict[str, Any]:
    """Contiguous item ranges, whole batches each (the last shard ends with the short batch). With fewer batches
    than shards, the last shards are empty ranges at ``n``."""
    n_batches = (n + batch_size - 1) // batch_size
    ranges = [[min(b0 * batch_size, n), min(b1 * batch_size, n)] for b0, b1 in split_evenly(n_batches, world)]
    plan = {"format": _FORMAT, "fingerprint": fingerprint, "n": n, "world_size": world, "batch_size": batch_size,
            "chunk_batches": chunk_batches, "backend": backend, "ranges": ranges,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    plan["sha256"] = _plan_hash(plan)
    return plan


def frozen_plan(out: Path, proposal: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """The plan in ``out``: ``proposal`` if none exists (written exclusively: the first shard wins), else the
    existing one when it describes the same work; a plan for other inputs or another world size is refused."""
    path = out / PLAN
    out.mkdir(parents=True, exist_ok=True)
    if overwrite and path.is_file() and not _same_work(_read_plan(out), proposal):
        path.unlink(missing_ok=True)
        shutil.rmtree(out / SHARDS, ignore_errors=True)
    tmp = out / f".{PLAN}.{os.getpid()}.tmp"
    atomic_write_json(tmp, proposal)
    try:
        os.link(tmp, path)  # fails if it exists: exactly one shard's proposal becomes the plan
        fsync_dir(out)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    plan = _read_plan(out)
    if not _same_work(plan, proposal):
        what = (f"{plan['world_size']} shards; this run has {proposal['world_size']}"
                if plan["fingerprint"] == proposal["fingerprint"] else "other inputs or another configuration")
        raise HeadstartError(
            f"{path} plans an extraction of {what}. Rerun with the plan's shard count (finished shards are kept), "
            f"or pass --overwrite (overwrite=True) to start over.")
    return plan


def _tiles(plan: dict[str, Any]) -> bool:
    """Whether the plan's ranges cover 0..n in order without gaps (an older plan could give a shard start > n: it
    crashed and finished nothing, and is replaced like a plan for other work)."""
    end = 0
    for start, stop in plan["ranges"]:
        if start != end or stop < start:
            return False
        end = stop
    return end == plan["n"]


def _same_work(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether plan ``a`` describes ``b``'s work (a plan that does not tile its items is no plan for any)."""
    return a.get("fingerprint") == b["fingerprint"] and a.get("world_size") == b["world_size"] and _tiles(a)


def _read_plan(out: Path) -> dict[str, Any]:
    path = out / PLAN
    if not path.is_file():
        raise HeadstartError(f"{out} has no {PLAN}: it is not a sharded extraction. Expected the --out folder of "
                             f"`headstart extract` runs under torchrun or with --shard R/W.")
    plan = json.loads(path.read_text())
    if plan.get("format") != _FORMAT or plan.get("sha256") != _plan_hash(plan):
        raise HeadstartError(f"{path} is damaged or was edited (its checksum does not match). Delete {out} and "
                             f"extract again.")
    return plan


def _marker(out: Path, plan: dict[str, Any], rank: int) -> dict[str, Any] | None:
    """A finished shard's meta.json when it belongs to ``plan``; None when the shard is unfinished."""
    path = shard_dir(out, rank, plan["world_size"]) / META
    if not path.is_file():
        return None
    meta = json.loads(path.read_text())
    return meta if meta.get("complete") and meta.get("shard", {}).get("plan_sha256") == plan["sha256"] else None


def finished_shards(out: Path, plan: dict[str, Any]) -> list[int]:
    return [r for r in range(plan["world_size"]) if _marker(out, plan, r) is not None]


# -- one shard ----------------------------------------------------------------------------------------------

def extract_sharded(items: Sequence[Item], out: Path, config, fingerprint: dict[str, Any], shard: Shard, *,
                    wait: bool, overwrite: bool, progress: bool) -> FeatureSet | None:
    """Extract shard ``shard`` of ``items`` into ``out``, then merge or wait (see :func:`_after_shard`).

    ``wait`` (torchrun): rank 0 polls until every shard is finished and merges; the other ranks poll until the
    merged store exists, so every rank returns it. Without ``wait`` (independent shard jobs), the shard that
    finds every other one finished merges and returns the store; the others return None.
    """
    from ..backends import batch_size_for
    from ._extract import ExtractStats, _meta, _run, feature_network

    t0 = time.perf_counter()
    net = feature_network(config)
    input_size = (3, *net.preprocessing.input_size)
    proposal = make_plan(fingerprint, len(items), config.batch_size or batch_size_for(net.fn, input_size, 4),
                         config.chunk_batches, shard.world, net.info.name)
    plan = frozen_plan(out, proposal, overwrite)
    if plan["backend"] != net.info.name:  # every shard runs the plan's backend: identical bytes, not just parity
        net = feature_network(replace(config, backend=plan["backend"]))
    config = replace(config, batch_size=plan["batch_size"], chunk_batches=plan["chunk_batches"])
    start, stop = plan["ranges"][shard.rank]
    stats = ExtractStats()
    if _marker(out, plan, shard.rank) is not None:
        _logger.info("shard %s is finished already: nothing to compute", shard)
    else:
        root = shard_dir(out, shard.rank, shard.world)
        sub = {"plan_sha256": plan["sha256"], "rank": shard.rank, "range": [start, stop]}
        writer = StoreWriter(root, sub, stop - start, net.feature_shape, config.dtype, plan["batch_size"],
                             plan["chunk_batches"], plan["created"])
        stats = _run(net, items[start:stop], writer, config, progress)
        record = {"rank": shard.rank, "world_size": shard.world, "range": [start, stop], "plan_sha256": plan["sha256"],
                  "computed": stats.computed, "resumed_chunks": stats.resumed_chunks, "finished_unix": time.time()}
        writer.finalize({**_meta(net.about, config, fingerprint), "backend": net.info.to_dict(), "shard": record})
        _logger.info("shard %s finished: items %d..%d, %d computed", shard, start, stop, stats.computed)
    fs = _after_shard(out, plan, shard, wait)
    if fs is not None:
        fs.stats = replace(stats, images=len(items), extracted=len(fs), skipped=len(fs.skipped),
                           skipped_reasons=[(s["path"], s["reason"]) for s in fs.skipped],  # every shard's
                           seconds=time.perf_counter() - t0)
    return fs


def _after_shard(out: Path, plan: dict[str, Any], shard: Shard, wait: bool) -> FeatureSet | None:
    if wait and shard.rank == 0:
        _poll(lambda: len(finished_shards(out, plan)) == plan["world_size"], out,
              lambda: f"shards {_missing(out, plan)} of {out} did not finish")
        return merge(out)
    if wait:
        _poll(lambda: _merged(out, plan["fingerprint"]), out, lambda: f"rank 0 did not merge {out}")
        return FeatureSet.load(out)
    if len(finished_shards(out, plan)) < plan["world_size"]:
        _logger.info("%d of %d shards of %s finished; the last one to finish merges them",
                     len(finished_shards(out, plan)), plan["world_size"], out)
        return None
    try:  # the last shards to finish may find each other done: one merges, the other leaves it
        fd = os.open(out / LOCK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return None
    os.close(fd)
    return merge(out)


def _missing(out: Path, plan: dict[str, Any]) -> str:
    done = set(finished_shards(out, plan))
    return ", ".join(f"{r}/{plan['world_size']}" for r in range(plan["world_size"]) if r not in done)


def _merged(out: Path, fingerprint: dict[str, Any]) -> bool:
    try:
        meta = json.loads((out / META).read_text())
    except (OSError, ValueError):  # not there yet (or being replaced this instant)
        return False
    return bool(meta.get("complete")) and meta.get("fingerprint") == fingerprint


def _poll(done, out: Path, why) -> None:
    """Wait for files, not for a collective: a shard needs no process group, and a dead rank ends the job anyway
    (torchrun stops every rank when one fails)."""
    limit = float(os.environ.get(TIMEOUT_ENV, 2 * 3600))
    deadline = time.monotonic() + limit
    while not done():
        if time.monotonic() > deadline:
            raise HeadstartError(f"{why()} within {limit:.0f} s (${TIMEOUT_ENV}). Rerun the same command: finished "
                                 f"shards are kept; or run `headstart merge {out}` once every shard is done.")
        time.sleep(_POLL_S)


# -- merge ----------------------------------------------------------------------------------------------------

def merge(out: str | os.PathLike) -> FeatureSet:
    """Concatenate the finished shards of ``out`` into the ordinary store there; refuse anything but an exact
    tiling of the plan. Returns the merged store (also when ``out`` was merged before)."""
    out = Path(out)
    if not (out / PLAN).is_file() and (out / META).is_file():
        return FeatureSet.load(out)  # merged already (the plan and shards are removed after a merge)
    plan = _read_plan(out)
    metas = _check_shards(out, plan)
    shape, dtype = tuple(metas[0]["feature_shape"]), np.dtype(metas[0]["dtype"])
    counts = {k: sum(m["counts"][k] for m in metas) for k in ("images", "extracted", "skipped")}
    tmp = out / f"{FEATURES}.{os.getpid()}.tmp"
    dest = open_reserved(tmp, dtype, (counts["extracted"], *shape))
    rows, skipped, at = [], [], 0
    for r, meta in enumerate(metas):
        root = shard_dir(out, r, plan["world_size"])
        part = np.load(root / FEATURES, mmap_mode="r", allow_pickle=False)
        for s in range(0, len(part), 4096):  # stream: memory stays flat whatever N is
            dest[at + s:at + s + len(part[s:s + 4096])] = part[s:s + 4096]
        at += len(part)
        rows += _read_csv(root / INDEX)
        skipped += _read_csv(root / SKIPPED)
    dest.flush()
    del dest
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    tmp.replace(out / FEATURES)
    atomic_write_text(out / INDEX, _csv(INDEX_COLUMNS, [(i, *(r[c] for c in INDEX_COLUMNS[1:]))
                                                       for i, r in enumerate(rows)]))
    atomic_write_text(out / SKIPPED, _csv(("path", "label", "reason"),
                                          [(s["path"], s["label"], s["reason"]) for s in skipped]))
    shards = [{**m["shard"], "counts": m["counts"], "backend": m["backend"]} for m in metas]
    meta = {k: v for k, v in metas[0].items() if k not in ("shard", "counts", "complete", "finished", "created")}
    atomic_write_json(out / META, {**meta, "fingerprint": plan["fingerprint"], "counts": counts,
                                   "created": plan["created"], "shards": shards, "complete": True,
                                   "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    shutil.rmtree(out / SHARDS, ignore_errors=True)
    for name in (PLAN, LOCK):
        (out / name).unlink(missing_ok=True)
    _logger.info("merged %d shards into %s: %d images", plan["world_size"], out, counts["images"])
    return FeatureSet.load(out)


def _check_shards(out: Path, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every planned shard finished, from this plan, covering its range; the ranges tile 0..n; nothing else."""
    world, n, ranges = plan["world_size"], plan["n"], plan["ranges"]
    if len(ranges) != world or ranges[0][0] != 0 or ranges[-1][1] != n or any(
            a[1] != b[0] for a, b in zip(ranges, ranges[1:])):
        raise HeadstartError(f"{out / PLAN}: its ranges {ranges} do not tile items 0..{n} (gap or overlap); delete "
                             f"{out} and extract again.")
    expected = {shard_dir(out, r, world).name for r in range(world)}
    present = {p.name for p in (out / SHARDS).iterdir()} if (out / SHARDS).is_dir() else set()
    foreign = sorted(present - expected)
    if foreign:
        raise HeadstartError(f"{out / SHARDS} holds {', '.join(foreign)}, which this plan ({world} shards) did not "
                             f"make: shards of another run. Remove them, or rerun with the shard count they belong to.")
    metas, problems = [], []
    for r in range(world):
        meta = _marker(out, plan, r)
        root = shard_dir(out, r, world)
        if meta is None:
            why = ("is from another plan" if (root / META).is_file() else
                   "is unfinished (no completion marker meta.json)" if root.is_dir() else "never started")
            problems.append(f"shard {r}/{world} ({root}) {why}")
        elif meta["shard"]["range"] != ranges[r] or meta["counts"]["images"] != ranges[r][1] - ranges[r][0]:
            problems.append(f"shard {r}/{world} covers {meta['shard']['range']}, the plan says {ranges[r]}")
        else:
            metas.append(meta)
    if problems:
        raise HeadstartError(f"cannot merge {out}: " + "; ".join(problems) + ". Rerun the same extract command "
                             "(torchrun, or each missing --shard R/W): finished shards are kept.")
    if len({(tuple(m["feature_shape"]), m["dtype"], m["backend"]["name"]) for m in metas}) != 1:
        raise HeadstartError(f"cannot merge {out}: its shards differ in feature shape, dtype or backend; delete "
                             f"{out} and extract again.")
    return metas


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))
