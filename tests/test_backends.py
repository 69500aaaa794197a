"""Backends (issue 5): ONNX Runtime from a cached, parity-checked export; fallback to PyTorch; run exports."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart import backends
from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.runner import run_batches as batch_loader
from headstart import train

from conftest import make_image

pytest.importorskip("onnxruntime")

TINY = dict(model="test_resnet", weights=None, progress=False)


def test_onnxruntime_features_match_torch_and_are_recorded(tmp_path, image_folder):
    ort = headstart.extract(image_folder, tmp_path / "ort", backend="onnxruntime", layer="layer3", **TINY)
    ref = headstart.extract(image_folder, tmp_path / "pt", backend="torch", layer="layer3", **TINY)
    scale = np.abs(ref.features).max()
    assert np.abs(np.asarray(ort.features) - ref.features).max() <= backends.PARITY_TOL * scale
    b = ort.meta["backend"]
    assert b["name"] == "onnxruntime" and 0 <= b["parity"] <= backends.PARITY_TOL
    assert set(b["speed"]) == {"torch", "onnxruntime"} and Path(b["onnx_path"]).is_file()
    assert ref.meta["backend"]["name"] == "torch"


def test_export_is_cached_and_a_tampered_cache_is_replaced(tmp_path, image_folder):
    headstart.extract(image_folder, tmp_path / "a", backend="onnxruntime", **TINY)
    (onnx_file,) = (Path(headstart.weights.headstart_home()) / "onnx").glob("*.onnx")
    stamp = (onnx_file.stat().st_ino, onnx_file.stat().st_ctime_ns, onnx_file.read_bytes())
    headstart.extract(image_folder, tmp_path / "b", backend="onnxruntime", **TINY)
    # reused, not exported again (the cache only marks it as used: the LRU eviction order)
    assert (onnx_file.stat().st_ino, onnx_file.read_bytes()) == (stamp[0], stamp[2])
    onnx_file.write_bytes(onnx_file.read_bytes()[:1000])  # truncated behind our back
    fs = headstart.extract(image_folder, tmp_path / "c", backend="onnxruntime", **TINY)
    assert onnx_file.stat().st_size > 1000 and fs.meta["backend"]["name"] == "onnxruntime"


class _Scaled(torch.nn.Module):
    """A module whose trace differs from its eager runs (a fresh random factor each call): parity must fail."""

    def forward(self, x):
        return x.mean((2, 3)) * float(np.random.default_rng().uniform(1, 2))


class _Untraceable(torch.nn.Module):
    def forward(self, x):
        if torch.jit.is_tracing():
            raise RuntimeError("this forward cannot be traced")
        return x.mean((2, 3))


@pytest.mark.parametrize("module,why", [(_Scaled(), "differs from PyTorch"), (_Untraceable(), "export failed")])
def test_auto_falls_back_to_torch_with_a_message(module, why):
    said = []
    fn, info = backends.prepare(module, (3, 8, 8), backend="auto", say=said.append)
    assert info.name == "torch" and isinstance(fn, backends.TorchFn)
    assert len(said) == 1 and why in said[0] and "Using PyTorch" in said[0]
    with pytest.raises(HeadstartError, match=why):
        backends.prepare(module, (3, 8, 8), backend="onnxruntime")


def test_missing_onnxruntime_falls_back(monkeypatch):
    monkeypatch.setattr(backends, "onnxruntime_available", lambda: False)
    said = []
    _, info = backends.prepare(_Untraceable(), (3, 8, 8), say=said.append)
    assert info.name == "torch" and "not installed" in said[0]
    with pytest.raises(HeadstartError, match="not installed"):
        backends.prepare(_Untraceable(), (3, 8, 8), backend="onnxruntime")


def test_argument_errors():
    with pytest.raises(HeadstartError, match="backend must be one of"):
        backends.prepare(_Untraceable(), (3, 8, 8), backend="tensorrt")
    if not torch.cuda.is_available():
        with pytest.raises(HeadstartError, match="no CUDA GPU"):
            backends.resolve_device("cuda")


class _MainProcessFn:
    """Stands in for the GPU layout on a CPU machine: workers only decode, the main process runs the network."""

    runs_in_workers = False

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x):
        self.calls += 1
        return self.fn(x)


def test_gpu_layout_runs_network_in_main_process_with_same_results(image_folder):
    from headstart.data import read_source
    from headstart.features import ExtractConfig, feature_model_for

    fm = feature_model_for(ExtractConfig(model="test_resnet", weights=None))
    items = read_source(image_folder)
    batches = [list(range(i, min(i + 4, len(items)))) for i in range(0, len(items), 4)]
    fn = backends.TorchFn(fm.as_module())
    main_fn = _MainProcessFn(fn)
    a = np.concatenate([x for _, x, _ in batch_loader(items, fm.preprocessing.transform(), fn, batches, workers=2)])
    b = np.concatenate([x for _, x, _ in batch_loader(items, fm.preprocessing.transform(), main_fn, batches,
                                                      workers=2)])
    assert main_fn.calls == len(batches)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for cls, color in (("red", (220, 40, 40)), ("blue", (40, 40, 220))):
        for i in range(10):
            make_image(root / cls / f"{cls}{i}.png", size=(40, 40), color=color, noise=40, seed=i)
    out = tmp_path_factory.mktemp("run")
    train(root, out, strategy="head", model="test_efficientnet", weights=None, input_shape=(64, 64, 3), epochs=3,
          workers=0, progress=False)
    return out, root


def test_export_run_then_predict_uses_it_and_refuses_a_tampered_file(run_dir, capsys):
    run, data = run_dir
    images = [str(p) for p in sorted(data.rglob("*.png"))]
    assert main(["export", str(run)]) == 0
    assert "parity with PyTorch" in capsys.readouterr().out
    record = json.loads((run / "model.onnx.json").read_text())
    assert record["parity"] <= backends.PARITY_TOL and record["input_size"] == [3, 64, 64]
    model = headstart.load(run)
    assert model.onnx_path == run / "model.onnx"
    ort = model.predict(images, top=2, backend="onnxruntime")
    pt = model.predict(images, top=2, backend="torch")
    for a, b in zip(ort, pt):
        assert [p.label for p in a.predictions] == [p.label for p in b.predictions]
        assert abs(a.predictions[0].probability - b.predictions[0].probability) <= backends.PARITY_TOL
    data_bytes = bytearray((run / "model.onnx").read_bytes())
    data_bytes[-1] ^= 0xFF
    (run / "model.onnx").write_bytes(bytes(data_bytes))
    assert main(["predict", str(run), images[0], "--backend", "onnxruntime"]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert main(["predict", str(run), images[0], "--backend", "torch"]) == 0  # the safetensors model still works
    train(data, run, strategy="head", model="test_efficientnet", weights=None, input_shape=(64, 64, 3), epochs=2,
          workers=0, progress=False, overwrite=True)  # retraining into the folder retires the old export
    assert not (run / "model.onnx").exists() and main(["predict", str(run), images[0]]) == 0


def test_classify_files_on_onnxruntime_matches_torch(tmp_path, image_folder):
    model = headstart.create_model("test_resnet", weights=None)
    files = sorted(image_folder.rglob("*.png"))[:6]
    a = headstart.classify(files, model, top=3, backend="onnxruntime")
    b = headstart.classify(files, model, top=3, backend="torch")
    c = headstart.classify([str(f) for f in files] + [str(tmp_path / "missing.jpg")], model, top=3)
    for x, y in zip(a, b):
        np.testing.assert_allclose([p.probability for p in x.predictions], [p.probability for p in y.predictions],
                                   atol=1e-5)
    assert c[-1].error and all(r.ok for r in c[:-1])


def test_device_jpeg_decoding_matches_pillow_path(tmp_path, image_folder):
    """The --gpu-decode path (torchvision.io.decode_jpeg + tensor resize), run here with device='cpu'."""
    from PIL import Image

    from headstart.data import Item
    from headstart.features import ExtractConfig, feature_model_for

    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(120, 90), (90, 140), (400, 60)]):  # landscape, portrait, a strip past 4:1
        yy, xx = np.mgrid[0:size[1], 0:size[0]]
        arr = np.stack([(xx * (k + 1) + yy * 2) % 256 for k in range(3)], -1) + rng.normal(0, 8, (*size[::-1], 3))
        p = tmp_path / f"p{i}.jpg"
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(p, quality=92)
        paths.append(p)
    gray = tmp_path / "g.jpg"
    Image.open(paths[0]).convert("L").save(gray)
    png = sorted(image_folder.rglob("*.png"))[0]  # not a JPEG: decoded by Pillow in the worker
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(paths[0].read_bytes()[:300])
    items = [Item(str(p)) for p in [*paths, gray, png, broken]]
    fm = feature_model_for(ExtractConfig(model="test_resnet", weights=None))
    fn = _MainProcessFn(backends.TorchFn(fm.as_module()))
    fn.device = torch.device("cpu")
    batches = [[0, 1, 2], [3, 4, 5]]
    ref = list(batch_loader(items, fm.preprocessing.transform(), fn, batches, workers=1))
    dev = list(batch_loader(items, fm.preprocessing.transform(), fn, batches, workers=1,
                            device_decode=fm.preprocessing.tensor_transform()))
    a = np.concatenate([x for _, x, _ in ref])
    b = np.concatenate([x for _, x, _ in dev])
    assert a.shape == b.shape == (5, 96)  # the truncated JPEG is reported, not decoded, on both paths
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > 0.99
    assert [i[3] is None for _, _, infos in dev for i in infos] == [True] * 5 + [False]
    assert [i[:3] for _, _, infos in ref for i in infos] == [i[:3] for _, _, infos in dev for i in infos]


def test_cache_command_shows_and_clears(tmp_path, image_folder, capsys):
    headstart.extract(image_folder, tmp_path / "s", backend="onnxruntime", **TINY)
    assert main(["cache"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    # the export, its record, and the by-id entry that finds it without building the model
    assert {"weights", "activations", "onnx"} <= set(lines) and " 3 files" in lines["onnx"]
    assert main(["cache", "--clear", "onnx"]) == 0
    assert "removed onnx: 3 files" in capsys.readouterr().out
    assert not (Path(headstart.weights.headstart_home()) / "onnx").exists()
    assert main(["cache", "--clear", "everything"]) == 2
    assert "invalid choice: 'everything'" in capsys.readouterr().err
