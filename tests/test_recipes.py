"""The gpu recipe (issue 25, item 4), run on the CPU with tiny settings: images held as one uint8 tensor and
augmented on the device, the EMA that is validated and kept, BatchNorm trained, whole images at training and at
prediction, and the plan that prices it."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.training import train

from conftest import make_image

TINY = dict(model="test_efficientnet", weights=None, input_shape=(48, 48, 3), workers=0, progress=False)


def _halves(path, size=48):
    """Left half white, right half black: a mirror swaps them, the small affine never does."""
    a = np.zeros((size, size, 3), np.uint8)
    a[:, : size // 2] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def test_device_augment_draws_only_the_views_it_is_given():
    from headstart.training._resident import device_augment

    x = torch.zeros(64, 3, 48, 48, dtype=torch.uint8)
    x[..., :24] = 255
    for views, mirrored in (("none", False), ("hflip", True)):
        out = device_augment(x, views, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
        left, right = out[..., :16].mean((1, 2, 3)), out[..., -16:].mean((1, 2, 3))
        swapped = (right > left).sum().item()
        assert (swapped > 10) if mirrored else swapped == 0, (views, swapped)
    a, b = (device_augment(x, "dihedral", torch.Generator().manual_seed(s)) for s in (1, 1))
    assert torch.equal(a, b) and not torch.equal(a, device_augment(x, "dihedral", torch.Generator().manual_seed(2)))


def test_resident_loader_decodes_once_and_replays_from_its_generator(tmp_path):
    from headstart.data import Item, Preprocessing
    from headstart.training._resident import ResidentImages, ResidentLoader

    items = [Item(str(make_image(tmp_path / f"{i}.png", size=(60, 40), noise=30, seed=i)), "a" if i % 2 else "b")
             for i in range(10)]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    pre = Preprocessing(input_size=(32, 32), crop_pct=1.0)
    images = ResidentImages.decode(items + [Item(str(tmp_path / "bad.png"), "a")], ["a", "b"], pre,
                                   torch.device("cpu"))
    assert images.images.shape == (10, 3, 32, 32) and images.images.dtype == torch.uint8
    assert images.skipped == [str(tmp_path / "bad.png")]
    expected = pre.transform()(Image.open(items[3].path).convert("RGB"))
    plain = ResidentLoader(images, 4, train=False)
    assert len(plain) == 3 and torch.allclose(torch.cat([x for x, _ in plain])[3], expected, atol=1e-5)
    one, two = (ResidentLoader(images, 4, train=True, seed=7, views="dihedral") for _ in range(2))
    assert len(one) == 2  # drop_last, as the PIL loader does
    for (x1, y1), (x2, y2) in zip(one, two):
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and x1.is_contiguous(memory_format=torch.channels_last)


def test_the_ema_is_what_is_validated_and_kept():
    """decay 1: the average never leaves the first weights, so the loop must hand back the first weights though
    it trained (without EMA it hands back trained ones)."""
    from headstart.training._data import tensor_loader
    from headstart.training._loop import fit

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    for decay, same in ((1.0, True), (None, False)):
        torch.manual_seed(0)
        module = torch.nn.Linear(5, 3)
        first = module.weight.detach().clone()
        fit(module, tensor_loader(x, y, 16, train=True), tensor_loader(x, y, 64, train=False),
            [{"params": module.parameters(), "lr": 1e-1}], epochs=3, patience=100, progress=False, ema_decay=decay)
        assert torch.equal(module.weight, first) == same


def test_gpu_recipe_trains_finetune_on_cpu_and_predicts_whole_images(tmp_path):
    root = tmp_path / "data"
    for i in range(12):
        for name, color in (("red", (200, 40, 40)), ("blue", (40, 40, 200))):
            make_image(root / name / f"{i}.png", size=(48, 48), color=color, noise=40, seed=i)
    r = train(root, tmp_path / "run", strategy="finetune", recipe="gpu", finetune_epochs=2, copy_check=False,
              **TINY)
    details = next(t for t in r.table if t["strategy"] == "finetune")
    assert details["recipe"] == "gpu" and details["bn"] == "train" and "on the device" in details["augment"]
    history = json.loads((r.run_dir / "metrics.json").read_text())["histories"]["finetune"]
    assert len(history["val_acc"]) == 2  # the epochs the user gave win over the recipe's 30
    config = json.loads((r.run_dir / "config.json").read_text())
    assert config["preprocessing"]["crop_pct"] == 1.0  # predict sees what training saw: the whole image
    assert not r.model.freeze_bn_stats and r.test["accuracy"] >= 0.5
    with pytest.raises(Exception, match="does not apply to strategy 'probe'"):
        train(root, tmp_path / "run2", strategy="probe", recipe="gpu", given={"recipe"}, **TINY)
