"""The argument and shape rules of the layer table (`gometal_keras.model.layers`).

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
import numpy as np

Shape = tuple[int, ...]
Check = Callable[[str, str, Any], Any]


def shown(value: Any) -> str:
    """``repr(value)``, or a short description of an int too long for Python to print."""
    try:
        return repr(value)
    except ValueError:  # more digits than sys.get_int_max_str_digits()
        return f"an int of {value.bit_length()} bits"


def fail(label: str, message: str) -> ValueError:
    return ValueError(f"{label.capitalize()}: {message}.")


def integer(label: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{label.capitalize()}: {key} must be an int, got {value!r}.")
    return int(value)


def int_at_least(low: int) -> Check:
    def check(label: str, key: str, value: Any) -> int:
        if (value := integer(label, key, value)) < low:
            raise fail(label, f"{key} must be an int >= {low}, got {shown(value)}")
        return value

    return check


positive_int, non_negative_int = int_at_least(1), int_at_least(0)


def optional_positive_int(label: str, key: str, value: Any) -> int | None:
    return None if value is None else positive_int(label, key, value)


def flag(label: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{label.capitalize()}: {key} must be a bool, got {value!r}.")
    return value


#: float32's largest and smallest normal magnitudes: a layer's settings reach the device as
#: float32 (compute dtypes are float32 or narrower), so they are checked as that float32.
FLOAT32_MAX, FLOAT32_TINY = float(np.finfo(np.float32).max), float(np.finfo(np.float32).tiny)


def as_float32(value: float) -> float:
    """`value` as the device's float32: ±inf past float32's range, 0 below its normal
    range (subnormals are flushed to zero on many devices), else the nearest float32.

    Example:
        >>> as_float32(1e39), as_float32(1e-50), as_float32(0.1) == 0.1
        (inf, 0.0, False)
    """
    if math.isnan(value):
        return value
    if abs(value) > FLOAT32_MAX:
        return math.copysign(math.inf, value)
    if abs(value) < FLOAT32_TINY:
        return 0.0
    return float(np.float32(value))


def real(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Check:
    """Return a checker for a real number in the interval [lo, hi] (ends optionally open),
    finite and inside it both as given and as the float32 the device holds (so ``1e39``,
    infinite in float32, and ``1e-50`` for an open bound at 0, which is 0 in float32, are
    refused)."""
    text = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"

    def inside(number: float) -> bool:
        low_bad = number <= lo if lo_open else number < lo
        high_bad = number >= hi if hi_open else number > hi
        return math.isfinite(number) and not low_bad and not high_bad

    def check(label: str, key: str, value: Any) -> float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise TypeError(f"{label.capitalize()}: {key} must be a number, got {value!r}.")
        try:
            number = float(value)
        except OverflowError:  # an int beyond float's range
            number = math.inf if value > 0 else -math.inf
        if not (inside(number) and inside(as_float32(number))):
            raise fail(
                label,
                f"{key} must be a finite number in {text} as given and as a float32, "
                f"got {shown(value)}",
            )
        return number

    return check


def optional_shape(label: str, key: str, value: Any) -> tuple[int, ...] | None:
    """None, or a non-empty list/tuple of positive ints (returned as a tuple)."""
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not value:
        raise TypeError(
            f"{label.capitalize()}: {key} must be None or a non-empty list of ints, got {value!r}."
        )
    return tuple(positive_int(label, key, d) for d in value)


def features(s: Shape) -> int:
    """The channel or feature count normalisation works on: C of an image, else the last axis.

    Example:
        >>> features((3, 8, 8)), features((10, 16)), features((5,))
        (3, 16, 5)
    """
    return s[0] if len(s) == 3 else s[-1]


#: What an input of each per-sample rank is called, and what a layer needing it expects.
_RANKS = {
    1: ("token ids (seq_len,)", "it as the first layer on a [batch, seq_len] input"),
    2: (
        "a sequence input (seq_len, features)",
        "[batch, seq_len, features] or an embedding before it",
    ),
}


def check_sequence(label: str, s: Shape, rank: int = 2) -> None:
    """Raise unless `s` is a sequence ``(seq_len, features)`` (rank 1: token ids)."""
    if len(s) != rank:
        what, expected = _RANKS[rank]
        raise fail(label, f"needs {what} but its input shape is {s}; expected {expected}")


def check_tokens(label: str, a: dict, s: Shape) -> None:
    check_sequence(label, s, 1)


def check_conv1d(label: str, a: dict, s: Shape) -> None:
    check_sequence(label, s)
    if (size := s[0] + 2 * a["padding"]) < a["kernel_size"]:
        raise fail(
            label,
            f"kernel_size {a['kernel_size']} is longer than its {size}-step "
            f"{'padded ' if a['padding'] else ''}sequence; expected at most {size}",
        )


def check_attention(label: str, a: dict, s: Shape) -> None:
    check_sequence(label, s)
    width, heads = s[1], a["num_heads"]
    if a["embed_dim"] is not None and a["embed_dim"] != width:
        raise fail(
            label,
            f"embed_dim is {a['embed_dim']} but its input has {width} features; "
            f"expected {width} or None",
        )
    if width % heads:
        raise fail(
            label,
            f"num_heads {heads} does not divide its {width} features; expected a divisor of "
            f"{width}",
        )


def check_layernorm(label: str, a: dict, s: Shape) -> None:
    shape = a["normalized_shape"]
    if shape is not None and tuple(s[len(s) - len(shape) :]) != shape:
        raise fail(
            label,
            f"normalized_shape {list(shape)} is not the end of its input shape {s}; expected "
            f"trailing dimensions such as {[s[-1]]} or None",
        )


def layernorm_axes(shape: tuple[int, ...] | None, s: Shape) -> list[int]:
    """Keras axes (batch axis 0, channels-last) of the trailing Go-Metal dims `shape` names.

    Example:
        >>> layernorm_axes(None, (10, 16)), layernorm_axes((8, 8), (3, 8, 8))
        ([2], [1, 2])
    """
    count = 1 if shape is None else len(shape)
    rank = len(s) + 1
    return sorted(keras_axis(axis, s) for axis in range(rank - count, rank))


def check_pool1d(label: str, a: dict, s: Shape) -> None:
    check_sequence(label, s)


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
    if a["num_features"] is not None and a["num_features"] != (n := features(s)):
        unit = "channel" if len(s) == 3 else "feature"
        raise fail(
            label,
            f"num_features is {a['num_features']} but its input's {unit} count is "
            f"{n}; expected {n} or None",
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
