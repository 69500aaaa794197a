"""Scale-out (issue 12): sharded extraction, merge, distributed evaluation and DDP training on 2 CPU ranks (gloo).

The torchrun tests start real processes (a few seconds each). Every network here is single-threaded (torchrun
sets OMP_NUM_THREADS=1 per rank; the single-process references run with one thread too), so stores compare
byte for byte.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.errors import HeadstartError

from conftest import make_image, make_two_classes

TINY = ["--model", "test_resnet", "--weights", "none", "--backend", "torch", "--workers", "0"]
STORE_FILES = ("features.npy", "index.csv", "skipped.csv")


def _env(**extra) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **extra}
    src = str(Path(headstart.__file__).parents[1])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(k, None)
    return env


def _torchrun(*args, outputs: list[Path], env=None) -> subprocess.CompletedProcess:
    """2 ranks on this machine; retried once only when it failed *after* writing every output (a known gloo
    teardown abort at interpreter exit)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "headstart",
           *map(str, args)]
    for attempt in range(2):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env or _env(), timeout=55)
        if r.returncode in (0, 1) or not all(p.exists() for p in outputs) or attempt:
            return r
    return r


def _headstart(*args, env=None, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "headstart", *map(str, args)], capture_output=True, text=True,
                       env=env or _env(), timeout=55)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _single_store(src: Path, out: Path, **kw):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun rank
    try:
        return headstart.extract(src, out, model="test_resnet", weights=None, backend="torch", workers=0,
                                 progress=False, **kw)
    finally:
        torch.set_num_threads(threads)


def _same_store(a: Path, b: Path) -> None:
    for name in STORE_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture
def seventeen(image_folder):
    """17 images: not a multiple of world (2) × batch (2)."""
    make_image(image_folder / "b" / "b8.png", color=(40, 40, 220), noise=25, seed=8)
    return image_folder


def test_torchrun_extract_is_byte_identical_to_one_process(seventeen, tmp_path):
    single = tmp_path / "single"
    _single_store(seventeen, single, batch_size=2)
    out = tmp_path / "multi"
    r = _torchrun("extract", seventeen, "--out", out, *TINY, "--batch-size", "2", "-q", outputs=[out / "meta.json"])
    assert r.returncode == 0, r.stderr[-3000:]
    _same_store(single, out)
    meta, ref = json.loads((out / "meta.json").read_text()), json.loads((single / "meta.json").read_text())
    assert [s["range"] for s in meta["shards"]] == [[0, 10], [10, 17]]  # batch-aligned, contiguous
    differ = {k for k in set(meta) | set(ref) if meta.get(k) != ref.get(k)}
    assert differ <= {"created", "finished", "shards"}
    assert not (out / "shards").exists() and not (out / "plan.json").exists()
    assert headstart.features.FeatureSet.load(out).paths == headstart.features.FeatureSet.load(single).paths


def _shard_api(src: Path, out: Path, shard: str, **env) -> subprocess.CompletedProcess:
    """One independent shard job (as a SLURM array task), with 1-batch chunks so that it can die mid-shard."""
    code = ("import headstart, sys; headstart.extract(sys.argv[1], sys.argv[2], model='test_resnet', weights=None, "
            "backend='torch', workers=0, batch_size=2, chunk_batches=1, shard=sys.argv[3], progress=False)")
    return subprocess.run([sys.executable, "-c", code, str(src), str(out), shard], capture_output=True, text=True,
                          env=_env(**env), timeout=55)


