import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.cli import main
from headstart.features import FeatureModel, FeatureSet, IncompleteStoreError
from headstart.features._store import StoreWriter

from conftest import make_image

TINY = dict(model="test_resnet", weights=None)


def test_vgg16_fc2_and_block5_pool_shapes(tmp_path, image_folder):
    files = sorted(image_folder.rglob("*.png"))[:2]
    fc2 = headstart.extract(files, tmp_path / "fc2", model="vgg16", weights=None, layer="fc2", progress=False)
    assert fc2.features.shape == (2, 4096) and fc2.meta["feature_shape"] == [4096]
    default = FeatureModel("vgg16", weights=None)
    assert default.layer_name == "fc2" and default.feature_shape == (4096,)
    maps = headstart.extract(files, tmp_path / "maps", model="vgg16", weights=None, layer="block5_pool",
                             pooling="none", progress=False)
    assert maps.features.shape == (2, 7, 7, 512) and maps.meta["layout"] == "channels_last"


def test_pooling_variants(tmp_path, image_folder):
    out = {}
    for mode in ("avg", "max", "avgmax", "none"):
        out[mode] = headstart.extract(image_folder, tmp_path / mode, pooling=mode, layer="layer3", progress=False,
                                      **TINY).features
    n, h, w, c = out["none"].shape
    assert out["avg"].shape == out["max"].shape == (n, c) and out["avgmax"].shape == (n, 2 * c)
    np.testing.assert_allclose(out["avg"], out["none"].mean((1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["max"], out["none"].max((1, 2)), rtol=1e-5)
    np.testing.assert_allclose(out["avgmax"], np.concatenate([out["avg"], out["max"]], 1), rtol=1e-6)


def test_features_equal_direct_model_computation(tmp_path, image_folder):
    fs = headstart.extract(image_folder, tmp_path / "s", draft=False, progress=False, **TINY)
    fm = FeatureModel("test_resnet", weights=None)
    torch.manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = headstart.create_model("test_resnet", weights=None, include_top=False, pooling="avg").eval()
    with torch.no_grad():
        direct = model(model.preprocess(fs.paths[:4])).numpy()
    np.testing.assert_allclose(fs.features[:4], direct, rtol=1e-4, atol=1e-5)
    assert fs.labels == ["a"] * 8 + ["b"] * 8 and fs.classes == ["a", "b"] and fm.feature_shape == (96,)


def test_bad_images_are_skipped_with_reason(tmp_path, image_folder):
    (image_folder / "a" / "zero.png").write_bytes(b"")
    (image_folder / "b" / "text.jpg").write_text("hello")
    fs = headstart.extract(image_folder, tmp_path / "s", progress=False, **TINY)
    assert len(fs) == 16 and fs.meta["counts"] == {"images": 18, "extracted": 16, "skipped": 2}
    reasons = {Path(s["path"]).name: s["reason"] for s in fs.skipped}
    assert set(reasons) == {"zero.png", "text.jpg"} and "empty file" in reasons["zero.png"]
    assert all(Path(p).name not in reasons for p in fs.paths)


def test_cache_hit_does_no_model_work(tmp_path, image_folder, monkeypatch):
    first = headstart.extract(image_folder, tmp_path / "s", progress=False, **TINY)
    before = (tmp_path / "s" / "features.npy").read_bytes()

    def boom(*a, **k):
        raise AssertionError("the model was built or run on a cache hit")

    monkeypatch.setattr("headstart.features._model.feature_model_for", boom)
    again = headstart.extract(image_folder, tmp_path / "s", progress=False, **TINY)
    assert again.stats.cached and again.stats.computed == 0 and first.stats.computed == 16
    assert (tmp_path / "s" / "features.npy").read_bytes() == before
    # A changed input is not a cache hit, and a store is never silently replaced.
    make_image(image_folder / "a" / "new.png", seed=99)
    with pytest.raises(headstart.HeadstartError, match="--overwrite"):
        headstart.extract(image_folder, tmp_path / "s", progress=False, **TINY)


def _store_bytes(root: Path) -> dict:
    files = {n: (root / n).read_bytes() for n in ("features.npy", "index.csv", "skipped.csv")}
    meta = json.loads((root / "meta.json").read_text())
    for k in ("created", "finished"):  # wall-clock times are the only difference allowed
        meta.pop(k)
    return {**files, "meta": meta}


def test_resume_after_interruption_gives_identical_store(tmp_path, image_folder, monkeypatch):
    (image_folder / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    kw = dict(batch_size=2, chunk_batches=1, progress=False, **TINY)
    reference = headstart.extract(image_folder, tmp_path / "ref", **kw)
    calls = {"n": 0}
    original = StoreWriter.write_chunk

    def interrupt_after_three(self, *a, **k):
        original(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C after three finished chunks

    monkeypatch.setattr(StoreWriter, "write_chunk", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        headstart.extract(image_folder, tmp_path / "run", **kw)
    with pytest.raises(IncompleteStoreError, match="resume"):
        FeatureSet.load(tmp_path / "run")  # an unfinished store is never taken for a finished one
    monkeypatch.setattr(StoreWriter, "write_chunk", original)
    resumed = headstart.extract(image_folder, tmp_path / "run", **kw)
    assert resumed.stats.resumed_chunks == 3 and resumed.stats.computed == len(reference) - 6
    assert _store_bytes(tmp_path / "run") == _store_bytes(tmp_path / "ref")
    assert not (tmp_path / "run" / ".work").exists()


_SLOW_CHILD = """
import sys, time
from headstart.features._store import StoreWriter
orig = StoreWriter.write_chunk
def slow(self, *a, **k):
    orig(self, *a, **k)
    time.sleep(0.3)
StoreWriter.write_chunk = slow
import headstart.features._extract as ex
orig_extract = ex.extract
ex.extract = lambda *a, **k: orig_extract(*a, chunk_batches=1, **k)  # small chunks (an API-only setting)
from headstart.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_9_then_rerun_resumes_identically(tmp_path, image_folder, capsys):
    args = ["extract", str(image_folder), "--model", "test_resnet", "--weights", "none", "--batch-size", "2", "-q"]
    assert main([*args, "--out", str(tmp_path / "ref")]) == 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-c", _SLOW_CHILD, *args, "--out", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, env=env)
    chunks = tmp_path / "run" / ".work" / "chunks"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(chunks.glob("*.json"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "meta.json").exists()
    assert 2 <= len(list(chunks.glob("*.json"))) < 8  # killed midway: 8 chunks in all
    args.remove("-q")
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    assert "resumed after" in capsys.readouterr().out
    assert _store_bytes(tmp_path / "run") == _store_bytes(tmp_path / "ref")


def test_csv_source_and_cli(tmp_path, image_folder, capsys):
    csv_path = tmp_path / "list.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for p in sorted(image_folder.rglob("*.png"))[:5]:
            w.writerow([os.path.relpath(p, tmp_path), "x" + p.parent.name])
        w.writerow(["missing.png", "xa"])
    code = main(["extract", str(csv_path), "--out", str(tmp_path / "s"), "--model", "test_resnet", "--weights",
                 "none"])
    out, err = capsys.readouterr()
    # one rule for every command (issue 14): an input that failed is named on stderr and makes the exit code 1
    assert code == 1 and "extracted 5 of 6 images (1 skipped" in out and "missing.png: file not found" in err
    fs = FeatureSet.load(tmp_path / "s")
    assert set(fs.labels) == {"xa"} and len(fs) == 5
    # the cached rerun does no model work, and still names the input that failed (exit 1, the same rule)
    assert main(["extract", str(csv_path), "--out", str(tmp_path / "s"), "--model", "test_resnet", "--weights",
                 "none"]) == 1
    out, err = capsys.readouterr()
    assert "no model work done" in out and "missing.png: file not found" in err
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    assert main(["extract", str(bad), "--out", str(tmp_path / "t"), "-q", "--model", "test_resnet",
                 "--weights", "none"]) == 1  # nothing could be extracted


def test_layer_list(capsys):
    assert main(["extract", "--model", "vgg16", "--layer", "list"]) == 0
    out = capsys.readouterr().out
    assert "block5_pool" in out and "(None, 7, 7, 512)" in out and "fc2" in out and "(None, 4096)" in out


def test_float16_store(tmp_path, image_folder):
    fs = headstart.extract(image_folder, tmp_path / "s", dtype="float16", progress=False, **TINY)
    assert fs.features.dtype == np.float16 and fs.meta["dtype"] == "float16"


def test_sklearn_pipeline_fits_and_predicts(image_folder):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from headstart.sklearn import FeatureExtractor

    paths = [str(p) for p in sorted(image_folder.rglob("*.png"))]
    y = [Path(p).parent.name for p in paths]
    clf = make_pipeline(FeatureExtractor("test_resnet", weights=None), LogisticRegression(max_iter=1000))
    clf.fit(paths[::2], y[::2])
    assert (clf.predict(paths[1::2]) == np.array(y[1::2])).mean() >= 0.9
    X = clf[0].transform(paths[:3])
    assert X.shape == (3, 96) and X.dtype == np.float32
