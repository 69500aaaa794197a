"""Untrusted files and invalid arguments (issue 6): nothing executed, nothing pickled, clear messages."""
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import headstart
from headstart.cli import main
from headstart.config import ConfigError, read_config
from headstart.training import TrainConfig, train

from conftest import make_image


class _Payload:
    """Unpickling this runs `touch MARKER`: the classic malicious-checkpoint payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "PWNED"
    files = {}
    files["pth"] = tmp_path / "evil.pth"  # torch.save's zip format with a pickle inside
    torch.save({"conv1.weight": _Payload(marker)}, files["pth"])
    files["raw"] = tmp_path / "evil.pkl.pth"  # a bare pickle stream
    files["raw"].write_bytes(pickle.dumps({"conv1.weight": _Payload(marker)}))
    files["st"] = tmp_path / "evil.safetensors"  # a pickle wearing a safetensors name
    files["st"].write_bytes(files["raw"].read_bytes())
    # The payloads are real: plain pickle would run them (checked on a copy with its own marker).
    probe = tmp_path / "PROBE"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.exists()
    return marker, files


def test_malicious_weights_refused_by_every_command(evil, image_folder, tmp_path, capsys):
    marker, files = evil
    img = str(sorted(image_folder.rglob("*.png"))[0])
    for kind, path in files.items():
        w = ["--model", "test_resnet", "--weights", str(path)]
        commands = [["classify", img, *w], ["summary", "test_resnet", "--weights", str(path)],
                    ["extract", str(image_folder), "--out", str(tmp_path / f"x-{kind}"), "-q", *w],
                    ["train", str(image_folder), "--out", str(tmp_path / f"r-{kind}"), "--strategy", "probe", "-q",
                     *w]]
        for argv in commands:
            assert main(argv) == 2, (kind, argv[0])
            err = capsys.readouterr().err
            assert "error:" in err and "Traceback" not in err, (kind, argv[0], err)
    assert not marker.exists()


@pytest.fixture
def run_dir(tmp_path, image_folder):
    run = tmp_path / "run"
    train(image_folder, run, strategy="probe", model="test_resnet", weights=None, input_shape=(32, 32, 3),
          progress=False, workers=0)
    return run


def test_malicious_run_files_refused(run_dir, evil, image_folder, capsys):
    marker, files = evil
    img = str(sorted(image_folder.rglob("*.png"))[0])
    (run_dir / "model.safetensors").write_bytes(files["raw"].read_bytes())
    assert main(["predict", str(run_dir), img]) == 2
    assert main(["evaluate", str(run_dir), str(image_folder)]) == 2
    assert main(["export", str(run_dir)]) == 2
    assert not marker.exists() and "Traceback" not in capsys.readouterr().err


def test_malicious_onnx_and_config_and_store_refused(run_dir, evil, image_folder, tmp_path, capsys):
    marker, files = evil
    img = str(sorted(image_folder.rglob("*.png"))[0])
    assert main(["export", str(run_dir)]) == 0
    # Replace the export and forge its record's checksum: the file is still only parsed as protobuf, and fails.
    onnx_file = run_dir / "model.onnx"
    onnx_file.write_bytes(files["raw"].read_bytes())
    record = json.loads((run_dir / "model.onnx.json").read_text())
    record["sha256"] = headstart.weights.sha256_file(onnx_file)
    (run_dir / "model.onnx.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["predict", str(run_dir), img, "--backend", "onnxruntime"]) == 2
    assert "not a loadable ONNX model" in capsys.readouterr().err
    # A config file that is a pickle is not JSON: refused, not loaded.
    assert main(["train", str(image_folder), "--out", str(tmp_path / "r2"), "--config", str(files["raw"])]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err
    # A feature store whose features.npy holds a pickled object array.
    store = tmp_path / "store"
    headstart.extract(image_folder, store, model="test_resnet", weights=None, progress=False)
    np.save(store / "features.npy", np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(headstart.HeadstartError, match="refused"):
        headstart.FeatureSet.load(store)
    assert not marker.exists()


def test_outputs_contain_no_pickle(run_dir, image_folder, tmp_path):
    store = tmp_path / "store"
    headstart.extract(image_folder, store, model="test_resnet", weights=None, progress=False)
    headstart.export_run(run_dir)
    files = [p for root in (run_dir, store) for p in root.rglob("*") if p.is_file()]
    allowed = {".safetensors", ".json", ".npy", ".csv", ".png", ".txt", ".onnx", ".html"}
    assert files and {p.suffix for p in files} <= allowed
    for p in files:
        head = p.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", p  # neither a pickle stream nor torch.save's zip
    np.load(store / "features.npy", allow_pickle=False)


def test_config_file_is_data_with_clear_errors(tmp_path, run_dir):
    # A run's own train_config.json is a valid config file (its record keys are ignored).
    values = read_config(run_dir / "train_config.json", TrainConfig)
    assert values["strategy"] == "probe" and values["input_shape"] == (32, 32, 3) and "data" not in values
    cases = {
        "a.json": ('{"epochz": 3}', "unknown setting 'epochz'. Did you mean epochs"),
        "b.json": ('{"epochs": "3"}', "epochs: expected an integer; received '3'"),
        "c.json": ('[1, 2]', "expected an object of settings"),
        "d.json": ('{"lr": ', "not valid JSON"),
        "e.toml": ('epochs = [', "not valid TOML"),
        "f.json": ('{"input_shape": [64, 64]}', "input_shape: expected a list of 3 integers"),
        "g.json": ('{"epochs": true}', "expected an integer"),
        "h.yaml": ('!!python/object/apply:os.system ["touch PWNED"]', "not valid JSON"),
    }
    for name, (text, msg) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("(", r"\(")):
            read_config(tmp_path / name, TrainConfig)
    (tmp_path / "ok.toml").write_text('strategy = "head"\nepochs = 4\nlr = 1\n')
    assert read_config(tmp_path / "ok.toml", TrainConfig) == {"strategy": "head", "epochs": 4, "lr": 1.0}
    assert not Path("PWNED").exists()


def test_cli_flags_override_config_file(tmp_path, image_folder, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": "test_resnet", "weights": None, "strategy": "head", "epochs": 2,
                               "input_shape": [32, 32, 3], "workers": 0}))
    run = tmp_path / "run"
    assert main(["train", str(image_folder), "--out", str(run), "--config", str(cfg), "--epochs", "3", "-q"]) == 0
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["epochs"] == 3 and saved["strategy"] == "head" and saved["model"] == "test_resnet"


@pytest.mark.parametrize("argv,msg", [
    (["classify", "x.jpg", "--model", "resnet5"], "Did you mean: resnet50"),
    (["extract", "d", "--out", "o", "--model", "test_resnet", "--weights", "none", "--layer", "layer9"],
     "has no layer 'layer9'"),
    (["summary", "lite0", "--weights", "none", "--input-shape", "16,16"], "at least 32 pixels"),
    (["summary", "lite0", "--classes", "10"], "classes must be 1000"),
    (["train", "d", "--out", "o", "--strategy", "probe", "--augment", "light"], "--augment does not apply"),
    (["train", "d", "--out", "o", "--strategy", "head", "--unfreeze-from", "blocks.1"], "does not apply"),
    (["train", "d", "--out", "o", "--strategy", "finetune", "--budget", "60"], "--budget does not apply"),
    (["train", "d", "--out", "o", "--lr", "-1"], "lr must be > 0"),
    (["train", "d", "--out", "o", "--val-split", "1.5"], "fraction in [0, 1)"),
    (["train", "d", "--out", "o", "--val-split", "0.5", "--test-split", "0.5"], "leave images to train on"),
    (["predict", "nowhere", "x.jpg"], "is not a headstart run"),
    (["extract", "d", "--out", "o", "--model", "test_resnet", "--weights", "none", "--device", "cuda"], "no CUDA GPU"),
])
def test_invalid_arguments_say_what_was_expected(argv, msg, tmp_path, monkeypatch, capsys):
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "x.jpg")
    for cls in ("a", "b"):
        for i in range(4):
            make_image(tmp_path / "d" / cls / f"{i}.png", seed=i)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv,msg", [(["classify", "x.jpg", "--top", "0"], "expected an integer ≥ 1"),
                                      (["classify", "x.jpg", "--batch-size", "x"], "expected an integer ≥ 1"),
                                      (["extract", "x", "--out", "o", "--workers", "-1"], "an integer ≥ 0"),
                                      (["train", "d", "--out", "o", "--epochs", "0"], "an integer ≥ 1")])
def test_argument_types_are_checked_before_any_work(argv, msg, capsys):
    """Wrong types fail in the parser, out-of-range values in the one settings check; both exit 2, no traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err, err


def test_closed_pipe_is_quiet_not_a_file_system_error():
    """`headstart ... | head`: BrokenPipeError is an OSError, but it is not a disk problem (exit 1, nothing said)."""
    import subprocess
    import sys

    code = ("import sys; import headstart.cli._models as m\n"
            "def run(args): raise BrokenPipeError(32, 'Broken pipe')\n"
            "m.run = run\n"
            "from headstart.cli import main; sys.exit(main(['models']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr == "", r.stderr
