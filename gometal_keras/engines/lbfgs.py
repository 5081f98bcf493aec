"""L-BFGS (Go-Metal's ``optimizer/lbfgs.go``) as a Keras optimizer, on the JAX backend.

L-BFGS updates all parameters jointly: its direction comes from the last ``memory_size``
differences of the whole parameter vector and of the whole gradient, so it cannot be written
as Keras' per-variable ``update_step``. `LBFGS` overrides the joint ``apply`` and runs optax's
maintained ``optax.scale_by_lbfgs`` over the list of all trainable variables, its state (the
difference memories, their weights, the step count) held in Keras variables, float32 under
any precision policy. It steps by the learning rate along that direction, with no line search:
a Keras optimizer is given gradients, never the loss function a line search would call again
(1.0 is L-BFGS' natural step; lower it where the loss is far from quadratic).

On TensorFlow and torch it is not offered: optax is JAX's, and ``torch.optim.LBFGS`` needs a
closure that re-evaluates the loss several times a step, which a Keras trainer does not hand
its optimizer; constructing one there raises a ValueError saying so.
"""

from __future__ import annotations

from typing import Any

import keras

from gometal_keras.core.integers import count


def require_jax(what: str = "L-BFGS") -> None:
    """Raise one ValueError sentence unless Keras runs on JAX with optax installed.

    Example:
        >>> import keras
        >>> if keras.backend.backend() != "jax":
        ...     require_jax()
        Traceback (most recent call last):
        ...
        ValueError: L-BFGS is offered on the JAX backend only ...
    """
    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            f"{what} is offered on the JAX backend only (optax's L-BFGS; torch.optim.LBFGS "
            f"needs a loss closure a Keras trainer does not give), and Keras runs on {backend}"
            "; expected KERAS_BACKEND=jax or another optimizer."
        )
    try:
        import optax  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{what} needs optax, which is not installed; expected pip install "
            "'gometal-keras[jax]'."
        ) from None


class LBFGS(keras.optimizers.Optimizer):
    """Limited-memory BFGS over all trainable variables at once (see the module docstring).

    Args:
        learning_rate: The step along the L-BFGS direction (1.0: the full quasi-Newton step).
        memory_size: How many parameter / gradient differences it remembers.
        name: The optimizer's name.

    Raises:
        ValueError: Not on the JAX backend, optax missing, or a setting this optimizer
            does not apply (weight decay, clipping, gradient accumulation, EMA).

    Example:
        >>> from gometal_keras import TrainerConfig
        >>> TrainerConfig(optimizer="lbfgs", learning_rate=1.0).optimizer  # a Trainer makes it
        'lbfgs'
    """

    def __init__(
        self, learning_rate: float = 1.0, memory_size: int = 10, name: str = "lbfgs", **kwargs: Any
    ) -> None:
        require_jax()
        memory_size = count("memory_size", memory_size)
        unused = sorted(
            k for k in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm",
                        "use_ema", "gradient_accumulation_steps") if kwargs.get(k)
        )
        if unused:
            raise ValueError(
                f"LBFGS does not apply {', '.join(unused)}; expected it left unset (the "
                "update is L-BFGS' joint step and nothing else)."
            )
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.memory_size = memory_size

    def build(self, variables: list[Any]) -> None:
        """Make the optax state's Keras variables, float32 (its step count int32)."""
        if self.built:
            return
        import jax
        import jax.numpy as jnp
        import optax

        super().build(variables)
        self._params = list(variables)
        self._transform = optax.scale_by_lbfgs(memory_size=self.memory_size)
        zeros = [jnp.zeros(v.shape, jnp.float32) for v in variables]
        leaves, self._treedef = jax.tree_util.tree_flatten(self._transform.init(zeros))
        self._state = [
            self.add_variable(
                leaf.shape, initializer="zeros", dtype=str(leaf.dtype), name=f"lbfgs_state_{i}"
            )
            for i, leaf in enumerate(leaves)
        ]

    def apply(self, grads: Any, trainable_variables: Any = None) -> Any:
        """One joint L-BFGS step over every trainable variable; `iterations` counts it."""
        import jax

        if not self.built:
            self.build(trainable_variables)
        grads = [keras.ops.cast(g, "float32") for g in grads]
        params = [keras.ops.cast(v.value, "float32") for v in self._params]
        state = jax.tree_util.tree_unflatten(self._treedef, [s.value for s in self._state])
        direction, state = self._transform.update(grads, state, params)
        step = keras.ops.cast(self.learning_rate, "float32")
        for variable, value, d in zip(self._params, params, direction, strict=True):
            variable.assign(keras.ops.cast(value - step * d, variable.dtype))
        for variable, leaf in zip(self._state, jax.tree_util.tree_leaves(state), strict=True):
            variable.assign(leaf)
        self.iterations.assign_add(1)
        return self.iterations

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        raise NotImplementedError("LBFGS updates all variables jointly in apply().")

    def get_config(self) -> dict[str, Any]:
        """Keras' config plus ``memory_size``."""
        return {**super().get_config(), "memory_size": self.memory_size}
