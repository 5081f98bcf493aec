"""A dynamic loss scaler's step as element-wise selects, for compiled JAX loops.

Keras' `LossScaleOptimizer.stateless_apply` branches twice a step with ``ops.cond``
(finite gradients or not; grow the scale or count the step). Inside a JAX ``lax.scan`` on a
GPU, each such conditional reads its predicate back to the host, step after step: on a
small model that wait is a fifth of the step (the seed MLP in mixed_float16 on an H200).
`scaled_apply` computes the same values with ``jnp.where``, which XLA fuses into the
update: the inner optimizer's update is computed every step and kept only when the
gradients are finite; the counter and the scale move as Keras moves them.

Only public attributes of the loss-scale optimizer are read: ``inner_optimizer``,
``step_counter``, ``dynamic_scale``, ``dynamic_growth_steps`` and ``variables`` (its own
variables, then the inner optimizer's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp


def scaled_apply(
    optimizer: Any,
    optimizer_values: Sequence[Any],
    grads: Sequence[Any],
    trainable_values: Sequence[Any],
    unscaled: Sequence[bool] = (),
) -> tuple[list[Any], list[Any]]:
    """``optimizer.stateless_apply`` of a `keras.optimizers.LossScaleOptimizer`, cond-free.

    Args:
        optimizer: A built `keras.optimizers.LossScaleOptimizer`.
        optimizer_values: The values of ``optimizer.variables``, in that order.
        grads: The scaled gradients, one per trainable variable.
        trainable_values: The trainable variables' values.
        unscaled: Per trainable variable, whether its gradient is used as it is (Keras'
            ``overwrite_with_gradient`` variables); empty: none is.

    Returns:
        ``(new trainable values, new optimizer values)``, as ``stateless_apply`` returns.
    """
    variables = list(optimizer.variables)
    count_at = _position(variables, optimizer.step_counter)
    scale_at = _position(variables, optimizer.dynamic_scale)
    inner_at = len(variables) - len(optimizer.inner_optimizer.variables)
    count, scale = optimizer_values[count_at], optimizer_values[scale_at]
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in grads if g is not None]))
    flags = list(unscaled) or [False] * len(grads)
    divided = [g if g is None or keep else g / scale for g, keep in zip(grads, flags, strict=True)]
    new_trainable, new_inner = optimizer.inner_optimizer.stateless_apply(
        list(optimizer_values[inner_at:]), divided, list(trainable_values)
    )

    def kept(new: Sequence[Any], old: Sequence[Any]) -> list[Any]:
        return [jnp.where(finite, n, o) for n, o in zip(new, old, strict=True)]

    grow = count == optimizer.dynamic_growth_steps - 1
    values = list(optimizer_values)
    values[inner_at:] = kept(new_inner, optimizer_values[inner_at:])
    values[count_at] = jnp.where(finite & ~grow, count + 1, jnp.zeros_like(count))
    values[scale_at] = jnp.where(finite, jnp.where(grow, scale * 2.0, scale), scale * 0.5)
    return kept(new_trainable, trainable_values), values


def _position(variables: Sequence[Any], wanted: Any) -> int:
    return next(i for i, v in enumerate(variables) if v is wanted)
