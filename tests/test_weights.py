import http.server
import os
import pickle
import threading
from functools import partial
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import headstart
from headstart import ChecksumError, WeightsError, WeightsNotFoundError
from headstart.data import Preprocessing
from headstart.weights import WeightsSpec, read_state_dict, resolve_weights_file, sha256_file


@pytest.fixture
def http_root(tmp_path):
    """A throwaway HTTP server on 127.0.0.1 serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _tiny_checkpoint(path: Path) -> str:
    model = headstart.create_model("test_resnet", weights=None)
    torch.save(model.backbone.state_dict(), path)
    return sha256_file(path)


def _spec(filename: str, sha: str, url: str | None = None) -> WeightsSpec:
    return WeightsSpec(filename=filename, sha256=sha, url=url, preprocessing=Preprocessing())


def test_download_from_local_server_with_checksum(http_root, tmp_path):
    root, base = http_root
    sha = _tiny_checkpoint(root / "tiny-abc.pth")
    cache = tmp_path / "cache"
    path = resolve_weights_file(_spec("tiny-abc.pth", sha, f"{base}/tiny-abc.pth"), cache_dir=cache)
    assert path == cache / "tiny-abc.pth" and sha256_file(path) == sha
    # Second call uses the cache: the server no longer has the file.
    (root / "tiny-abc.pth").unlink()
    assert resolve_weights_file(_spec("tiny-abc.pth", sha, f"{base}/tiny-abc.pth"), cache_dir=cache) == path
    sd = read_state_dict(path)
    model = headstart.create_model("test_resnet", weights=path)
    assert torch.equal(model.backbone.fc.weight, sd["fc.weight"])


def test_corrupted_download_is_refused_and_nothing_left(http_root, tmp_path):
    root, base = http_root
    sha = _tiny_checkpoint(root / "tiny.pth")
    data = bytearray((root / "tiny.pth").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in transit
    (root / "tiny.pth").write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumError, match="expected SHA-256"):
        resolve_weights_file(_spec("tiny.pth", sha, f"{base}/tiny.pth"), cache_dir=cache)
    assert list(cache.iterdir()) == []  # no partial or corrupt file kept


def test_cached_file_with_wrong_checksum_refuses_to_load(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "w.pth").write_bytes(b"not the published file")
    with pytest.raises(ChecksumError):
        resolve_weights_file(_spec("w.pth", "0" * 64), cache_dir=cache)


def test_offline_message_says_where_to_put_the_file(tmp_path):
    spec = _spec("w-12345678.pth", "12345678", "http://127.0.0.1:9/w-12345678.pth")  # port 9: nothing listens
    with pytest.raises(WeightsNotFoundError) as info:
        resolve_weights_file(spec, cache_dir=tmp_path)
    msg = str(info.value)
    assert str(tmp_path / "w-12345678.pth") in msg and "weights=PATH" in msg


def test_lite0_package_weights_hash_is_checked(monkeypatch, tmp_path):
    spec = headstart.models.get_spec("lite0").weights
    path = resolve_weights_file(spec)
    assert sha256_file(path) == spec.sha256
    bad = tmp_path / "models" / spec.filename
    bad.parent.mkdir()
    bad.write_bytes(path.read_bytes()[:-10])
    monkeypatch.setattr("headstart.weights.package_file", lambda s: bad)
    with pytest.raises(ChecksumError):
        resolve_weights_file(spec)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_checkpoint_is_refused_without_running(tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"conv1.weight": _Payload(marker)}, f)
    with pytest.raises(WeightsError, match="Refused"):
        headstart.create_model("test_resnet", weights=evil)
    assert not marker.exists()
    # The payload is real: plain pickle would have run it.
    with open(evil, "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_safetensors_weights_and_shape_check(tmp_path):
    src = headstart.create_model("test_resnet", weights=None)
    save_file(src.backbone.state_dict(), str(tmp_path / "w.safetensors"))
    m = headstart.create_model("test_resnet", weights=tmp_path / "w.safetensors")
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(m.eval()(x), src.eval()(x))
    no_top = headstart.create_model("test_resnet", weights=tmp_path / "w.safetensors", include_top=False)
    assert no_top(x).ndim == 4
    with pytest.raises(WeightsError, match="classes=1000"):
        headstart.create_model("test_resnet", weights=tmp_path / "w.safetensors", classes=5)
    with pytest.raises(WeightsError, match="does not exist in test_efficientnet"):
        headstart.create_model("test_efficientnet", weights=tmp_path / "w.safetensors")


def test_lite0_positional_mapping_checks_every_tensor(tmp_path):
    spec = headstart.models.get_spec("lite0")
    sd = read_state_dict(resolve_weights_file(spec.weights))
    keys = list(sd)
    assert len(keys) == 296
    swapped = dict(sd)
    swapped[keys[1]], swapped[keys[2]] = sd[keys[1]], sd[keys[2]]
    reordered = {keys[0]: sd[keys[0]], keys[2]: sd[keys[2]], keys[1]: sd[keys[1]], **{k: sd[k] for k in keys[3:]}}
    torch.save(reordered, tmp_path / "reordered.pth")
    with pytest.raises(WeightsError, match="does not correspond"):
        headstart.create_model("lite0", weights=tmp_path / "reordered.pth")
    m = headstart.create_model("lite0", include_top=False)
    assert torch.equal(m.backbone.conv_stem.weight, sd["_conv_stem.weight"])
    assert torch.equal(m.backbone.bn2.running_var, sd["_bn1.running_var"])
