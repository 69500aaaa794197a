"""Shared fixtures: generated images and tiny random-weight models, so most tests run in milliseconds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never touch the user's real cache from tests."""
    monkeypatch.setenv("HEADSTART_HOME", str(tmp_path_factory.mktemp("headstart_home")))


def make_image(path: Path, size=(48, 40), color=(200, 30, 30), mode="RGB", noise=0, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    arr = np.zeros((size[1], size[0], 3), np.float32) + np.array(color, np.float32)
    if noise:
        arr += rng.normal(0, noise, arr.shape)
    im = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


@pytest.fixture
def image_folder(tmp_path):
    """Two classes of 8 small noisy images each: red `a/`, blue `b/`."""
    return make_two_classes(tmp_path / "images", 8, noise=25)


def make_two_classes(root: Path, n: int, noise: float) -> Path:
    """``n`` noisy images per class: red ``a/``, blue ``b/`` (seeded: the same files every time)."""
    for cls, color in (("a", (220, 40, 40)), ("b", (40, 40, 220))):
        for i in range(n):
            make_image(root / cls / f"{cls}{i}.png", color=color, noise=noise, seed=i)
    return root


@pytest.fixture(scope="session")
def lite0():
    import headstart

    return headstart.create_model("lite0")


@pytest.fixture(scope="session")
def sample_photos(tmp_path_factory):
    """Well-known photos (scikit-image, matplotlib) written as files."""
    import matplotlib.cbook as cbook
    import skimage.data

    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage.data.coffee()).save(d / "coffee.jpg", quality=95)
    Image.fromarray(skimage.data.chelsea()).save(d / "chelsea.png")
    hopper = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return {"coffee": d / "coffee.jpg", "chelsea": d / "chelsea.png", "grace_hopper": hopper}


def spy_image_reads(monkeypatch) -> list[str]:
    """Record every image file headstart opens (in this process), wherever the read is imported; returns the list."""
    import importlib

    import headstart.data._images as images

    opened: list[str] = []
    for fn in ("read_image_file", "load_image"):
        orig = getattr(images, fn)

        def spy(src, *a, _orig=orig, **k):
            opened.append(str(src))
            return _orig(src, *a, **k)

        for mod in ("headstart.data._images", "headstart.runner", "headstart.training._data",
                    "headstart.models._model", "headstart.inference"):
            monkeypatch.setattr(importlib.import_module(mod), fn, spy, raising=False)  # loaded or not yet
    return opened


class Ticking:
    """A loader whose every batch takes ``cost`` seconds (1) on a simulated clock (a one-item list the caller reads as
    ``time.perf_counter()``), so budget and checkpoint decisions in ``fit`` are the same on every run."""

    def __init__(self, loader, clock: list[float]):
        self.loader, self.clock = loader, clock
        self.generator = loader.generator  # the shuffling state a checkpoint saves
        self.cost = 1.0  # seconds per batch

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.clock[0] += self.cost
            yield batch
