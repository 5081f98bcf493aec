"""The non-finite guard: which values must be finite for a training step to be committed,
and the epoch transaction that puts every variable back when an epoch is interrupted.

A step is a transaction. Its forward pass moves BatchNorm statistics and random-generator
state, its update moves the weights and the optimizer's slots. Under a guarded plan
(``plan.guard``, float32 and mixed_bfloat16) the step is committed only when its loss, every
gradient, every new weight and every new optimizer value is finite; otherwise every
variable (trainable, non-trainable, optimizer) is left as it was and the step's reported
loss is NaN, so the loop and `objectives.epoch_logs` see where it stopped. Under loss
scaling (mixed_float16) Keras' `LossScaleOptimizer` skips a step whose gradients are not
finite; the engines then also put back the forward pass's non-trainable state, so a skipped
step leaves every variable as it was (`scaled_verdict`). A step whose loss is not finite but
whose gradients are is skipped too, by the engine: nothing of it is applied. A step whose
loss and gradients are finite but whose update is not (a learning rate that overflows
float32) is a divergence that backing off the scale cannot fix: it is not committed, it
reports `DIVERGED` as its loss, and so does every later step of its epoch transaction
(`rolled_back_on_interrupt`), however the epoch is split into device calls
(`epoch_token`), none of them committed; so `fit` stops as under the guard.

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

    Args:
        values: Tensors, arrays or variables; None entries (a variable without a gradient)
            and integer ones are skipped.

    Returns:
        A boolean scalar of the backend in use (True for no values).
    """
    ops = keras.ops
    checks = [ops.all(ops.isfinite(v)) for v in values if v is not None and is_float(v)]
    if not checks:
        return ops.convert_to_tensor(True)
    return ops.all(ops.stack(checks))


def reported(values: Any, committed: Any) -> Any:
    """The step's values as reported: the loss (column 0) is NaN when not `committed`.

    Args:
        values: The float32 vector ``[loss, *metrics]`` of one step.
        committed: Scalar boolean: whether the guard committed the step.

    Returns:
        `values`, its loss replaced by NaN where the step was rolled back.

    Example:
        >>> import numpy as np
        >>> keras.ops.convert_to_numpy(reported(np.array([0.5, 1.0], "float32"), False))
        array([nan,  1.], dtype=float32)
    """
    ops = keras.ops
    values = ops.convert_to_tensor(values)
    loss = values[:1]
    loss = ops.where(committed, loss, ops.full_like(loss, float("nan")))
    return ops.concatenate([loss, values[1:]])


def scaled_verdict(going: Any, loss_ok: Any, grads_ok: Any, written: Iterable[Any]) -> Any:
    """What a loss-scaled step keeps: ``(keep_update, keep_forward, going)``, device booleans.

    Under loss scaling the optimizer (a `LossScaleOptimizer`) has computed the step's
    update: `written`, the new weights and optimizer values (on TensorFlow and PyTorch
    already assigned, so the engine puts the old ones back where the update is not kept).

    - gradients not finite: the loss scaler skipped the step; its update only backs off
      the scale, and is kept; the forward pass's state is not;
    - loss not finite, gradients finite: the step is skipped, nothing of it is kept (the
      engine need not run the update: ``going and (loss_ok or not grads_ok)`` says when);
    - loss and gradients finite, `written` not: a divergence; nothing is kept, and the
      returned `going` is False, so no later step commits (`scaled_reported`);
    - otherwise the step is committed.

    Args:
        going: Scalar boolean: no step before this one diverged (in this epoch).
        loss_ok: Scalar boolean: the step's loss is finite.
        grads_ok: Scalar boolean: its (scaled) gradients are finite (`all_finite`).
        written: The values its update writes: new weights and optimizer variables.

    Example:
        >>> import numpy as np
        >>> one, inf = np.ones(2, "float32"), np.array([np.inf], "float32")
        >>> [bool(v) for v in scaled_verdict(True, True, True, [one, inf])]
        [False, False, False]
        >>> [bool(v) for v in scaled_verdict(True, True, False, [one, one])]
        [True, False, True]
    """
    ops = keras.ops
    sound = ops.logical_and(loss_ok, grads_ok)
    written_ok = all_finite(written)
    going = ops.logical_and(going, ops.logical_or(ops.logical_not(sound), written_ok))
    keep_update = ops.logical_and(going, ops.logical_or(loss_ok, ops.logical_not(grads_ok)))
    keep_forward = ops.logical_and(going, sound)
    return keep_update, keep_forward, going


def scaled_reported(values: Any, going: Any) -> Any:
    """A loss-scaled step's values as reported: the loss is `DIVERGED` when not `going`.

    Example:
        >>> import numpy as np
        >>> keras.ops.convert_to_numpy(scaled_reported(np.array([0.5, 1.0], "float32"), False))
        array([-inf,   1.], dtype=float32)
    """
    ops = keras.ops
    values = ops.convert_to_tensor(values)
    loss = values[:1]
    loss = ops.where(going, loss, ops.full_like(loss, DIVERGED))
    return ops.concatenate([loss, values[1:]])


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