def test_killed_shard_resumes_alone_and_merge_refuses_gaps(seventeen, tmp_path):
    (seventeen / "a" / "bad.png").write_bytes(b"not an image")  # skipped.csv must merge too
    out = tmp_path / "out"
    assert _shard_api(seventeen, out, "0/2").returncode == 0
    killed = _shard_api(seventeen, out, "1/2", HEADSTART_FAULT_AFTER_CHUNKS="1")
    assert killed.returncode == -9, killed.stderr
    shard0, shard1 = out / "shards" / "00000-of-00002", out / "shards" / "00001-of-00002"
    assert (shard0 / "meta.json").is_file() and not (shard1 / "meta.json").exists()
    assert len(list((shard1 / ".work" / "chunks").glob("*.json"))) == 1

    refused = _headstart("merge", out, check=False)
    assert refused.returncode == 2 and "shard 1/2" in refused.stderr and "unfinished" in refused.stderr
    marker = (shard0 / "meta.json").read_bytes()
    (shard0 / "meta.json").unlink()
    refused = _headstart("merge", out, check=False)
    assert refused.returncode == 2 and "shard 0/2" in refused.stderr
    (shard0 / "meta.json").write_bytes(marker)
    (out / "shards" / "00000-of-00003").mkdir()
    refused = _headstart("merge", out, check=False)
    assert refused.returncode == 2 and "00000-of-00003" in refused.stderr
    (out / "shards" / "00000-of-00003").rmdir()

    before = time.time()
    r = _torchrun("extract", seventeen, "--out", out, *TINY, "--batch-size", "2", "-q", outputs=[out / "meta.json"])
    assert r.returncode == 1, r.stderr[-3000:]  # 1: an image was skipped (named on stderr), the rest extracted
    assert "bad.png" in r.stderr
    single = tmp_path / "single"
    _single_store(seventeen, single, batch_size=2)
    _same_store(single, out)
    s0, s1 = json.loads((out / "meta.json").read_text())["shards"]
    assert s0["finished_unix"] < before  # the finished shard was not recomputed
    assert s1["resumed_chunks"] == 1 and s1["computed"] == (s1["range"][1] - s1["range"][0]) - 2


def test_plan_refuses_another_world_size(seventeen, tmp_path):
    out = tmp_path / "out"
    assert _shard_api(seventeen, out, "0/2").returncode == 0
    r = _shard_api(seventeen, out, "0/3")
    assert r.returncode != 0 and "2 shards; this run has 3" in r.stderr


def test_rank_loader_slices_the_single_process_batches(monkeypatch, image_folder):
    from headstart.data import read_source
    from headstart.training._data import image_loader

    items = read_source(image_folder)

    def loader(train: bool, rank: int | None = None):
        if rank is not None:
            monkeypatch.setenv("WORLD_SIZE", "2")
            monkeypatch.setenv("RANK", str(rank))
        return image_loader(items, ["a", "b"], lambda im: 0, 4 if train else 64, train=train, seed=3, workers=0)

    def two_epochs(batch_sampler) -> list[list[int]]:
        return [[i if isinstance(i, int) else i[0] for i in b] for _ in range(2) for b in batch_sampler]

    single = two_epochs(loader(True).batch_sampler)
    ranks = [two_epochs(loader(True, r).batch_sampler) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == single  # rank 0 + rank 1 = each single-process global batch
    assert single[:4] != single[4:]  # the order changes between epochs
    val = [loader(False, r).dataset.items for r in (0, 1)]
    assert val[0] + val[1] == items  # every validation image exactly once, none padded


def test_sync_bn_is_refused_on_cpu(image_folder, tmp_path):
    from headstart.training import train

    with pytest.raises(HeadstartError, match="--sync-bn needs CUDA"):
        train(image_folder, tmp_path / "r", strategy="finetune", model="test_resnet",
                                 weights=None, device="cpu", sync_bn=True, progress=False)
    assert not (tmp_path / "r").exists()


TRAIN = ["--strategy", "finetune", "--augment", "none", "--head", "avg", "--model", "test_resnet", "--weights",
         "none", "--epochs", "2", "--finetune-epochs", "2", "--batch-size", "4", "--workers", "0", "--device", "cpu",
         "-q"]


@pytest.fixture
def noisy(tmp_path):
    return make_two_classes(tmp_path / "data", 12, noise=60)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_ddp_train_matches_one_process(noisy, tmp_path):
    from safetensors.torch import load_file

    one, two = tmp_path / "one", tmp_path / "two"
    _headstart("train", noisy, "--out", one, *TRAIN)
    r = _torchrun("train", noisy, "--out", two, *TRAIN, outputs=[two / "metrics.json"])
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k].float(), b[k].float(), atol=1e-6, rtol=0)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    ha, hb = ma["histories"]["finetune"], mb["histories"]["finetune"]
    assert ha["val_acc"] == hb["val_acc"] and ha["best_epoch"] == hb["best_epoch"]
    np.testing.assert_allclose(ha["val_loss"] + ha["train_loss"], hb["val_loss"] + hb["train_loss"], rtol=1e-6)
    assert ma["test"]["n"] == mb["test"]["n"] and ma["test"]["confusion_matrix"] == mb["test"]["confusion_matrix"]
    assert _files(one) == _files(two)  # rank 1 wrote nothing of its own; no checkpoints left
    assert r.stdout.count("run saved to") == 1  # rank 0 alone printed


