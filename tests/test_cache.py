"""The cache's size cap: least-recently-used eviction of activations and ONNX exports, on real files."""
import logging
import os
import time

import pytest

from headstart import cache
from headstart.cli import main
from headstart.errors import ConfigError
from headstart.home import activations_dir, onnx_dir, weights_dir

HOUR = 3600


def _export(key: str, size: int, age_s: float = 0) -> os.PathLike:
    """An ONNX export as the backend writes it: ``<key>.onnx`` plus its record, last used ``age_s`` ago."""
    onnx_dir().mkdir(parents=True, exist_ok=True)
    path = onnx_dir() / f"{key}.onnx"
    path.write_bytes(b"\0" * size)
    (onnx_dir() / f"{key}.onnx.json").write_text("{}")
    t = time.time() - age_s
    os.utime(path, (t, t))
    return path


def _store(key: str, size: int, age_s: float = 0):
    """An activation store: a folder of files, last used ``age_s`` ago."""
    root = activations_dir() / key
    root.mkdir(parents=True)
    (root / "features.npy").write_bytes(b"\0" * size)
    (root / "meta.json").write_text("{}")
    t = time.time() - age_s
    os.utime(root, (t, t))
    return root


@pytest.mark.parametrize("value, expected", [
    ("", 4 << 30), ("5G", 5 << 30), ("500M", 500 << 20), ("1.5GiB", int(1.5 * (1 << 30))), ("2tb", 2 << 40),
    ("123456", 123456), ("64K", 64 << 10), ("none", None), ("0", None), ("unlimited", None)])
def test_cache_max_values(monkeypatch, value, expected):
    monkeypatch.setenv("HEADSTART_CACHE_MAX", value)
    assert cache.cache_max() == expected


def test_bad_cache_max_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("HEADSTART_CACHE_MAX", "5 gigs")
    with pytest.raises(ConfigError, match=r"HEADSTART_CACHE_MAX='5 gigs' is not a size.*4G, 500M.*none"):
        cache.cache_max()
    assert main(["cache"]) == 2
    assert "HEADSTART_CACHE_MAX='5 gigs' is not a size" in capsys.readouterr().err


def test_bad_cache_max_never_fails_the_writer(monkeypatch, caplog):
    old = _export("old", 1000, age_s=HOUR)
    new = _export("new", 1000)
    monkeypatch.setenv("HEADSTART_CACHE_MAX", "tiny")
    with caplog.at_level(logging.WARNING, logger="headstart.cache"):
        assert cache.note_written(new, "ONNX export of test") == []
    assert "is not a size" in caplog.text and old.exists()


def test_least_recently_used_entries_are_evicted_first(monkeypatch):
    oldest = _export("a", 1000, age_s=3 * HOUR)
    middle = _store("c", 1000, age_s=2 * HOUR)
    recent = _export("b", 1000, age_s=1 * HOUR)
    monkeypatch.setenv("HEADSTART_CACHE_MAX", "2500")
    new = _export("d", 1000)
    evicted = cache.note_written(new, "ONNX export of test")
    assert [p.name for p in evicted] == ["a.onnx", "c"]
    assert not oldest.exists() and not (onnx_dir() / "a.onnx.json").exists()  # the whole entry, record too
    assert not middle.exists()
    assert recent.exists() and new.exists() and (onnx_dir() / "d.onnx.json").exists()
    assert cache.capped_bytes() <= 2500


def test_the_entry_just_written_is_never_evicted(monkeypatch, caplog):
    other = _store("s", 500, age_s=HOUR)
    monkeypatch.setenv("HEADSTART_CACHE_MAX", "1000")
    new = _export("big", 5000)  # alone over the cap
    with caplog.at_level(logging.WARNING, logger="headstart.cache"):
        evicted = cache.note_written(new, "ONNX export of test")
    assert evicted == [other] and not other.exists()
    assert new.exists() and "removed 1 least recently used cache entry" in caplog.text


