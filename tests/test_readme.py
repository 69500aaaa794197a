"""The README is a contract (issue 14): every fenced example in README.md and every example in the `--help`
epilogs runs as written, in a sandbox folder holding the files the examples name.

Commands run in-process through `headstart.cli.main`, in README order (later examples use what earlier ones made:
a run, a store). What cannot run here is listed in SKIP with the reason; what runs with a stand-in is in
SUBSTITUTE (the real ELPV data set is 2,624 images: training on it is `make demo`'s job, not a test's). VGG16's
ImageNet weights are a 553 MB download: a fixture writes a VGG16 checkpoint of the same architecture into the
cache and registers its SHA-256 in place of the published one, so the VGG16 examples run their real code path.
A broken example — exit code 2 or 70 where 0 was expected, an exception in a Python block — fails the suite.
"""
from __future__ import annotations

import dataclasses
import glob
import re
import shlex
import time
from pathlib import Path

import pytest
from PIL import Image

import headstart
from headstart.cli import build_parser, main
from conftest import make_image

README = Path(__file__).resolve().parents[1] / "README.md"

SKIP = {
    "--device cuda": "needs a CUDA GPU",
    "headstart weights download": "needs the network (tested against a 127.0.0.1 server in test_weights_cli.py)",
    "torchrun": "launches several processes (tested in test_distributed.py)",
    "srun": "needs SLURM",
    "$SLURM": "needs a SLURM array job's environment (--shard R/W is tested in test_distributed.py)",
    "sbatch": "needs SLURM",
    "--nnodes": "needs several machines",
    "headstart serve": "serves until stopped (a real server answers the same examples in test_serve.py)",
    "curl ": "talks to a running server (test_serve.py sends the same requests)",
}
SUBSTITUTE = {
    # the real data set is prepared elsewhere in the sandbox; data/elpv is a small stand-in with the same layout
    "headstart data elpv data/elpv": "headstart data elpv data/elpv-full",
    "headstart weights add /media/usb/vgg16-397923af.pth": "headstart weights add vgg16-397923af.pth",
}
EXPECTED = {  # examples whose point is a non-zero exit code
    "broken": 1,  # a broken file among good ones: named on stderr, the rest processed
    "--resume": 2,  # here the run finished: "nothing to resume" (the interrupted case: test_train.py)
}


def _readme_examples() -> list[tuple[str, str]]:
    """("bash", command line) and ("python", block) in README order."""
    out = []
    for lang, body in re.findall(r"```(bash|python)\n(.*?)```", README.read_text(), re.S):
        if lang == "python":
            out.append(("python", body))
            continue
        for line in body.replace("\\\n", " ").splitlines():  # join continuation lines
            line = line.split(" #")[0].strip()
            if line and not line.startswith(("make ", "#")):
                out.append(("bash", " ".join(line.split())))
    return out


def _help_examples() -> list[str]:
    parser = build_parser()
    epilogs = [parser.epilog or ""]
    sub = parser._subparsers._group_actions[0]
    epilogs += [p.epilog or "" for p in dict.fromkeys(sub.choices.values())]
    return [line.split(" #")[0].strip() for e in epilogs for line in e.splitlines()
            if line.startswith("  headstart ")]


def _skip_reason(line: str) -> str | None:
    why = next((why for key, why in SKIP.items() if key in line), None)
    assert why or line.startswith("headstart "), f"an example this test cannot run and SKIP does not name: {line}"
    return why


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    import skimage.data

    Image.fromarray(skimage.data.coffee()).save(root / "photo.jpg", quality=95)
    for name in ("other.png", "cat.png", "img.png", "cell.png", "cell1.png", "cell2.png", "one.png"):
        make_image(root / name, size=(80, 64), noise=30)
    for name in ("a.jpg", "dog.jpg", "one.jpg", "photo2.jpg"):
        make_image(root / name, size=(120, 90), noise=30, color=(90, 140, 60))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    for cls, color in (("x", (200, 40, 40)), ("y", (40, 40, 200))):
        for i in range(6):
            make_image(root / "photos" / cls / f"{i}.png", size=(72, 64), color=color, noise=30, seed=i)
    for split, n in (("train", 8), ("test", 3)):
        for cls, color in (("functional", (120, 120, 120)), ("defective", (40, 40, 40))):
            for i in range(n):
                seed = i + (100 if split == "test" else 0)  # distinct content: evaluate leaves out seen images
                make_image(root / "data" / "elpv" / split / cls / f"{split}{i}.png", size=(64, 64), color=color,
                           noise=35, seed=seed)
    rows = ["path,label"] + [f"photos/{c}/{i}.png,{c}" for c in ("x", "y") for i in range(3)]
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def vgg16_weights(sandbox, tmp_path_factory):
    """A VGG16 checkpoint in torchvision's format (random weights), registered in place of the 553 MB file."""
    import torch
    import torchvision

    from headstart.models import get_spec
    from headstart.weights import sha256_file

    path = sandbox / "vgg16-397923af.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg16().state_dict(), path)
    spec = get_spec("vgg16")
    return path, dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, sha256=sha256_file(path),
                                                                        size=path.stat().st_size))


