"""The arguments of `Trainer.fit`, checked and normalised before any step runs.

Every argument is checked here, at the call, so a bad one raises `TypeError` or
`ValueError` (one sentence: which argument, what it was, what was expected) before the
first step, and the model, the optimizer and the epoch count are as they were. numpy
scalars count as the Python numbers they hold (``np.int64(3)`` epochs), a single Keras
callback counts as a list of one, and None as no callbacks.

Example:
    >>> import numpy as np
    >>> args = fit_arguments(np.int64(2), None, None, None, 0)
    >>> args.epochs, args.callbacks
    (2, [])
    >>> fit_arguments(1, "0.1", None, (), 0)
    Traceback (most recent call last):
    TypeError: early_stop_loss is '0.1'; expected a number or None.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import numbers
from typing import Any

import keras
import numpy as np

from gometal_keras.core.integers import is_int
from gometal_keras.data.inputs import is_stream


@dataclasses.dataclass(frozen=True)
class FitArguments:
    """`Trainer.fit`'s arguments after checking.

    Attributes:
        epochs: Epochs to train, at least 1.
        early_stop_loss: Stop once an epoch's mean loss is below this; None = never.
        validation_data: ``(x_val, y_val)``, a stream of batches, or None (the data
            itself is checked by the trainer).
        callbacks: Keras callbacks, in order.
        verbose: Keras' progress bar: 0 (silent), 1 (a bar) or 2 (a line per epoch).
        steps_per_epoch: A stream's steps per epoch; None = until it is exhausted.
    """

    epochs: int
    early_stop_loss: float | None
    validation_data: Any
    callbacks: list[keras.callbacks.Callback]
    verbose: int
    steps_per_epoch: int | None = None


def fit_arguments(
    epochs: Any,
    early_stop_loss: Any,
    validation_data: Any,
    callbacks: Any,
    verbose: Any,
    steps_per_epoch: Any = None,
    x: Any = None,
) -> FitArguments:
    """Check `Trainer.fit`'s arguments; return them normalised.

    Raises:
        TypeError: An argument of the wrong type (a callback that is not a
            `keras.callbacks.Callback`, a string loss, ...).
        ValueError: A value outside its range (epochs below 1, a NaN loss limit, a
            validation_data that is not a pair).
    """
    if not is_int(epochs) or epochs < 1:
        raise ValueError(f"epochs is {epochs!r}; expected an int of at least 1.")
    limit = None if early_stop_loss is None else loss_limit(early_stop_loss)
    if (
        validation_data is not None
        and not is_stream(validation_data)
        and (not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2)
    ):
        kind = type(validation_data).__name__
        raise ValueError(
            f"validation_data is a {kind}; expected a pair (x_val, y_val), a stream or None."
        )
    if steps_per_epoch is not None:
        if not is_int(steps_per_epoch) or steps_per_epoch < 1:
            raise ValueError(
                f"steps_per_epoch is {steps_per_epoch!r}; expected None or an int of at least 1."
            )
        if not is_stream(x):
            raise ValueError(
                f"steps_per_epoch is {steps_per_epoch!r} but x is an array; expected None "
                "(arrays train on every full batch) or x a stream of (x, y) batches."
            )
    if not is_int(verbose) or int(verbose) not in (0, 1, 2):
        raise ValueError(f"verbose is {verbose!r}; expected 0, 1 or 2.")
    return FitArguments(
        int(epochs),
        limit,
        validation_data,
        callback_list(callbacks),
        int(verbose),
        None if steps_per_epoch is None else int(steps_per_epoch),
    )


def loss_limit(value: Any, name: str = "early_stop_loss") -> float:
    """`value` as a loss limit: a finite float of at least 0 (every loss is at least 0).

    Raises:
        TypeError: Not a real number (a string, a bool, an array).
        ValueError: NaN, infinite, beyond float range (``10**400``) or negative.

    Example:
        >>> loss_limit(1), loss_limit(np.float32(0.5))
        (1.0, 0.5)
        >>> loss_limit(10**400)
        Traceback (most recent call last):
        ValueError: early_stop_loss is a number beyond float range; expected a finite number of \
at least 0 or None.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} is {value!r}; expected a number or None.")
    try:
        number, shown = float(value), None
    except OverflowError:  # an int (or a fraction) beyond float's range
        number, shown = (math.inf if value > 0 else -math.inf), "a number beyond float range"
    if not math.isfinite(number) or number < 0:
        shown = shown or repr(value)
        raise ValueError(f"{name} is {shown}; expected a finite number of at least 0 or None.")
    return number


def callback_list(callbacks: Any) -> list[keras.callbacks.Callback]:
    """`callbacks` as a list: None is none, one callback is a list of one.

    Raises:
        TypeError: `callbacks` is neither, or one of its entries is not a Keras callback.
        ValueError: A `TensorBoard` callback without the tensorboard package (it would
            fail at the end of the first epoch).

    Example:
        >>> len(callback_list(keras.callbacks.TerminateOnNaN()))
        1
        >>> callback_list([None])
        Traceback (most recent call last):
        TypeError: callbacks[0] is None; expected a keras.callbacks.Callback.
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, keras.callbacks.Callback):
        return [callbacks]
    if isinstance(callbacks, (str, bytes, dict)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(
            f"callbacks is {callbacks!r}; expected a keras.callbacks.Callback, a list of them "
            "or None."
        )
    found = list(callbacks)
    for i, callback in enumerate(found):
        if not isinstance(callback, keras.callbacks.Callback):
            raise TypeError(f"callbacks[{i}] is {callback!r}; expected a keras.callbacks.Callback.")
        if isinstance(callback, keras.callbacks.TensorBoard) and not _has("tensorboard"):
            raise ValueError(
                f"callbacks[{i}] is a TensorBoard callback, but the tensorboard package is not "
                "installed; expected it installed (pip install tensorboard) first."
            )
    return found


def _has(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def check_builder_batch(source: Any, batch_size: int) -> None:
    """Raise ValueError when a `ModelBuilder`'s batch size is not the config's `batch_size`.

    Go-Metal's input shape ``[batch, ...]`` fixes the batch; a different
    `TrainerConfig.batch_size` would be used instead without a word, so the two must agree.

    Example:
        >>> from gometal_keras.model.builder import ModelBuilder
        >>> check_builder_batch(ModelBuilder([64, 4]).add_dense(2), 32)
        Traceback (most recent call last):
        ValueError: The ModelBuilder's input shape has batch 64 but TrainerConfig.batch_size \
is 32; expected the same batch size in both.
    """
    builder_batch = getattr(source, "batch_size", None)
    if isinstance(source, keras.Model) or builder_batch is None or builder_batch == batch_size:
        return
    raise ValueError(
        f"The ModelBuilder's input shape has batch {builder_batch} but TrainerConfig.batch_size "
        f"is {batch_size}; expected the same batch size in both."
    )
