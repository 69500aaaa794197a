"""`headstart export RUN --int8` (issue 27): ONNX Runtime static quantization calibrated on the run's own images,
its test accuracy beside fp32's, refused beyond the stated drop, and used by predict and serve."""
import json

import pytest

import headstart
from headstart.cli import main
from headstart.training import train


@pytest.fixture
def run(tmp_path, image_folder):
    out = tmp_path / "run"
    train(image_folder, out, strategy="probe", model="test_resnet", weights=None, input_shape=(32, 32, 3),
          progress=False, workers=0, copy_check=False, test_split=0.25)
    return out


def test_int8_export_is_measured_used_and_checked(run, image_folder, capsys):
    assert main(["export", str(run), "--int8"]) == 0
    out = capsys.readouterr().out
    assert "model.int8.onnx: test accuracy" in out and "fp32" in out
    record = json.loads((run / "model.int8.onnx.json").read_text())
    test = json.loads((run / "test_predictions.json").read_text())["items"]
    assert record["test_images"] == len(test) and 0 <= record["int8_accuracy"] <= 1
    assert record["fp32_accuracy"] - record["int8_accuracy"] <= record["max_drop"] == 0.01
    assert 0 < record["calibration_images"] <= len(list(image_folder.rglob("*.png"))) - len(test)
    images = [it["path"] for it in test]
    fp32 = headstart.load(run).predict(images, top=2)
    int8 = headstart.load(run).predict(images, top=2, backend="int8")
    assert [r.predictions[0].label for r in fp32] == [r.predictions[0].label for r in int8]
    assert all(abs(a.predictions[0].probability - b.predictions[0].probability) < 0.1 for a, b in zip(fp32, int8))
    assert main(["predict", str(run), images[0], "--int8", "--json"]) == 0
    from headstart.serve import ServedModel

    assert ServedModel(run, "int8").predictor.info.name == "onnxruntime-int8"
    # a changed file is refused, as the fp32 export is
    (run / "model.int8.onnx").write_bytes((run / "model.int8.onnx").read_bytes() + b"\0")
    capsys.readouterr()
    assert main(["predict", str(run), images[0], "--int8"]) == 2
    assert "checksum mismatch" in capsys.readouterr().err


def test_int8_that_loses_too_much_is_refused_and_not_written(run):
    from headstart.export import export_int8

    with pytest.raises(headstart.HeadstartError, match=r"int8 loses .* points .* nothing was written"):
        export_int8(run, max_drop=-1.0)  # any result "loses" more than -100 points
    assert not (run / "model.int8.onnx").exists() and not (run / "model.int8.onnx.json").exists()
