"""The non-finite guard: which values are finite, and the epoch transaction that stops an
epoch at a divergence and puts every variable back when an epoch is interrupted.

A step is a transaction. Its forward pass moves BatchNorm statistics and random-generator
state, its update moves the weights and the optimizer's slots. What a step keeps, and what
it reports, is the step-commit rule (`gometal_keras.engines.commit`), written once for
every engine with the check here (`all_finite`): under the guard a step is committed only
when its loss, every gradient and every value it wrote is finite, else its loss is NaN;
under loss scaling a step whose loss and gradients are finite but whose update is not is
a divergence: not committed, it reports `DIVERGED` as its loss, and so does every later
step of its epoch transaction (`rolled_back_on_interrupt`), however the epoch is split
into device calls (`epoch_token`, `EpochLatch`), none of them committed; so `fit` stops as
under the guard.

The checks are written with `keras.ops`, so each engine's compiled step (TensorFlow graph,
JAX jit, PyTorch eager) runs the same test; integer variables (iteration counters) are
always finite and are left out.

Example:
    >>> import numpy as np
    >>> bool(all_finite([np.ones(3, "float32"), None, np.array(2**40, "int64")]))
    True
    >>> bool(all_finite([np.array([1.0, np.inf], "float32")]))
    False
"""

from __future__ import annotations

import contextlib
import itertools
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import keras
import numpy as np

#: The loss a loss-scaled step reports when its update diverged, and every later step of
#: the epoch: not NaN or +inf, which a step the loss scaler skipped may report.
DIVERGED = float("-inf")

#: The epoch transaction open on an optimizer, if one is (`epoch_token`).
_OPEN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TOKENS = itertools.count()


def is_float(value: Any) -> bool:
    """Whether `value` (a tensor, array or variable) holds floating-point numbers.

    Example:
        >>> import numpy as np
        >>> is_float(np.zeros(2, "float16")), is_float(np.zeros(2, "int32"))
        (True, False)
    """
    dtype = keras.backend.standardize_dtype(value.dtype)
    return dtype.startswith(("float", "bfloat"))


def all_finite(values: Iterable[Any]) -> Any:
    """A scalar boolean tensor: every floating-point value in `values` is finite.

    One ``all(isfinite)`` per value (``isfinite`` alone for a scalar), and-ed: no values
    are joined or copied.

    Args:
        values: Tensors, arrays or variables; None entries (a variable without a gradient)
            and integer ones are skipped.

    Returns:
        A boolean scalar of the backend in use (True for no values).
    """
    ops = keras.ops
    checks = [
        ops.isfinite(v) if len(v.shape) == 0 else ops.all(ops.isfinite(v))
        for v in values
        if v is not None and is_float(v)
    ]
    if not checks:
        return ops.convert_to_tensor(True)
    if len(checks) == 1:
        return checks[0]
    return ops.all(ops.stack(checks))


def diverged(losses: Any) -> np.ndarray:
    """On the host: which of a loss-scaled run's losses mark a diverged step (`DIVERGED`).

    Example:
        >>> diverged([0.5, float("nan"), float("inf"), float("-inf")]).tolist()
        [False, False, False, True]
    """
    return np.asarray(losses, dtype=np.float64) == DIVERGED


def epoch_token(optimizer: Any) -> int | None:
    """The epoch transaction open on `optimizer` (`rolled_back_on_interrupt`), or None.

    A loss-scaled program holds "a step diverged" from device call to device call while
    the same epoch transaction is open (an epoch in chunks, streamed, or one call per
    step), so a divergence stops the rest of its epoch, as the guard does; a new
    transaction starts afresh, and outside one (`Trainer.train_batch`) each call does.

    Example:
        >>> opt = keras.optimizers.SGD()
        >>> with rolled_back_on_interrupt(keras.Sequential([keras.Input((1,))]), opt):
        ...     inside = epoch_token(opt)
        >>> inside is not None, epoch_token(opt)
        (True, None)
    """
    return _OPEN.get(optimizer)


