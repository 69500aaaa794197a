"""Missing weights, in the caller's words; `headstart weights add/download/list` for machines without network."""
import dataclasses
import hashlib

import pytest
import torch
from test_weights import http_root  # noqa: F401  (a throwaway HTTP server on 127.0.0.1)

import headstart
from headstart import WeightsNotFoundError
from headstart.cli import main
from headstart.data import Preprocessing
from headstart.errors import ChecksumError, words
from headstart.home import weights_dir
from headstart.models import _registry
from headstart.weights import WeightsSpec, add_weights_file, sha256_file

from conftest import make_image

CLOSED = "http://127.0.0.1:9"  # nothing listens on port 9: the download fails at once, as offline


def _checkpoint(path):
    """A real checkpoint of the tiny test_resnet, so that a registered model can load it."""
    torch.save(headstart.create_model("test_resnet", weights=None).backbone.state_dict(), path)
    return sha256_file(path)


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """A registered model `tinyw` whose weights (a small real file) are not in the cache and cannot download."""
    src = tmp_path / "download" / "tinyw.pth"
    src.parent.mkdir()
    sha = _checkpoint(src)
    spec = WeightsSpec(filename=f"tinyw-{sha[:8]}.pth", sha256=sha, size=src.stat().st_size,
                       url=f"{CLOSED}/tinyw-{sha[:8]}.pth", preprocessing=Preprocessing())
    monkeypatch.setitem(_registry.MODELS, "tinyw", _registry.ModelSpec(name="tinyw", arch="test_resnet",
                                                                       weights=spec))
    return src, spec


def test_python_caller_gets_python_words(tiny):
    src, spec = tiny
    with pytest.raises(WeightsNotFoundError) as info:
        headstart.create_model("tinyw")
    msg = str(info.value)
    assert spec.sha256 in msg and len(spec.sha256) == 64  # the full digest: a hand-placed file can be checked
    assert "weights=PATH" in msg and "weights=None" in msg and "--weights" not in msg
    assert f"`headstart weights download {spec.filename}`" in msg and "`headstart weights add FILE`" in msg
    assert str(weights_dir() / spec.filename) in msg


def test_command_line_caller_gets_flags(tiny, tmp_path, capsys):
    src, spec = tiny
    image = make_image(tmp_path / "photo.png")
    assert main(["classify", str(image), "--model", "tinyw"]) == 2
    err = capsys.readouterr().err
    assert spec.sha256 in err and "--weights PATH" in err and "--weights none" in err
    assert "weights=" not in err and "`headstart weights add FILE`" in err
    assert words("weights=None", "--weights none") == "weights=None"  # the CLI's words end with its command


def test_prefix_only_digest_is_said_to_be_a_prefix(tmp_path):
    spec = WeightsSpec(filename="w-12345678.pth", sha256="12345678", url=f"{CLOSED}/w-12345678.pth",
                       preprocessing=Preprocessing())
    with pytest.raises(WeightsNotFoundError, match="SHA-256 starting 12345678 \\(only these 8 hex digits"):
        headstart.weights.resolve_weights_file(spec, cache_dir=tmp_path)


@pytest.mark.parametrize("name", ["vgg16", "vgg19", "resnet50", "inception_v3"])
def test_torchvision_weights_have_full_digests(name):
    spec = _registry.MODELS[name].weights
    prefix = spec.filename.rsplit("-", 1)[1].split(".")[0]
    assert len(spec.sha256) == 64 and spec.sha256.startswith(prefix) and spec.size > 10**8


def test_add_matching_file_then_load_offline(tiny, capsys):
    src, spec = tiny
    assert main(["weights", "add", str(src)]) == 0
    dest = weights_dir() / spec.filename
    assert dest.read_bytes() == src.read_bytes() and "the weights of tinyw" in capsys.readouterr().out
    assert [p.name for p in weights_dir().iterdir()] == [spec.filename]  # no temporary file left
    model = headstart.create_model("tinyw")  # offline: the cache now has it
    assert torch.equal(model.backbone.fc.weight, torch.load(src, weights_only=True)["fc.weight"])
    assert main(["weights", "add", str(src)]) == 0  # again: already there, nothing changes
    assert "already" not in capsys.readouterr().err


def test_add_non_matching_file_is_refused_and_nothing_copied(tiny, tmp_path, capsys):
    _, spec = tiny
    other = tmp_path / "other.pth"
    other.write_bytes(b"some other checkpoint")
    assert main(["weights", "add", str(other)]) == 2
    err = capsys.readouterr().err
    assert "is not a registered weights file, so it was not added" in err
    assert f"{spec.filename} ({spec.size:,} bytes, SHA-256 {spec.sha256})" in err  # what it is not
    assert "--weights PATH" in err
    assert not weights_dir().exists() or list(weights_dir().iterdir()) == []


def test_add_truncated_copy_says_it_is_incomplete(tiny, tmp_path):
    src, spec = tiny
    cut = tmp_path / spec.filename
    cut.write_bytes(src.read_bytes()[:1000])
    with pytest.raises(ChecksumError, match=f"named like {spec.filename}.*1,000 of {spec.size:,} bytes"):
        add_weights_file(cut)


def test_add_by_published_prefix_needs_the_size(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"x" * 100)
    digest = hashlib.sha256(b"x" * 100).hexdigest()
    spec = WeightsSpec(filename=f"w-{digest[:8]}.pth", sha256=digest[:8], size=100, preprocessing=Preprocessing())
    names, dest = add_weights_file(f, specs={"w": spec}, cache_dir=tmp_path / "cache")
    assert names == ["w"] and dest.read_bytes() == f.read_bytes()
    with pytest.raises(ChecksumError):
        add_weights_file(f, specs={"w": dataclasses.replace(spec, size=101)}, cache_dir=tmp_path / "c2")


def test_download_into_the_cache(tiny, http_root, capsys):  # noqa: F811
    src, spec = tiny
    root, base = http_root
    (root / spec.filename).write_bytes(src.read_bytes())
    _registry.MODELS["tinyw"] = dataclasses.replace(
        _registry.MODELS["tinyw"], weights=dataclasses.replace(spec, url=f"{base}/{spec.filename}"))
    assert main(["weights", "download", "tinyw"]) == 0
    assert (weights_dir() / spec.filename).read_bytes() == src.read_bytes()
    assert "tinyw: downloaded to" in capsys.readouterr().out
    assert main(["weights", "download", spec.filename]) == 0  # by file name; already there
    assert "already in the cache" in capsys.readouterr().out


def test_corrupted_download_is_refused_and_nothing_left(tiny, http_root, capsys):  # noqa: F811
    src, spec = tiny
    root, base = http_root
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in transit
    (root / spec.filename).write_bytes(bytes(data))
    _registry.MODELS["tinyw"] = dataclasses.replace(
        _registry.MODELS["tinyw"], weights=dataclasses.replace(spec, url=f"{base}/{spec.filename}"))
    assert main(["weights", "download", "tinyw"]) == 2
    assert "Checksum mismatch" in capsys.readouterr().err
    assert list(weights_dir().iterdir()) == []


def test_unknown_name_downloads_nothing(capsys):
    assert main(["weights", "download", "vgg16", "nosuch"]) == 2
    assert "No registered weights are named 'nosuch'" in capsys.readouterr().err
    assert not weights_dir().exists()


def test_list_shows_every_registered_file(capsys):
    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    vgg = _registry.MODELS["vgg16"].weights
    assert vgg.filename in out and vgg.sha256 in out and vgg.url in out and str(weights_dir()) in out
