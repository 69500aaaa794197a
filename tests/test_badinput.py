"""Every image-reading command on a generated corpus of messy inputs: readable images are processed correctly,
each unreadable one gets one line naming the file and the cause, and the run goes on."""
import json
import os

import pytest

import headstart
from headstart import ImageLoadError
from headstart.cli import main
from headstart.features import FeatureSet

from badinput import COLOUR, SIZE, colour_of, make_corpus
from conftest import make_image

TINY = ["--model", "test_resnet", "--weights", "none"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus") / "messy")


def test_corpus_has_at_least_30_kinds(corpus):
    assert len(corpus) >= 30


def test_load_image_on_every_kind(corpus):
    for kind, (path, expected) in corpus.items():
        if expected == "ok":
            im = headstart.load_image(path)
            assert im.mode == "RGB", kind
            assert colour_of(im) == COLOUR.get(kind, "red"), kind
            if kind in SIZE:
                assert im.size == SIZE[kind], kind
        else:
            with pytest.raises(ImageLoadError) as info:
                headstart.load_image(path)
            assert expected in info.value.cause, (kind, info.value.cause)
            assert str(path) in str(info.value), kind


def _read(capfdbinary) -> tuple[str, str]:
    """stdout/stderr as str; a non-UTF-8 file name comes out as its original bytes (surrogate-escaped here)."""
    cap = capfdbinary.readouterr()
    return cap.out.decode("utf-8", "surrogateescape"), cap.err.decode("utf-8", "surrogateescape")


def test_classify_reports_each_bad_file_and_classifies_the_rest(corpus, capfdbinary):
    paths = [str(p) for p, _ in corpus.values()]
    code = main(["classify", *paths, "--json", "--top", "1", *TINY])
    out, err = _read(capfdbinary)
    assert code == 1
    results = {r["path"]: r for r in json.loads(out)}
    bad = [(p, e) for p, e in corpus.values() if e != "ok"]
    assert len(err.strip().splitlines()) == len(bad)
    for path, expected in corpus.values():
        r = results[str(path)]
        if expected == "ok":
            assert len(r["predictions"]) == 1, path
        else:
            assert r["predictions"] == [] and expected in r["error"]
            assert f"error: {path}: " in err


def test_extract_skips_bad_files_and_keeps_the_rest(corpus, tmp_path, capfdbinary):
    root = next(iter(corpus.values()))[0].parent
    # exit 1: some inputs failed, each named on stderr; the rest were extracted (one rule for every command)
    assert main(["extract", str(root), "--out", str(tmp_path / "store"), *TINY, "-q", "--workers", "1"]) == 1
    err = capfdbinary.readouterr().err.decode("utf-8", "surrogateescape")
    fs = FeatureSet.load(tmp_path / "store")
    assert len([line for line in err.splitlines() if line.startswith("error: ")]) == len(fs.skipped) > 0
    good = {str(p) for p, e in corpus.values() if e == "ok"}
    assert set(fs.paths) == good
    reasons = {s["path"]: s["reason"] for s in fs.skipped}
    for path, expected in corpus.values():
        if expected != "ok" and not path.is_dir():
            assert expected in reasons[str(path)], path
    assert len(fs.features) == len(good)


def test_train_predict_evaluate_with_bad_files(tmp_path, corpus, capfdbinary):
    data = tmp_path / "data"
    for cls, color in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
        for i in range(8):
            make_image(data / cls / f"{i}.png", color=color, noise=20, seed=i)
        (data / cls / "empty.png").write_bytes(b"")
        (data / cls / "text.jpg").write_text("nope")
    run = tmp_path / "run"
    (data / "red" / "cut.png").write_bytes((data / "red" / "0.png").read_bytes()[:300])  # header fine, data cut
    assert main(["train", str(data), "--out", str(run), *TINY, "--strategy", "probe", "--input-shape", "64,64",
                 "--workers", "0", "-q"]) == 1  # trained on the rest; the unreadable ones named, as elsewhere
    err = _read(capfdbinary)[1]
    named = sorted(os.path.basename(line.split(": ")[1]) for line in err.splitlines() if line.startswith("error: "))
    assert named == ["cut.png", "empty.png", "empty.png", "text.jpg", "text.jpg"]
    assert (run / "model.safetensors").is_file()
    paths = [str(p) for p, _ in corpus.values()]
    assert main(["predict", str(run), *paths]) == 1
    out, err = _read(capfdbinary)
    assert len(out.strip().splitlines()) == sum(e == "ok" for _, e in corpus.values())
    assert len(err.strip().splitlines()) == sum(e != "ok" for _, e in corpus.values())
    # the bad files are listed, not scored (--include-seen: the run trained on most of these images)
    assert main(["evaluate", str(run), str(data), "--json", "--include-seen"]) == 1
    m = json.loads(_read(capfdbinary)[0])
    assert m["n"] == 16 and len(m["skipped"]) == 5 and m["accuracy"] > 0.9


@pytest.mark.parametrize("content,match", [
    ("", "no rows|'path' column"), ("file,label\na.png,x\n", "'path' column"), ("path,label\n", "no rows"),
    ("path,label\n,x\n", "empty 'path'"),
])
def test_bad_csv_sources(tmp_path, content, match, capsys):
    (tmp_path / "list.csv").write_text(content)
    assert main(["extract", str(tmp_path / "list.csv"), "--out", str(tmp_path / "s"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and __import__("re").search(match, err)


def test_empty_folder_and_missing_path(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["extract", str(tmp_path / "empty"), "--out", str(tmp_path / "s"), *TINY]) == 2
    assert "contains no images" in capsys.readouterr().err
    assert main(["extract", str(tmp_path / "nope"), "--out", str(tmp_path / "s"), *TINY]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_permissions(tmp_path):
    p = make_image(tmp_path / "secret.png")
    p.chmod(0)
    with pytest.raises(ImageLoadError, match="permission denied"):
        headstart.load_image(p)
