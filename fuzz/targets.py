"""Fuzz targets and input generators (Hypothesis) for the three readers of untrusted input (issue 6).

Each target takes one generated input and must either return a well-formed result or raise the one documented
error type (ImageLoadError / SourceError / ConfigError or HeadstartError); any other exception is a crash and a
run longer than ``HANG_SECONDS`` is a hang. Used by ``tests/test_fuzz.py`` (a short run in `make test`) and by
``fuzz/run.py`` (the long run recorded in benchmarks/RESULTS.md).
"""
from __future__ import annotations

import io
import json
import signal
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from headstart.config import ConfigError, config_from_dict, read_config
from headstart.data import Preprocessing, read_image_file, read_source
from headstart.data._sources import SourceError
from headstart.errors import HeadstartError, ImageLoadError
from headstart.training import TrainConfig

HANG_SECONDS = 20
_TRANSFORM = Preprocessing(input_size=(64, 64)).transform()


class Hang(Exception):
    pass


class deadline:
    """Raise :class:`Hang` if the block runs longer than ``seconds`` (SIGALRM; main thread)."""

    def __init__(self, seconds: int = HANG_SECONDS):
        self.seconds = seconds

    def __enter__(self):
        def on_alarm(signum, frame):
            raise Hang(f"no result after {self.seconds} s")

        self.old = signal.signal(signal.SIGALRM, on_alarm)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


# -- images --------------------------------------------------------------------------------------------------

def _seed_images() -> list[bytes]:
    """Small valid files in the formats and modes people's folders contain."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    out = []
    for im, fmt, kw in [(rgb, "PNG", {}), (rgb, "JPEG", {"quality": 80}), (rgb, "JPEG", {"progressive": True}),
                        (rgb.convert("P"), "GIF", {}), (rgb, "BMP", {}), (rgb, "TIFF", {}), (rgb, "WEBP", {}),
                        (rgb.convert("RGBA"), "PNG", {}), (rgb.convert("L"), "PNG", {}),
                        (rgb.convert("1"), "PNG", {}), (rgb.convert("CMYK"), "JPEG", {}),
                        (Image.fromarray(rng.integers(0, 65535, (8, 8), dtype=np.uint16)), "PNG", {})]:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out.append(buf.getvalue())
    buf = io.BytesIO()  # animated GIF
    rgb.convert("P").save(buf, "GIF", save_all=True, append_images=[rgb.rotate(90).convert("P")])
    out.append(buf.getvalue())
    return out


SEED_IMAGES = _seed_images()


@st.composite
def image_bytes(draw) -> bytes:
    """Random bytes, or a valid file with byte flips, truncation, insertions or overwritten ranges."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=4096))
    data = bytearray(draw(st.sampled_from(SEED_IMAGES)))
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(("flip", "truncate", "insert", "overwrite", "header")))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos:pos + len(chunk)] = chunk
        elif op == "header" and len(data) > 24:  # dimensions live in the first bytes of most formats
            data[draw(st.integers(0, 24))] = draw(st.integers(0, 255))
    return bytes(data)


def check_image(data: bytes, workdir: Path) -> str:
    """read_image_file + the eval transform: an RGB tensor of the right shape, or ImageLoadError."""
    path = workdir / "input.img"
    path.write_bytes(data)
    try:
        with deadline():
            im, sha, (w, h) = read_image_file(path, draft_size=(128, 128))
            x = _TRANSFORM(im)
    except ImageLoadError:
        return "refused"
    assert im.mode == "RGB" and w > 0 and h > 0 and len(sha) == 64
    assert tuple(x.shape) == (3, 64, 64) and bool(x.isfinite().all())
    return "read"


# -- CSV -----------------------------------------------------------------------------------------------------

_CELL = st.one_of(st.text(max_size=12), st.sampled_from(["a.png", "missing.jpg", "", " ", '"', "a,b", "x\ny",
                                                         "\x00", "../a.png", "/etc/passwd", "é.png"]))


@st.composite
def csv_text(draw) -> bytes:
    header = draw(st.one_of(st.sampled_from(["path", "path,label", "label,path", "file,label", "PATH,Label",
                                             "path,label,extra", ""]), st.text(max_size=20)))
    rows = draw(st.lists(st.lists(_CELL, min_size=0, max_size=4), max_size=8))
    sep = draw(st.sampled_from([",", ";", "\t"]))
    text = header + "\n" + "\n".join(sep.join(c for c in r) for r in rows)
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        raw = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe"])) + raw
    return raw


def check_csv(raw: bytes, workdir: Path) -> str:
    """read_source on a CSV: a list of Items whose paths are strings, or SourceError/HeadstartError."""
    (workdir / "a.png").exists() or Image.new("RGB", (4, 4)).save(workdir / "a.png")
    path = workdir / "list.csv"
    path.write_bytes(raw)
    try:
        with deadline():
            items = read_source(path)
    except (SourceError, HeadstartError):
        return "refused"
    assert all(isinstance(it.path, str) and isinstance(it.label, str) for it in items)
    return "read"


# -- config files --------------------------------------------------------------------------------------------

_KEYS = [f.name for f in fields(TrainConfig)] + ["data", "classes", "epochz", "", "__class__"]
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                  max_size=4), max_leaves=8)


@st.composite
def config_text(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["json", "json", "toml", "raw"]))
    if kind == "raw":
        return ".json", draw(st.binary(max_size=300))
    obj = draw(st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=8), _JSON | st.sampled_from(
        [3, 0, -1, 1e-3, "head", "auto", [64, 64, 3], [64, 64], None, True]), max_size=6))
    if kind == "toml":
        lines = [f"{k!r} = {json.dumps(v)}" if not isinstance(v, dict) else f"[{k!r}]" for k, v in obj.items()]
        return ".toml", "\n".join(lines).encode("utf-8", "surrogatepass")
    return ".json", json.dumps(obj).encode("utf-8", "surrogatepass")


def check_config(item: tuple[str, bytes], workdir: Path) -> str:
    """read_config → TrainConfig(**values).check(): a valid configuration, or ConfigError/HeadstartError."""
    suffix, raw = item
    path = workdir / f"config{suffix}"
    path.write_bytes(raw)
    try:
        with deadline():
            values = read_config(path, TrainConfig)
            TrainConfig(**values).check()
    except (ConfigError, HeadstartError):
        return "refused"
    assert set(values) <= {f.name for f in fields(TrainConfig)}
    return "read"


def check_config_dict(obj: dict) -> str:
    try:
        TrainConfig(**config_from_dict(obj, TrainConfig)).check()
    except HeadstartError:
        return "refused"
    return "read"


TARGETS = {"image": (image_bytes(), check_image), "csv": (csv_text(), check_csv),
           "config": (config_text(), check_config)}


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="headstart-fuzz-"))
