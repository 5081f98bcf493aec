"""Image augmentation for the training `DataLoader`: Go-Metal's fork's random crop,
horizontal flip and colour jitter, seeded per batch.

The options are the fork's transforms (`vision/augmentation`), in Python's spelling:

| Go-Metal's fork | here |
| --- | --- |
| ``RandomCrop{Width, Height}`` | ``random_crop=(height, width)`` |
| ``HorizontalFlip{Probability}`` | ``horizontal_flip=probability`` |
| ``ColorJitter{Brightness, Contrast}`` | ``brightness=..., contrast=...`` |

Each image draws its own crop window, flip and factors from a generator seeded by
``(seed, epoch, batch)``, so the same seed gives the same batches in every run, and a run
resumed at an epoch sees that epoch's. The crop is resized back (bilinear, `keras.ops.image`)
to the loader's ``image_size`` so every batch keeps the model's input shape (the fork hands out
the smaller crop). Colour jitter is the fork's: ``(x - 0.5) * c + 0.5`` then ``* b``, with
``c`` in ``1 ± contrast`` and ``b`` in ``1 ± brightness``, clipped to [0, 1]. Images are float32
in [0, 1], channels-last ``(batch, H, W, C)``, and stay so.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import keras
import numpy as np


def _unit(name: str, value: Any, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"Augmentation {name} must be a number, got {value!r}.")
    if not (math.isfinite(value) and 0.0 <= value <= high):
        raise ValueError(f"Augmentation {name} is {value!r}; expected a number in [0, {high}].")
    return float(value)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random crop, horizontal flip and colour jitter of training images (all off by default).

    Args:
        random_crop: ``(height, width)`` (or one int for both) of a window taken at a random
            place, then resized back to the image size; None: no crop.
        horizontal_flip: Probability that an image is mirrored left to right, in [0, 1].
        brightness: Most relative change of brightness, in [0, 1] (0.2: a factor in 0.8-1.2).
        contrast: Most relative change of contrast about 0.5, in [0, 1].
        seed: Seed of the draws (with the epoch and batch numbers).

    Example:
        >>> aug = Augmentation(horizontal_flip=1.0)
        >>> images = np.arange(4, dtype="float32").reshape(1, 1, 4, 1) / 4
        >>> aug.apply(images, epoch=0, batch=0)[0, 0, :, 0].tolist()
        [0.75, 0.5, 0.25, 0.0]
    """

    random_crop: int | tuple[int, int] | None = None
    horizontal_flip: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        crop = self.random_crop
        if crop is not None:
            crop = (crop, crop) if isinstance(crop, numbers.Integral) else crop
            if not (
                isinstance(crop, list | tuple)
                and len(crop) == 2
                and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in crop)
                and min(crop) >= 1
            ):
                raise ValueError(
                    f"Augmentation random_crop is {self.random_crop!r}; expected None, a "
                    "positive int or (height, width) of positive ints."
                )
            object.__setattr__(self, "random_crop", (int(crop[0]), int(crop[1])))
        for name in ("horizontal_flip", "brightness", "contrast"):
            object.__setattr__(self, name, _unit(name, getattr(self, name)))
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral):
            raise TypeError(f"Augmentation seed must be an int, got {self.seed!r}.")

    @property
    def active(self) -> bool:
        """Whether any transform is on (an inactive augmentation changes nothing)."""
        return bool(self.random_crop or self.horizontal_flip or self.brightness or self.contrast)

    def check(self, image_size: int) -> None:
        """Raise ValueError unless the crop fits an ``image_size`` square image.

        Example:
            >>> Augmentation(random_crop=40).check(32)
            Traceback (most recent call last):
            ValueError: Augmentation random_crop (40, 40) is larger than the 32x32 images; \
expected at most 32 a side.
        """
        if self.random_crop is not None and max(self.random_crop) > image_size:
            raise ValueError(
                f"Augmentation random_crop {self.random_crop} is larger than the "
                f"{image_size}x{image_size} images; expected at most {image_size} a side."
            )

    def apply(self, images: np.ndarray, epoch: int, batch: int) -> np.ndarray:
        """Return batch `batch` of epoch `epoch`, augmented (a new array; `images` is kept).

        Args:
            images: float32 ``(n, H, W, C)`` in [0, 1].
            epoch: The epoch number (seeds the draws).
            batch: The batch's number in its epoch (seeds the draws).

        Returns:
            float32 ``(n, H, W, C)`` in [0, 1].
        """
        out = np.array(images, dtype=np.float32, copy=True)
        if not self.active or len(out) == 0:
            return out
        n, h, w, _ = out.shape
        rng = np.random.default_rng([self.seed, epoch, batch])
        if self.random_crop is not None:
            ch, cw = self.random_crop
            tops, lefts = rng.integers(0, h - ch + 1, n), rng.integers(0, w - cw + 1, n)
            for i in range(n):
                window = out[i, tops[i] : tops[i] + ch, lefts[i] : lefts[i] + cw]
                resized = keras.ops.image.resize(window, (h, w), "bilinear", antialias=False)
                out[i] = keras.ops.convert_to_numpy(resized)
        if self.horizontal_flip:
            flip = rng.random(n) < self.horizontal_flip
            out[flip] = out[flip, :, ::-1]
        if self.brightness or self.contrast:
            c = 1.0 + rng.uniform(-1.0, 1.0, (n, 1, 1, 1)) * self.contrast
            b = 1.0 + rng.uniform(-1.0, 1.0, (n, 1, 1, 1)) * self.brightness
            out = (((out - 0.5) * c + 0.5) * b).astype(np.float32)
        return np.clip(out, 0.0, 1.0, out=out)
