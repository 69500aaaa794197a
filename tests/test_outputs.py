"""A full disk or a read-only output folder: a clear error (exit 3), earlier outputs intact (issue 6)."""
import errno
import os
import subprocess
from pathlib import Path

import pytest

import headstart
from headstart.cli import main

TINY = ["--model", "test_resnet", "--weights", "none", "-q"]


def _mount(args: list[str], target: Path) -> None:
    r = subprocess.run(["mount", *args, str(target)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here (needs root in a privileged container): {r.stderr.decode().strip()}")


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MiB tmpfs: a real file system that runs out of space."""
    d = tmp_path / "disk"
    d.mkdir()
    _mount(["-t", "tmpfs", "-o", "size=3m", "tmpfs"], d)
    yield d
    subprocess.run(["umount", "-l", str(d)])


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to flush (and fail) at close
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_full_disk_extract_then_resume_after_freeing_space(small_disk, image_folder, capsys):
    first = small_disk / "first"
    assert main(["extract", str(image_folder), "--out", str(first), *TINY]) == 0
    before = _snapshot(first)
    filler = _fill(small_disk)
    second = small_disk / "second"
    assert main(["extract", str(image_folder), "--out", str(second), *TINY]) == 3
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and "Free disk space" in err
    assert _snapshot(first) == before and len(headstart.FeatureSet.load(first)) == 16
    filler.unlink()
    assert main(["extract", str(image_folder), "--out", str(second), *TINY]) == 0
    assert len(headstart.FeatureSet.load(second)) == 16


def test_full_disk_train_keeps_the_previous_model(small_disk, image_folder, capsys):
    run = small_disk / "run"
    args = ["train", str(image_folder), "--out", str(run), "--strategy", "head", "--epochs", "2",
            "--input-shape", "32,32", "--workers", "0", *TINY]
    assert main(args) == 0
    before = (run / "model.safetensors").read_bytes()
    _fill(small_disk)
    assert main([*args, "--epochs", "3", "--overwrite"]) == 3
    assert "No space left on device" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == before
    assert not list(run.glob(".*.tmp")) and headstart.load(run).class_names == ["a", "b"]


def test_read_only_output_folder(tmp_path, image_folder, capsys):
    ro = tmp_path / "ro"
    store = ro / "feats"
    assert main(["extract", str(image_folder), "--out", str(store), *TINY]) == 0
    before = _snapshot(store)
    _mount(["--bind", "-o", "ro", str(ro)], ro)  # the folder, mounted read-only onto itself
    try:
        assert main(["extract", str(image_folder), "--out", str(store), "--layer", "layer2", "--overwrite",
                     *TINY]) == 3
        err = capsys.readouterr().err
        assert "Read-only file system" in err and "choose another --out" in err
        assert main(["extract", str(image_folder), "--out", str(ro / "new"), *TINY]) == 3
    finally:
        subprocess.run(["umount", "-l", str(ro)])
    assert _snapshot(store) == before


def test_no_space_is_reported_without_a_mount(tmp_path, image_folder, monkeypatch, capsys):
    """The same path on any machine: the disk reservation fails as on a full disk."""
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    out = tmp_path / "feats"
    assert main(["extract", str(image_folder), "--out", str(out), *TINY]) == 3
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["extract", str(image_folder), "--out", str(out), *TINY]) == 0
