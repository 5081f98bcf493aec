"""`decode_pixels` / `decode_image`: one image file to channels-last pixels, with Pillow.

Any mode Pillow reads is accepted: grey, grey+alpha, palette, RGB, RGBA, CMYK, 16-bit and
32-bit integer and float images. 8-bit images stay ``uint8`` bytes (`decode_pixels`: what
the loader caches and stages, scaled on the device) and scale by 1/255 as floats
(`decode_image`, `gometal_keras.core.pixels`); 16-bit ones become float32 scaled by 1/65535
(not clipped to 8 bits first); alpha is dropped. Every image is resized to ``size x size``
(bilinear, as Go-Metal's preprocessing), so a folder of mixed sizes gives equal batches.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from gometal_keras.core.pixels import to_unit

#: Divisor that maps each high-bit-depth Pillow mode's values onto [0, 1].
_WIDE = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0, "F": 1.0}


class UnreadableImageError(ValueError):
    """An image file that Pillow cannot decode; the message names the file."""


def decode_image(path: str, size: int, channels: int = 3) -> np.ndarray:
    """Decode `path` into a ``(size, size, channels)`` float32 array in [0, 1].

    The floats of `decode_pixels` (same arguments and errors), the loader's float batches.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "grey16.png")
        >>> Image.fromarray(np.full((4, 6), 65535, np.uint16)).save(path)
        >>> px = decode_image(path, 2); px.shape, float(px.min()), float(px.max())
        ((2, 2, 3), 1.0, 1.0)
    """
    return to_unit(decode_pixels(path, size, channels))


def decode_pixels(path: str, size: int, channels: int = 3) -> np.ndarray:
    """Decode `path` into ``(size, size, channels)`` pixels: ``uint8`` for 8-bit images.

    Args:
        path: The image file.
        size: Height and width after resizing.
        channels: 3 (RGB) or 1 (grey).

    Returns:
        ``uint8`` bytes for 8-bit modes; float32 in [0, 1] for 16-bit, 32-bit and float
        modes (which bytes would round). `gometal_keras.core.pixels.to_unit` maps either to
        what `decode_image` returns.

    Raises:
        UnreadableImageError: The file is missing, truncated or not an image.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "red.png")
        >>> Image.new("RGB", (3, 5), (255, 0, 0)).save(path)
        >>> px = decode_pixels(path, 2); px.dtype, px[0, 0].tolist()
        (dtype('uint8'), [255, 0, 0])
    """
    if channels not in (1, 3):
        raise ValueError(f"channels is {channels!r}; expected 1 (grey) or 3 (RGB).")
    try:
        with warnings.catch_warnings():  # a size past Pillow's bomb limit: unreadable, too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                pixels = _resized(img, size, channels)
    except Exception as err:  # any way Pillow fails on a file (struct.error from a flipped
        # TIFF byte, a decompression bomb, ...) is that file being unreadable, nothing else
        reason = str(err).split("\n")[0] or type(err).__name__
        if isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            reason = f"too many pixels to decode safely: {reason}"
        raise UnreadableImageError(
            f"Image file {path!r} cannot be decoded ({reason}); expected a readable image."
        ) from None
    return pixels.reshape(size, size, channels)


def _resized(img: Image.Image, size: int, channels: int) -> np.ndarray:
    if img.mode in _WIDE:
        scale = _WIDE[img.mode]
        grey = img.convert("F") if img.mode != "F" else img
        grey = grey.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.clip(np.asarray(grey, dtype=np.float32) / scale, 0.0, 1.0)
        return arr[..., None] if channels == 1 else np.repeat(arr[..., None], 3, axis=-1)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")  # palette transparency goes through RGBA, then is dropped
    img = img.convert("L" if channels == 1 else "RGB")
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)
