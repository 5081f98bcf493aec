"""JAX engine: pure functions over Keras' stateless API, a whole epoch as one `lax.scan`."""

from __future__ import annotations

from typing import Any

import jax
import keras
import numpy as np

from gometal_keras.engines import Engine, LossFn, Program, host_free_memory_bytes
from gometal_keras.precision import DeviceInfo, cpu_device


class JaxProgram(Program):
    """Step and epoch compiled by `jax.jit`; the model's state lives on the device.

    Both take the model's variable values and return new ones (nothing is donated),
    and write them back, so the Keras model always holds the current weights.
    """

    def __init__(self, model: keras.Model, loss_fn: LossFn, optimizer: Any, jit: bool):
        if not optimizer.built:
            optimizer.build(model.trainable_variables)
        self._model, self._optimizer = model, optimizer
        # Commit every value to the device now: the program's outputs are committed, and a
        # first call on uncommitted inputs would otherwise compile the program twice.
        device = jax.devices()[0]
        self._write_back(tuple([jax.device_put(v, device) for v in group] for group in self._state()))

        def scaled_loss(trainable, non_trainable, opt_vars, x, y):
            y_pred, non_trainable, losses = model.stateless_call(
                trainable, non_trainable, x, training=True, return_losses=True
            )
            loss = loss_fn(y, y_pred)
            if losses:
                loss = loss + sum(losses)
            mapping = list(zip(optimizer.variables, opt_vars, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                scaled = optimizer.scale_loss(loss)
            return scaled, (loss.astype("float32"), non_trainable)

        grad_fn = jax.value_and_grad(scaled_loss, has_aux=True)

        def train_step(state, batch):
            trainable, non_trainable, opt_vars = state
            (_, (loss, non_trainable)), grads = grad_fn(trainable, non_trainable, opt_vars, *batch)
            trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
            return (trainable, non_trainable, opt_vars), loss

        def train_epoch(state, xs, ys):
            return jax.lax.scan(train_step, state, (xs, ys))

        def one_step(state, x, y):
            return train_step(state, (x, y))

        # No buffer donation: an interrupted call must leave the model its last weights.
        wrap = jax.jit if jit else (lambda f: f)
        self._step, self._epoch = wrap(one_step), wrap(train_epoch)

    def _state(self) -> tuple[list, list, list]:
        m, o = self._model, self._optimizer
        return (
            [v.value for v in m.trainable_variables],
            [v.value for v in m.non_trainable_variables],
            [v.value for v in o.variables],
        )

    def _write_back(self, state: tuple[list, list, list]) -> None:
        m, o = self._model, self._optimizer
        groups = (m.trainable_variables, m.non_trainable_variables, o.variables)
        for variables, values in zip(groups, state, strict=True):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)

    def step(self, x: Any, y: Any) -> Any:
        state, loss = self._step(self._state(), x, y)
        self._write_back(state)
        return loss

    def epoch(self, xs: Any, ys: Any) -> Any:
        state, losses = self._epoch(self._state(), xs, ys)
        self._write_back(state)
        return losses


class JaxEngine(Engine):
    """Keras on JAX: CPU, CUDA GPUs (TF32 for float32 matmuls by default) and others."""

    name = "jax"

    def __init__(self) -> None:
        self._device = jax.devices()[0]

    def describe_device(self) -> DeviceInfo:
        d = self._device
        if d.platform == "cpu":
            return cpu_device(self.name, xla=True)
        if d.platform in ("gpu", "cuda"):
            cc_text = str(getattr(d, "compute_capability", "0.0"))
            cc = tuple(int(p) for p in cc_text.split(".")[:2])
            return DeviceInfo(
                self.name,
                "cuda",
                d.device_kind,
                xla=True,
                fp16_fast=cc >= (7, 0),
                bf16_fast=cc >= (8, 0),
                tf32=cc >= (8, 0)
                and jax.config.jax_default_matmul_precision in (None, "tensorfloat32"),
                compute_capability=cc,
            )
        apple = d.platform.lower() == "metal"
        return DeviceInfo(
            self.name, "metal" if apple else d.platform, d.device_kind, True, True, not apple
        )

    def jit_options(self, device: DeviceInfo, precision: str) -> tuple[bool, ...]:
        return (True,)

    def to_device(self, array: np.ndarray) -> Any:
        return jax.device_put(array, self._device)

    def sync(self, model: keras.Model | None = None) -> None:
        if model is not None:
            jax.block_until_ready([v.value for v in model.variables])
        jax.effects_barrier()

    def free_memory_bytes(self) -> int | None:
        stats = self._device.memory_stats() if self._device.platform != "cpu" else None
        if not stats:
            return host_free_memory_bytes()
        return int(stats.get("bytes_limit", 0)) - int(stats.get("bytes_in_use", 0))

    def program(self, model: keras.Model, loss_fn: LossFn, optimizer: Any, jit: bool) -> Program:
        return JaxProgram(model, loss_fn, optimizer, jit)
