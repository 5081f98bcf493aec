"""Tiny image folders written for the tests: real PNG and JPEG files, some of them broken,
and a Pillow oracle of what a loader should decode from them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

#: Kinds of broken file: found by the header check ("text", "truncated", "empty") or only
#: when decoded ("body": a PNG whose first and last bytes are good, its pixel data not).
BROKEN = ("text", "truncated", "empty", "body")
#: Pillow modes `image_file` writes.
MODES = ("RGB", "L", "RGBA", "LA", "P")


def write_folder(
    root: Path, per_class: int = 6, classes: int = 3, size: int = 8, seed: int = 0
) -> Path:
    """``root/c0..``: `per_class` lossless PNGs per class, class c about 80*c bright."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        os.makedirs(root / f"c{c}", exist_ok=True)
        for i in range(per_class):
            pixels = (rng.random((size, size, 3)) * 60 + 80 * c).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i:03d}.png")
    return root


def image_file(path: Path, mode: str, seed: int, size: tuple[int, int] = (7, 5)) -> Path:
    """An image of Pillow `mode` (``MODES``) with random pixels, `size` (w, h): a PNG, or a
    JPEG where `path` ends in ``.jpg`` (RGB and L only)."""
    rng = np.random.default_rng(seed)
    bands = {"RGB": 3, "L": 1, "RGBA": 4, "LA": 2, "P": 1}[mode]
    raw = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    if mode == "P":
        img = Image.fromarray(raw[..., 0], "L").convert("P")
        img.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    else:
        img = Image.fromarray(raw[..., 0] if bands == 1 else raw, mode)
    img.save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")
    return path


def broken_file(path: Path, kind: str) -> Path:
    """A file with an image name that Pillow cannot decode, of a `BROKEN` kind."""
    if kind == "text":
        path.write_text("not an image")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "body":
        rng = np.random.default_rng(len(str(path)))
        pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, format="PNG")
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
        path.write_bytes(bytes(data))
    else:
        Image.new("RGB", (16, 16), (10, 20, 30)).save(path, format="PNG")
        path.write_bytes(path.read_bytes()[:60])
    return path


def pillow_pixels(path: str | Path, size: int, channels: int = 3) -> np.ndarray:
    """The oracle: `path` as Pillow alone gives it, RGB (or L) resized bilinearly to
    ``size x size``, in [0, 1] float32, channels last."""
    with Image.open(path) as img:
        rgb = img.convert("RGB" if channels == 3 else "L")
        arr = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), np.float32)
    return (arr / 255.0).reshape(size, size, channels)
