"""Input checks run before any training or inference step touches the model.

Every check raises `ValueError` or `TypeError` with one sentence that says what was wrong
and what was expected, so a bad call can never leave half-updated weights behind. One
thing is only warned of, since a model may want it: 8-bit pixels 0-255 given as an array
(`PixelScaleWarning`), which the model takes as they are.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import numpy as np

#: This package's folder: warnings name the first line outside it.
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

SPARSE_LOSSES = ("sparse_categorical_crossentropy",)
ONE_HOT_LOSSES = ("categorical_crossentropy",)
BINARY_LOSSES = ("binary_crossentropy", "bce_with_logits")


def warn_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn` at the first line outside this package (the user's call), so the
    warning names it, and repeats of one message from one line are shown once.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_caller("careful")
        >>> str(caught[0].message), caught[0].filename.startswith(PACKAGE)
        ('careful', False)
    """
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level + 1)


class PixelScaleWarning(UserWarning):
    """8-bit or 16-bit pixel values (above 1) given as an array, which no one rescales."""


def as_features(
    x: Any, sample_shape: tuple[int, ...], what: str = "x", warn_pixels: bool = True
) -> np.ndarray:
    """Return `x` as a finite float32 array of samples shaped `sample_shape`.

    Values are never rescaled: a ``uint8`` (or ``uint16``) array of pixels 0-255 reaches
    the model as 0-255 (a first loss in the tens, not the ~2 of [0, 1] inputs), so it
    gets a `PixelScaleWarning` saying to divide by 255, as the image loader does.

    Args:
        x: Array-like of shape ``(n, *sample_shape)``.
        sample_shape: The model's per-sample input shape (channels-last for images).
        what: Name used in error messages.
        warn_pixels: Warn of unscaled 8/16-bit pixels (False for a model that rescales
            its input itself).

    Returns:
        A float32 numpy array (a copy only when a conversion is needed).

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = as_features(np.full((2, 3), 255, np.uint8), (3,))
        >>> print(caught[0].message)
        x is uint8 pixels up to 255, which the model takes as they are, not scaled to ...
    """
    arr = _numeric(x, what)
    _not_scalar(arr, what)
    if len(arr) == 0:
        raise ValueError(f"{what} is empty; expected at least one sample of shape {sample_shape}.")
    if tuple(arr.shape[1:]) != tuple(sample_shape):
        raise ValueError(
            f"{what} has samples of shape {tuple(arr.shape[1:])}; the model expects "
            f"{tuple(sample_shape)} (images channels-last: height, width, channels)."
        )
    if warn_pixels and arr.dtype in (np.uint8, np.uint16) and arr.max() > 1:
        warn_caller(
            f"{what} is {arr.dtype} pixels up to {int(arr.max())}, which the model takes as "
            "they are, not scaled to [0, 1] (so the first losses are large); expected "
            f"{what}.astype('float32') / {255 if arr.dtype == np.uint8 else 65535}, as the "
            "image DataLoader scales its images, unless the model rescales them itself.",
            PixelScaleWarning,
        )
    with np.errstate(over="ignore"):  # too-large values become inf and are reported below
        arr = arr.astype(np.float32, copy=False)
    _finite(arr, what)
    return arr


def as_targets(
    y: Any, n: int, loss: str, outputs: int, output_shape: tuple[int, ...]
) -> np.ndarray:
    """Return `y` checked against the loss and the model's output.

    Args:
        y: Labels: class indices for sparse losses, else one value per output.
        n: Number of samples in x.
        loss: The configured loss name.
        outputs: Width of the model's last axis (number of classes or targets).
        output_shape: The model's per-sample output shape.

    Returns:
        int32 class indices for sparse losses, float32 targets otherwise: in ``[0, 1]`` for
        the binary losses, and rows of probabilities in ``[0, 1]`` summing to 1 (within
        `ROW_SUM_TOLERANCE`: one-hot or soft labels) for categorical cross-entropy.
    """
    arr = _numeric(y, "y")
    _not_scalar(arr, "y")
    if len(arr) == 0:
        raise ValueError("y is empty; expected one label per sample of x.")
    if len(arr) != n:
        raise ValueError(f"x has {n} samples but y has {len(arr)}; expected one label per sample.")
    if loss in SPARSE_LOSSES:
        per_sample = tuple(output_shape[:-1])  # one index per output position (per pixel)
        if arr.ndim == 2 + len(per_sample) and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if tuple(arr.shape[1:]) != per_sample:
            raise ValueError(
                f"y has shape {arr.shape}; {loss} expects one class index per output position, "
                f"shape {(n, *per_sample)}, for a model that outputs {tuple(output_shape)}."
            )
        _finite(arr, "y")
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise TypeError(f"y holds non-integer values; {loss} expects integer class indices.")
        low, high = arr.min(), arr.max()
        if low < 0 or high >= outputs:
            raise ValueError(
                f"y holds class indices from {int(low)} to {int(high)}; the model has {outputs} "
                f"outputs, so expected indices in [0, {outputs})."
            )
        return arr.astype(np.int32)
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32, copy=False)
    if arr.ndim == 1 and output_shape == (1,):
        arr = arr[:, None]
    if tuple(arr.shape[1:]) != tuple(output_shape):
        kind = "one-hot width" if loss in ONE_HOT_LOSSES else "target shape"
        raise ValueError(
            f"y has {kind} {tuple(arr.shape[1:])}; the model outputs {tuple(output_shape)} "
            "per sample, so expected the same."
        )
    _finite(arr, "y")
    if loss in (*BINARY_LOSSES, *ONE_HOT_LOSSES) and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(
            f"y holds targets from {arr.min():g} to {arr.max():g}; {loss} expects "
            "probabilities in [0, 1]."
        )
    if loss in ONE_HOT_LOSSES:
        _distributions(arr, loss)
    return arr


#: How far a categorical target's row may sum from 1 (float16 soft labels round by ~1e-3).
ROW_SUM_TOLERANCE = 1e-2


def _distributions(arr: np.ndarray, loss: str) -> None:
    """Refuse rows (the last axis) that are not a distribution over the classes: one-hot
    or soft labels sum to 1; a row of zeros (no class) or several ones (multi-hot) would
    be trained on without a word by Keras' loss."""
    sums = arr.sum(axis=-1, dtype=np.float64)
    off = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if off.any():
        first = tuple(int(i) for i in np.argwhere(off)[0])
        where = first[0] if len(first) == 1 else first
        raise ValueError(
            f"y's row {where} sums to {sums[first]:g} ({int(off.sum())} rows off); {loss} "
            f"expects one-hot or probability rows that sum to 1 (within {ROW_SUM_TOLERANCE:g})."
        )


def _not_scalar(arr: np.ndarray, what: str) -> None:
    if arr.ndim == 0:
        raise ValueError(f"{what} is a scalar ({arr.item()!r}); expected an array of samples.")


def _numeric(value: Any, what: str) -> np.ndarray:
    if value is None:
        raise TypeError(f"{what} is None; expected a numeric array.")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise TypeError(
            f"{what} cannot be read as a rectangular array (ragged or mixed nesting); "
            "expected a numeric array."
        ) from None
    if arr.dtype == object or arr.dtype.kind in "USVmMO":
        raise TypeError(
            f"{what} has dtype {arr.dtype}; expected a numeric (int, float or bool) array."
        )
    if arr.dtype.kind == "c":
        raise TypeError(f"{what} is complex; expected real numbers.")
    return arr


def _finite(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.isfinite(arr).sum())
        raise ValueError(f"{what} holds {bad} NaN or infinite values; expected finite numbers.")
