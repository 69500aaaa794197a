import json

import pytest

import headstart
from headstart.cli import main


@pytest.mark.realweights
def test_real_weights_classify_well_known_photos(lite0, sample_photos):
    results = headstart.classify(list(sample_photos.values()), lite0, top=5)
    by_name = dict(zip(sample_photos, results))
    coffee = by_name["coffee"].predictions
    assert coffee[0].label == "espresso" and coffee[0].probability > 0.8
    cat_labels = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "lynx"}
    assert by_name["chelsea"].predictions[0].label in cat_labels
    assert "military uniform" in {p.label for p in by_name["grace_hopper"].predictions}
    probs = [p.probability for p in coffee]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0


@pytest.mark.realweights
def test_cli_classify_json_and_bad_files(sample_photos, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    code = main(["classify", str(sample_photos["coffee"]), str(bad), "--top", "2", "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    data = json.loads(out)
    assert data[0]["predictions"][0]["label"] == "espresso" and data[0]["predictions"][0]["index"] == 967
    assert set(data[0]["predictions"][0]) == {"label", "index", "probability"} and len(data[0]["predictions"]) == 2
    assert data[1]["predictions"] == [] and f"{bad}" in err and "not an image" in err
    assert main(["classify", str(sample_photos["coffee"]), "--top", "1"]) == 0
    assert "espresso (" in capsys.readouterr().out


def test_cli_summary_and_errors(capsys):
    assert main(["summary", "vgg16", "--weights", "none", "--no-top", "--input-shape", "300,300",
                 "--head", "flatten,dense:1024:relu", "--classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 57,193,290" in out and "block5_pool (MaxPooling2D)" in out
    assert main(["summary", "no_such_model"]) == 2
    assert "Unknown model" in capsys.readouterr().err
    assert main(["summary", "lite0", "--no-top", "--input-shape", "abc"]) == 2


def test_cli_models_lists_offline_status(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "pip package" in out
