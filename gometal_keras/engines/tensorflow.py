"""TensorFlow engine: `tf.function` programs, XLA where the device has it (not on Metal)."""

from __future__ import annotations

import importlib.metadata
import sys
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gometal_keras.engines import Engine, Objective, Program, host_free_memory_bytes
from gometal_keras.precision import MIXED_FLOAT16, DeviceInfo, cpu_device


def _has_metal_plugin() -> bool:
    if sys.platform != "darwin":
        return False
    try:
        importlib.metadata.distribution("tensorflow-metal")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class TensorFlowProgram(Program):
    """Training step and a `tf.while_loop` epoch, each one `tf.function`."""

    def __init__(self, model: keras.Model, objective: Objective, optimizer: Any, jit: bool):
        variables = model.trainable_variables
        if not optimizer.built:
            optimizer.build(variables)

        def train_step(x, y, ok):
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                loss = objective.loss(y, y_pred)
                if model.losses:
                    loss = loss + tf.add_n(model.losses)
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, variables)
            values = tf.stack([tf.cast(loss, tf.float32), *objective.metrics(y, y_pred)])
            if objective.guard:
                ok = tf.logical_and(ok, tf.math.is_finite(values[0]))
                tf.cond(ok, lambda: optimizer.apply(grads, variables), lambda: None)
            else:
                optimizer.apply(grads, variables)
            return values, ok

        def one_step(x, y):
            return train_step(x, y, tf.constant(True))[0]

        def train_epoch(xs, ys):
            steps = tf.shape(xs)[0]
            out = tf.TensorArray(tf.float32, size=steps, element_shape=[objective.width])
            ok = tf.constant(True)
            for i in tf.range(steps):
                values, ok = train_step(xs[i], ys[i], ok)
                out = out.write(i, values)
            return out.stack()

        self._step = tf.function(one_step, jit_compile=jit, reduce_retracing=True)
        self._epoch = tf.function(train_epoch, jit_compile=jit, reduce_retracing=True)

    def step(self, x: Any, y: Any) -> Any:
        return self._step(x, y)

    def epoch(self, xs: Any, ys: Any) -> Any:
        return self._epoch(xs, ys)


class TensorFlowEngine(Engine):
    """Keras on TensorFlow: CPU, CUDA GPUs, and Apple GPUs through tensorflow-metal."""

    name = "tensorflow"

    def __init__(self) -> None:
        self._gpus = tf.config.list_physical_devices("GPU")
        self._metal = bool(self._gpus) and _has_metal_plugin()

    def describe_device(self) -> DeviceInfo:
        if not self._gpus:
            return cpu_device(self.name, xla=True)
        if self._metal:
            # tensorflow-metal has no XLA; Apple GPUs have fast float16, not bfloat16.
            return DeviceInfo(
                self.name, "metal", "Apple GPU (tensorflow-metal)", False, True, False
            )
        details = tf.config.experimental.get_device_details(self._gpus[0])
        cc = tuple(details.get("compute_capability") or (0, 0))
        return DeviceInfo(
            self.name,
            "cuda",
            str(details.get("device_name", "GPU")),
            xla=True,
            fp16_fast=cc >= (7, 0),
            bf16_fast=cc >= (8, 0),
            tf32=cc >= (8, 0) and tf.config.experimental.is_tensor_float_32_execution_enabled(),
            compute_capability=cc if cc != (0, 0) else None,
        )

    def jit_options(self, device: DeviceInfo, precision: str = "float32") -> tuple[bool, ...]:
        if not device.xla:
            return (False,)
        if device.kind == "cpu" and precision == MIXED_FLOAT16:
            return (True,)  # TF's float16 CPU kernels without XLA are ~100x slower
        # XLA is not always faster: on a CPU its random numbers make Dropout slow.
        return (False, True) if device.kind == "cpu" else (True, False)

    def to_device(self, array: np.ndarray) -> Any:
        device = "/GPU:0" if self._gpus else "/CPU:0"
        with tf.device(device):
            return tf.identity(tf.convert_to_tensor(array))

    def sync(self, model: keras.Model | None = None) -> None:
        if self._gpus:
            tf.test.experimental.sync_devices()

    def free_memory_bytes(self) -> int | None:
        if not self._gpus or self._metal:
            return host_free_memory_bytes()  # Apple GPUs share the host's memory
        try:
            info = tf.config.experimental.get_memory_info("GPU:0")
        except (ValueError, RuntimeError):
            return None
        total = tf.config.experimental.get_device_details(self._gpus[0]).get("memory_limit")
        return None if total is None else int(total) - int(info["current"])

    def program(
        self, model: keras.Model, objective: Objective, optimizer: Any, jit: bool
    ) -> Program:
        return TensorFlowProgram(model, objective, optimizer, jit)