def test_entries_in_use_are_kept(monkeypatch):
    used_here = _export("here", 1000, age_s=HOUR)
    cache.note_used(used_here)  # this process uses it: kept even though it is the oldest ...
    os.utime(used_here, (time.time() - 2 * HOUR,) * 2)
    elsewhere = _store("other", 1000)  # ... and one another command touched a moment ago
    stale = _store("stale", 1000, age_s=HOUR)
    monkeypatch.setenv("HEADSTART_CACHE_MAX", "100")
    new = _export("new", 1000)
    assert cache.note_written(new, "ONNX export of test") == [stale]
    assert used_here.exists() and elsewhere.exists()


def test_note_used_marks_the_entry_recent():
    export = _export("k", 10, age_s=HOUR)
    cache.note_used(onnx_dir() / "k.onnx.json")  # any file of the entry marks the entry
    assert time.time() - export.stat().st_mtime < 60
    store = _store("st", 10, age_s=HOUR)
    cache.note_used(store / "features.npy")
    assert time.time() - store.stat().st_mtime < 60


def test_note_used_never_fails(monkeypatch, tmp_path):
    cache.note_used(onnx_dir() / "gone.onnx")  # removed meanwhile
    cache.note_used(tmp_path / "not-in-the-cache.onnx")
    export = _export("ro", 10)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "utime", read_only)
    cache.note_used(export)


def test_large_entry_warning_says_what_where_and_how_to_free_it(monkeypatch, caplog):
    monkeypatch.setenv("HEADSTART_CACHE_MAX", "5G")
    onnx_dir().mkdir(parents=True)
    path = onnx_dir() / "vgg.onnx"
    with open(path, "wb") as f:
        f.truncate(537_000_000)  # sparse: costs no disk
    (onnx_dir() / "vgg.onnx.json").write_text("{}")
    with caplog.at_level(logging.WARNING, logger="headstart.cache"):
        cache.note_written(path, "ONNX export of vgg16")
    msg = caplog.text
    assert f"wrote a 537 MB ONNX export of vgg16 to {path}" in msg
    assert "the cache now holds 512.1 MiB" in msg and "HEADSTART_CACHE_MAX=5.0 GiB caps it" in msg
    assert "`headstart cache --clear onnx` frees it" in msg


def test_small_entry_is_quiet(caplog):
    with caplog.at_level(logging.WARNING, logger="headstart.cache"):
        cache.note_written(_store("small", 1000), "cached activations of test")
    assert caplog.text == ""


def test_weights_are_never_evicted(monkeypatch):
    weights_dir().mkdir(parents=True)
    (weights_dir() / "w.pth").write_bytes(b"\0" * 5000)
    monkeypatch.setenv("HEADSTART_CACHE_MAX", "100")
    cache.note_written(_export("n", 10), "ONNX export of test")
    assert (weights_dir() / "w.pth").exists()


def test_cache_command_shows_the_cap(monkeypatch, capsys):
    _store("x", 2 << 20)
    monkeypatch.setenv("HEADSTART_CACHE_MAX", "500M")
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert "cap: 500.0 MiB (HEADSTART_CACHE_MAX) on activations + onnx, which hold 2.0 MiB" in out
    monkeypatch.setenv("HEADSTART_CACHE_MAX", "none")
    assert main(["cache"]) == 0
    assert "cap: none" in capsys.readouterr().out


def test_a_folder_removed_while_the_cache_is_measured_is_skipped(monkeypatch):
    """A torchrun rank measures the cache (note_written) while rank 0 removes the shard folders it just merged:
    that folder is gone mid-walk, and measuring must go on (it failed the run with 'shards: No such file')."""
    root = _store("merging", 1000)
    (root / "shards" / "00001-of-00002").mkdir(parents=True)
    (root / "shards" / "00001-of-00002" / "features.npy").write_bytes(b"\0" * 500)
    real = os.scandir

    def vanished(path="."):
        if str(path).endswith("shards"):
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", vanished)
    assert cache._entry_bytes(root) == 1002  # features.npy + meta.json; the vanished shard is not counted
    cache.note_written(root, "a store")  # measures every entry: no error
    assert [e.bytes for e in cache.cache_info() if e.part == "activations"] == [1002]
