import io

import numpy as np
import pytest
from PIL import Image

from headstart import ImageLoadError, load_image


def test_modes_convert_to_rgb(tmp_path):
    rgb = np.zeros((10, 12, 3), np.uint8)
    rgb[..., 0] = 200
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    Image.fromarray(rgb).convert("P").save(tmp_path / "pal.png")
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent → white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    sixteen = np.full((10, 12), 65535, np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "g16.png")
    Image.fromarray(rgb).convert("1").save(tmp_path / "bw.png")
    for name in ("gray.png", "cmyk.jpg", "pal.png", "rgba.png", "g16.png", "bw.png"):
        im = load_image(tmp_path / name)
        assert im.mode == "RGB" and im.size == (12, 10), name
    assert load_image(tmp_path / "rgba.png").getpixel((0, 0)) == (255, 255, 255)
    assert load_image(tmp_path / "g16.png").getpixel((0, 0)) == (255, 255, 255)
    r, g, b = load_image(tmp_path / "cmyk.jpg").getpixel((5, 5))
    assert r > 150 and g < 60 and b < 60
    assert load_image(tmp_path / "gray.png").getpixel((0, 0))[0] == round(200 * 0.299)


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)  # 20 wide, 10 high
    arr[:, :10] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    Image.fromarray(arr).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    im = load_image(tmp_path / "rot.jpg")
    assert im.size == (10, 20)
    assert im.getpixel((5, 2))[0] > 200 and im.getpixel((5, 17))[0] < 50  # white half now on top


def test_arrays():
    assert load_image(np.zeros((4, 5), np.uint16)).size == (5, 4)
    assert load_image(np.ones((4, 5, 3), np.float32)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((4, 5, 2)))


@pytest.mark.parametrize("content,cause", [
    (b"", "empty file"), (b"hello world", "not an image"),
])
def test_bad_files_name_the_cause(tmp_path, content, cause):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageLoadError, match=cause) as info:
        load_image(p)
    assert str(p) in str(info.value)


def test_truncated_and_missing(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "JPEG")
    (tmp_path / "t.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageLoadError, match="corrupt"):
        load_image(tmp_path / "t.jpg")
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path / "dir.png")


def _torchvision_eval(pre, limit: bool = True):
    """The reference: torchvision's Resize → CenterCrop → PILToTensor → ToDtype → Normalize (what timm does)."""
    import torch
    from torchvision.transforms import v2 as T

    from headstart.data._preprocess import MAX_ASPECT, limit_aspect

    h, w = pre.input_size
    size = pre.resize_size[0] if h == w else pre.resize_size
    ops = [T.Resize(size, interpolation=T.InterpolationMode(pre.interpolation), antialias=True),
           T.CenterCrop((h, w)), T.PILToTensor(), T.ToDtype(torch.float32, scale=True),
           T.Normalize(mean=list(pre.mean), std=list(pre.std))]
    if limit and h == w:
        ops.insert(0, lambda im: limit_aspect(im, MAX_ASPECT))
    return T.Compose(ops)


@pytest.mark.parametrize("size,kw", [((500, 375), {}), ((37, 300), {"input_size": (300, 300)}),
                                     ((640, 480), {"input_size": (240, 320), "interpolation": "bilinear"}),
                                     ((100, 90), {"mean": (0.5,) * 3, "std": (0.5,) * 3}), ((224, 224), {}),
                                     ((20, 10), {})])
def test_numpy_eval_transform_is_bit_identical_to_torchvision(size, kw):
    """The torch-free transform (ONNX-only prediction) computes exactly what the torchvision pipeline computes."""
    from headstart.data import Preprocessing

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8))
    pre = Preprocessing(**kw)
    ours = pre.array_transform()(im)
    ref = _torchvision_eval(pre)(im).numpy()
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.array_equal(ours, ref)


def test_aspect_limit_precrop_does_not_change_the_output():
    import torch

    from headstart.data import Preprocessing

    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (200, 1400, 3), np.uint8))  # 7:1
    pre = Preprocessing((224, 224), "bicubic", 0.875, (0.5,) * 3, (0.5,) * 3)
    limited = pre.transform()
    plain = _torchvision_eval(pre, limit=False)
    torch.testing.assert_close(limited(im), plain(im), atol=1e-2, rtol=0)
    strip = Image.new("RGB", (10000, 3), (200, 0, 0))  # would be 853,333 px long after a plain resize
    assert limited(strip).shape == (3, 224, 224)
