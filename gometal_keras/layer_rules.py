"""The argument and shape rules of the layer table (`gometal_keras.layers`).

Each checker takes a layer label (its name or "layer 3 (conv2d)"), an argument name and a
value, and returns the normalised value or raises `ValueError`/`TypeError` with one
sentence. Shapes are per-sample, in Go-Metal layout: ``(features,)`` or ``(C, H, W)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import keras

Shape = tuple[int, ...]
Check = Callable[[str, str, Any], Any]


def fail(label: str, message: str) -> ValueError:
    return ValueError(f"{label.capitalize()}: {message}.")


def integer(label: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{label.capitalize()}: {key} must be an int, got {value!r}.")
    return int(value)


def int_at_least(low: int) -> Check:
    def check(label: str, key: str, value: Any) -> int:
        if (value := integer(label, key, value)) < low:
            raise fail(label, f"{key} must be an int >= {low}, got {value}")
        return value

    return check


positive_int, non_negative_int = int_at_least(1), int_at_least(0)


def optional_positive_int(label: str, key: str, value: Any) -> int | None:
    return None if value is None else positive_int(label, key, value)


def flag(label: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{label.capitalize()}: {key} must be a bool, got {value!r}.")
    return value


def real(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Check:
    """Return a checker for a finite real number in the interval [lo, hi] (ends optionally open)."""
    text = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"

    def check(label: str, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{label.capitalize()}: {key} must be a number, got {value!r}.")
        value = float(value)
        low_bad = value <= lo if lo_open else value < lo
        high_bad = value >= hi if hi_open else value > hi
        if not math.isfinite(value) or low_bad or high_bad:
            raise fail(label, f"{key} must be a finite number in {text}, got {value}")
        return value

    return check


def check_window(label: str, what: str, size: int, s: Shape, pad: int = 0) -> None:
    if len(s) != 3:
        raise fail(
            label,
            f"needs an image input (C, H, W) but its input shape is {s}; "
            "put it before any dense layer and start from [batch, C, H, W]",
        )
    h, w = s[1] + 2 * pad, s[2] + 2 * pad
    if size > h or size > w:
        raise fail(
            label,
            f"{what} {size} is larger than its {h}x{w} "
            f"{'padded ' if pad else ''}input; expected at most {min(h, w)}",
        )


def check_batchnorm(label: str, a: dict, s: Shape) -> None:
    if a["num_features"] is not None and a["num_features"] != s[0]:
        unit = "channel" if len(s) == 3 else "feature"
        raise fail(
            label,
            f"num_features is {a['num_features']} but its input's {unit} count is "
            f"{s[0]}; expected {s[0]} or None",
        )


def keras_axis(axis: int, shape: Shape) -> int:
    """Map a Go-Metal softmax axis (batch dim included, NCHW) to the Keras channels-last axis.

    Args:
        axis: Axis in Go-Metal layout counting the batch dim; negative counts from the end.
        shape: Per-sample input shape in Go-Metal layout.

    Returns:
        The non-negative axis for Keras, batch dim included.

    Example:
        >>> keras_axis(1, (3, 8, 8))
        3
    """
    rank = len(shape) + 1
    norm = axis + rank if axis < 0 else axis
    if not 0 <= norm < rank:
        raise ValueError(f"axis {axis} is out of range for a rank-{rank} tensor")
    if norm == 0:
        raise ValueError("axis 0 is the batch axis; softmax must run over a per-sample axis")
    return {1: 3, 2: 1, 3: 2}[norm] if rank == 4 else norm


def check_softmax(label: str, a: dict, s: Shape) -> None:
    try:
        keras_axis(a["axis"], s)
    except ValueError as err:
        raise fail(label, f"{err} (expected -{len(s)}..-1 or 1..{len(s)})") from None


def window_out(channels: int, s: Shape, k: int, stride: int, pad: int = 0) -> Shape:
    return (channels, *((n + 2 * pad - k) // stride + 1 for n in s[1:]))


def resolve_policy(dtype_policy: str | keras.DTypePolicy | None) -> keras.DTypePolicy | None:
    """Return `compile`'s ``dtype_policy`` argument as a policy (None stays None).

    Example:
        >>> resolve_policy("mixed_bfloat16").compute_dtype
        'bfloat16'
    """
    if dtype_policy is None or isinstance(dtype_policy, keras.DTypePolicy):
        return dtype_policy
    if not isinstance(dtype_policy, str):
        raise TypeError(
            f"dtype_policy must be None, a policy name or a keras.DTypePolicy, "
            f"got {dtype_policy!r}."
        )
    try:
        return keras.DTypePolicy(dtype_policy)
    except (ValueError, TypeError):
        raise ValueError(
            f"Unknown dtype_policy {dtype_policy!r}; expected a name such as "
            "'float32', 'bfloat16', 'mixed_float16' or 'mixed_bfloat16'."
        ) from None
