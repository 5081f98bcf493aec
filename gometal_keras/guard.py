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
step leaves every variable as it was.

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
from collections.abc import Iterable, Iterator
from typing import Any

import keras


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
    the good steps before it).

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
        yield
    except KeyboardInterrupt:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)
        raise