def _run_line(line: str, root: Path) -> int:
    """Run one example line (`a && b` runs both); shell globs expand in the sandbox, leaving out broken.jpg
    unless the line names it (it is there for the example about a bad file)."""
    code = 0
    for part in SUBSTITUTE.get(line, line).split("&&"):
        args = []
        for a in shlex.split(part)[1:]:
            matches = sorted(m for m in glob.glob(a, root_dir=root) if m != "broken.jpg") \
                if any(c in a for c in "*?[") else []
            args += matches or [a]
        code = code or main(args)
    return code


def _run_examples(examples, root: Path, monkeypatch, capsys, vgg16_weights) -> int:
    """Run the examples in order in ``root``; returns how many ran. Fails listing every broken example."""
    import shutil

    from headstart.models import _registry

    monkeypatch.chdir(root)
    monkeypatch.setitem(_registry.MODELS, "vgg16", vgg16_weights[1])
    if not (root / vgg16_weights[0].name).exists():
        (root / vgg16_weights[0].name).symlink_to(vgg16_weights[0])
    cached = Path(headstart.weights.headstart_home()) / "weights" / vgg16_weights[0].name

    def place_weights() -> None:  # as if `headstart weights add` had placed it (that example runs too)
        if not cached.exists():
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.hardlink_to(vgg16_weights[0])

    # runs/a: what the "repeat a run" example starts from
    shutil.rmtree(root / "runs" / "a", ignore_errors=True)
    assert main(["train", "photos/", "--out", "runs/a", "--strategy", "probe", "-q"]) == 0
    failures, ran, skipped, timings = [], 0, [], []
    for kind, text in examples:
        why = _skip_reason(text) if kind == "bash" else None
        if why:
            skipped.append((text, why))
            continue
        ran += 1
        if kind == "python":
            place_weights()
            try:
                exec(compile(text, "README.md", "exec"), {"__name__": "readme"})
            except Exception as exc:
                failures.append(f"python block {text.splitlines()[0]!r}…: {type(exc).__name__}: {exc}")
            continue
        expected = next((code for key, code in EXPECTED.items() if key in text), 0)
        if "vgg16" in text:  # an earlier example (`headstart cache --clear all`) may have removed it
            place_weights()
        t0 = time.perf_counter()
        code = _run_line(text, root)
        err = capsys.readouterr().err
        timings.append((round(time.perf_counter() - t0, 1), text))
        if code != expected:
            failures.append(f"`{text}` exited {code} (expected {expected}): {err.strip()[-300:]}")
    print("slowest examples:", sorted(timings, reverse=True)[:8])
    assert not failures, "\n".join(failures)
    assert all(why for _, why in skipped)
    return ran


def test_every_readme_and_help_example_runs(sandbox, vgg16_weights, monkeypatch, capsys):
    """README first, then the --help examples it does not already contain, in one sandbox (as a user would)."""
    readme = _readme_examples()
    done = {text for kind, text in readme if kind == "bash"}
    examples = readme + [("bash", line) for line in dict.fromkeys(_help_examples()) if line not in done]
    assert _run_examples(examples, sandbox, monkeypatch, capsys, vgg16_weights) >= 50


def test_examples_that_need_a_download_say_so_next_to_them():
    """Every README example using VGG16's ImageNet weights is marked (*), and the mark is explained."""
    text = README.read_text()
    for kind, body in _readme_examples():
        for line in ([body] if kind == "python" else [body]):
            needs = "vgg16" in line and "--weights none" not in line and "weights=None" not in line \
                and "--layer list" not in line and ("extract" in line or "create_model(\"vgg16\"" in line)
            if needs:
                marked = line if kind == "python" else next(raw for raw in text.splitlines() if line in " ".join(raw.split()))
                assert "(*)" in marked, line
    assert "(*) VGG16's ImageNet weights are a 553 MB download" in text
