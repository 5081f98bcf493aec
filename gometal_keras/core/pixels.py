"""Pixels: 8-bit image bytes and the [0, 1] floats a model takes, one mapping for both sides.

A decoded 8-bit image stays ``uint8`` in the loader's cache and crosses to the device as
bytes, a quarter of its float32 size; the step turns it into ``x * (1/255)`` in float32 on
the device (`to_model_input`). The host does the same product when a float batch is asked
for (`to_unit`), so a model sees the same numbers whichever side scaled them, bit for bit.

The rule reaches a `Program` only through a streamed image loader: every array a user
passes is converted to float32 before it is staged (`gometal_keras.data.validation`), so no
user's ``uint8`` array is ever rescaled behind their back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The dtype of pixels that are scaled on the device.
PIXEL_DTYPE = np.dtype(np.uint8)
#: The float32 factor of one 8-bit step: 255 * UNIT == 1 (in float32).
UNIT = np.float32(1 / 255)


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Host pixels as float32 in [0, 1]: ``uint8`` times `UNIT`; float32 as it is.

    Args:
        pixels: ``uint8`` bytes or float32 values already in [0, 1].

    Returns:
        A float32 array of the same shape.

    Example:
        >>> to_unit(np.array([0, 255], np.uint8)).tolist()
        [0.0, 1.0]
    """
    if pixels.dtype == PIXEL_DTYPE:
        return pixels.astype(np.float32) * UNIT
    return pixels.astype(np.float32, copy=False)


def common(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`a` and `b` in one dtype: both as they are when they agree, else both float32.

    A batch of 16-bit images (float32 from the decoder) beside 8-bit ones makes the
    8-bit ones float32 too, scaled by `to_unit`, so one stacked stage holds both.

    Example:
        >>> a, b = common(np.array([255], np.uint8), np.array([0.5], np.float32))
        >>> a.dtype, a.tolist(), b.tolist()
        (dtype('float32'), [1.0], [0.5])
    """
    if a.dtype == b.dtype:
        return a, b
    return to_unit(a), to_unit(b)


def assemble(parts: list[tuple[Any, np.ndarray]], n: int) -> np.ndarray:
    """`n` rows of pixels from ``(positions, rows)`` parts, in one dtype.

    The parts' own dtype when they agree, else float32 (`to_unit`): how a batch holding
    16-bit images beside 8-bit ones is put together. Rows no part fills are left unset.

    Example:
        >>> out = assemble([([1], np.array([[255]], np.uint8)), ([0], np.array([[0.5]]))], 2)
        >>> out.dtype, out.tolist()
        (dtype('float32'), [[0.5], [1.0]])
    """
    dtype = parts[0][1].dtype
    same = all(rows.dtype == dtype for _, rows in parts)
    out = np.empty((n, *parts[0][1].shape[1:]), dtype if same else np.float32)
    for at, rows in parts:
        out[at] = rows if same else to_unit(rows)
    return out


def to_model_input(x: Any) -> Any:
    """A batch as the model takes it, inside a compiled step: ``uint8`` becomes ``x * UNIT``.

    Decided when the step is traced (by the batch's dtype), in `keras.ops`, so the same
    line serves the TensorFlow, JAX and PyTorch programs; other dtypes pass unchanged.

    Example:
        >>> import keras
        >>> keras.ops.convert_to_numpy(to_model_input(np.array([0, 255], np.uint8))).tolist()
        [0.0, 1.0]
    """
    import keras

    if keras.backend.standardize_dtype(x.dtype) != "uint8":
        return x
    return keras.ops.multiply(keras.ops.cast(x, "float32"), UNIT)