class EpochLatch:
    """A loss-scaled program's `going` after its last call, kept for the next call.

    Kept only while one epoch transaction (`epoch_token`) is open: `held` gives it back
    to a later call of that epoch, and None to the first call of a new one or to a call
    outside any (each of those starts afresh).

    Example:
        >>> opt = keras.optimizers.SGD()
        >>> latch = EpochLatch(opt)
        >>> with rolled_back_on_interrupt(keras.Sequential([keras.Input((1,))]), opt):
        ...     first = latch.held()
        ...     latch.hold(False)
        ...     later = latch.held()
        >>> first, later, latch.held()
        (None, False, None)
    """

    def __init__(self, optimizer: Any):
        self._optimizer = optimizer
        self._held: tuple[int, Any] | None = None

    def held(self) -> Any:
        """The flag the last call of the open epoch transaction ended with, or None."""
        token = epoch_token(self._optimizer)
        if token is None or self._held is None or self._held[0] != token:
            return None
        return self._held[1]

    def hold(self, going: Any) -> None:
        """Keep `going`, the flag a call ended with (a device boolean), for the next call."""
        token = epoch_token(self._optimizer)
        self._held = None if token is None else (token, going)


def still_going(values: Any) -> Any:
    """Whether a guarded epoch goes on after a call that returned `values`, on the device.

    A guarded epoch stops at its first step that is not committed (its reported loss is
    NaN, and so is every later one of that call). An epoch run as several calls hands
    this flag to the next call (`Program.epoch`'s ``going``) without waiting for the
    values, so the device runs the calls back to back and still commits nothing after a
    step the guard stopped.

    Args:
        values: One call's per-step values, ``(steps, width)``, loss in column 0.

    Returns:
        A boolean scalar of the backend in use: the call's last step was committed.

    Example:
        >>> import numpy as np
        >>> bool(still_going(np.array([[0.5, 1.0], [0.4, 1.0]], "float32")))
        True
        >>> bool(still_going(np.array([[np.nan, 1.0], [np.nan, 1.0]], "float32")))
        False
    """
    values = keras.ops.convert_to_tensor(values)
    return keras.ops.isfinite(values[-1, 0])


@contextlib.contextmanager
def rolled_back_on_interrupt(model: keras.Model, optimizer: Any) -> Iterator[None]:
    """Run a block (an epoch) as a transaction: on Ctrl-C, every variable goes back.

    `Trainer.fit` runs each epoch in one: a `KeyboardInterrupt` (Ctrl-C) that arrives
    while a fused epoch runs on the device is raised when the call returns, after its
    updates are in; without this the model would hold an epoch that `trainer.epoch` does
    not count, and a resume would train on its data twice. The copy is taken on the
    device, once an epoch. Other errors leave the variables as the steps before them left
    them (a non-finite step is undone by the step's own guard; a bad streamed batch keeps
    the good steps before it). It is the epoch `epoch_token` names while it is open.

    Args:
        model: Its variables (weights, BatchNorm statistics, random-generator state).
        optimizer: Its variables (slots, iteration count, loss scale).

    Example:
        >>> m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> before = keras.ops.convert_to_numpy(m.weights[0])
        >>> try:
        ...     with rolled_back_on_interrupt(m, keras.optimizers.SGD()):
        ...         _ = m.weights[0].assign(before + 1)
        ...         raise KeyboardInterrupt
        ... except KeyboardInterrupt:
        ...     pass
        >>> bool((keras.ops.convert_to_numpy(m.weights[0]) == before).all())
        True
    """
    variables = [*model.variables, *optimizer.variables]
    saved = [keras.ops.copy(v.value) for v in variables]
    try:
        with epoch_open(optimizer):
            yield
    except KeyboardInterrupt:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)
        raise


@contextlib.contextmanager
def epoch_open(optimizer: Any) -> Iterator[None]:
    """Open an epoch transaction on `optimizer` (`epoch_token`) for the block, no copy.

    `rolled_back_on_interrupt` opens one; `Trainer.train_epoch` opens this alone, so a
    divergence stops the rest of its epoch too, without an epoch's copy of the variables.
    """
    _OPEN[optimizer] = next(_TOKENS)  # a new epoch: no step of it has diverged yet
    try:
        yield
    finally:
        _OPEN.pop(optimizer, None)