def test_torchrun_auto_with_a_budget_and_splits_smaller_than_the_ranks(tmp_path):
    """`auto` under torchrun: 12 images leave 2 for validation, one batch for 2 ranks, so one extraction shard is
    empty (it crashed with "negative dimensions"); every strategy fits its schedule to the budget on all ranks
    together (a collective each epoch)."""
    data = make_two_classes(tmp_path / "data", 6, noise=60)
    out = tmp_path / "auto"
    args = [a for a in TRAIN if a not in ("--strategy", "finetune")]
    r = _torchrun("train", data, "--out", out, *args, "--budget", "10000", outputs=[out / "metrics.json"])
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {row["strategy"] for row in metrics["strategies"]} == {"probe", "head", "partial", "finetune"}
    assert all(h["fitted_epochs"] is None for h in metrics["histories"].values())  # 10,000 s: nothing was cut
    assert r.stdout.count("run saved to") == 1


def test_a_plan_with_fewer_batches_than_shards_gives_empty_ranges_and_an_old_one_is_replaced(tmp_path):
    from headstart.features._shard import PLAN, _plan_hash, frozen_plan, make_plan, shard_dir

    plan = make_plan({"k": 1}, 2, 4, 1, 2, "torch")
    assert plan["ranges"] == [[0, 2], [2, 2]]
    assert make_plan({"k": 1}, 9, 4, 1, 3, "torch")["ranges"] == [[0, 4], [4, 8], [8, 9]]
    old = {**plan, "ranges": [[0, 2], [4, 2]]}  # what the plan said before: shard 1 started past the end
    old["sha256"] = _plan_hash(old)
    (tmp_path / PLAN).write_text(json.dumps(old))
    with pytest.raises(HeadstartError, match="--overwrite"):  # like a plan for other work: not silently replaced
        frozen_plan(tmp_path, plan, overwrite=False)
    shard_dir(tmp_path, 0, 2).mkdir(parents=True)
    assert frozen_plan(tmp_path, plan, overwrite=True)["ranges"] == [[0, 2], [2, 2]]  # training's cache does this
    assert not shard_dir(tmp_path, 0, 2).exists()
    assert frozen_plan(tmp_path, plan, overwrite=True)["sha256"] == plan["sha256"]  # a good plan is kept


def test_torchrun_evaluate_scores_each_image_once(noisy, tmp_path):
    run = tmp_path / "run"
    from headstart.training import train

    train(noisy, run, strategy="head", model="test_resnet", weights=None, epochs=1, workers=0, device="cpu",
          progress=False)
    ev1 = _headstart("evaluate", run, noisy, "--include-seen", "--json", "--backend", "torch")
    ev2 = _torchrun("evaluate", run, noisy, "--include-seen", "--json", "--backend", "torch", outputs=[])
    assert ev2.returncode == 0, ev2.stderr[-3000:]
    m1, m2 = json.loads(ev1.stdout), json.loads(ev2.stdout)  # rank 0 alone printed: one JSON document
    assert m1["n"] == m2["n"] == 24 and m1["confusion_matrix"] == m2["confusion_matrix"]
