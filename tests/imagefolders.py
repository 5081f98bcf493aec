"""Tiny image folders written for the tests: real PNG and JPEG files, some of them broken."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image


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


def broken_file(path: Path, kind: str) -> Path:
    """A file with an image name that Pillow cannot decode: ``"text"`` or ``"truncated"``."""
    if kind == "text":
        path.write_text("not an image")
    else:
        Image.new("RGB", (16, 16), (10, 20, 30)).save(path, format="PNG")
        path.write_bytes(path.read_bytes()[:60])
    return path
