"""A corpus of messy inputs, generated on the fly (nothing binary is committed).

``make_corpus(root)`` writes every kind into ``root/<kind>`` files and returns ``{kind: (path, expected)}`` where
``expected`` is ``"ok"`` (must be read, upright and in the right colours) or a substring of the error cause.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

RED = (220, 30, 30)


def _rgb(w=40, h=30, color=RED) -> Image.Image:
    return Image.new("RGB", (w, h), color)


def _jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def _png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def make_corpus(root: Path) -> dict[str, tuple[Path, str]]:
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}

    def put(kind: str, name: str, data: bytes, expected: str) -> None:
        p = root / name
        p.write_bytes(data)
        out[kind] = (p, expected)

    def save(kind: str, name: str, im: Image.Image, expected: str = "ok", **kw) -> None:
        p = root / name
        im.save(p, **kw)
        out[kind] = (p, expected)

    rng = np.random.default_rng(0)
    put("zero-byte", "zero.jpg", b"", "empty file")
    put("truncated JPEG", "trunc.jpg", _jpeg_bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)))[:600],
        "corrupt")
    put("truncated PNG", "trunc.png", _png_bytes(Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)))[:300],
        "corrupt")
    put("random bytes", "noise.jpg", rng.integers(0, 255, 5000, np.uint8).tobytes(), "not an image")
    put("PNG named .jpg", "png_as.jpg", _png_bytes(_rgb()), "ok")
    put("JPEG named .png", "jpg_as.png", _jpeg_bytes(_rgb()), "ok")
    put("text file", "notes.png", b"these are not pixels\n", "not an image")
    put("SVG", "vector.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not an image")
    put("HTML error page", "download.jpg", b"<html><body>403 Forbidden</body></html>", "not an image")
    (root / "folder.jpg").mkdir()
    out["directory named like an image"] = (root / "folder.jpg", "directory")
    os.symlink(root / "missing-target.jpg", root / "broken_link.jpg")
    out["broken symlink"] = (root / "broken_link.jpg", "broken symbolic link")
    os.symlink(root / "loop_b.jpg", root / "loop_a.jpg")
    os.symlink(root / "loop_a.jpg", root / "loop_b.jpg")
    out["symlink loop"] = (root / "loop_a.jpg", "cannot read file")
    save("16-bit grayscale PNG", "gray16.png", Image.fromarray(np.full((30, 40), 65535, np.uint16)))
    save("CMYK JPEG", "cmyk.jpg", _rgb().convert("CMYK"), quality=95)
    pal = Image.new("P", (40, 30), 0)
    pal.putpalette([*RED, 0, 0, 255] + [0, 0, 0] * 254)
    save("palette PNG with transparency", "pal_t.png", pal, transparency=1)  # index 1 transparent, unused
    save("LA", "la.png", _rgb().convert("LA"))
    save("RGBA", "rgba.png", _rgb().convert("RGBA"))
    save("1-bit", "bw.png", _rgb(color=(255, 255, 255)).convert("1"))
    save("grayscale JPEG", "gray.jpg", _rgb().convert("L"), quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise
    wide = _rgb(40, 20)
    save("EXIF-rotated", "rotated.jpg", wide, exif=exif, quality=95)
    frames = [_rgb(color=RED), _rgb(color=(0, 0, 255))]
    save("animated GIF", "anim.gif", frames[0], save_all=True, append_images=frames[1:], duration=100)
    save("multi-page TIFF", "pages.tif", frames[0], save_all=True, append_images=frames[1:])
    save("1x1 pixel", "dot.png", _rgb(1, 1))
    save("extreme aspect ratio 10000x3", "strip.png", _rgb(10000, 3))
    save("WebP", "pic.webp", _rgb())
    save("BMP", "pic.bmp", _rgb())
    save("TIFF LZW", "lzw.tif", _rgb(), compression="tiff_lzw")
    put("trailing garbage after JPEG", "trailing.jpg", _jpeg_bytes(_rgb()) + b"\x00garbage" * 100, "ok")
    bomb = Image.new("1", (15000, 15000))  # 225 megapixels: more than twice Pillow's limit
    save("decompression bomb", "bomb.png", bomb, expected="decompression bomb")
    put("huge non-image file", "huge.jpg", b"\0" * (20 << 20), "not an image")
    long_name = "l" * 240 + ".png"
    save("very long file name", long_name, _rgb())
    bad_name = os.fsencode(root) + b"/\xff\xfename.png"
    with open(bad_name, "wb") as f:
        f.write(_png_bytes(_rgb()))
    out["non-UTF-8 file name"] = (Path(os.fsdecode(bad_name)), "ok")
    return out


# Colour a readable kind must show after loading (red unless listed), and its upright size where it changes.
COLOUR = {"16-bit grayscale PNG": "white", "1-bit": "white", "LA": "gray", "grayscale JPEG": "gray"}
SIZE = {"EXIF-rotated": (20, 40)}


def colour_of(im: Image.Image) -> str:
    r, g, b = im.convert("RGB").resize((1, 1)).getpixel((0, 0))
    if r > 150 and g < 80 and b < 80:
        return "red"
    if min(r, g, b) > 240:
        return "white"
    if abs(r - g) < 10 and abs(g - b) < 10:
        return "gray"
    return f"rgb{(r, g, b)}"
