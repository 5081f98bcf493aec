"""TensorFlow engine: `tf.function` programs, XLA where the device has it (not on Metal)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import sys
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gometal_keras.core import pixels
from gometal_keras.core.device import DeviceInfo, cpu_device
from gometal_keras.core.plan import HOST, Precision, RunPlan
from gometal_keras.engines import guard
from gometal_keras.engines.base import (
    Engine,
    Objective,
    Placement,
    Program,
    host_free_memory_bytes,
)
from gometal_keras.engines.placement import rebuilt_in


def _has_metal_plugin() -> bool:
    if sys.platform != "darwin":
        return False
    try:
        importlib.metadata.distribution("tensorflow-metal")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


class TensorFlowProgram(Program):
    """Training step and a `tf.while_loop` epoch, each one `tf.function`.

    Under a `tf.distribute` strategy every replica takes its slice of the global batch,
    the optimizer all-reduces the gradients, and the values are averaged over replicas.
    """

    def _compile(
        self, model: keras.Model, objective: Objective, optimizer: Any, placement: Placement
    ) -> None:
        plan = self.plan
        strategy = placement.strategy if isinstance(placement, MirroredPlacement) else None
        variables = model.trainable_variables
        replicas = strategy.num_replicas_in_sync if strategy else 1
        # Loss scaling without the guard: a divergent update stops the epoch (see below).
        scaled = self._scaled = (
            plan.loss_scaling is not None and not plan.guard and strategy is None
        )

        def forward_backward(x, y):
            x = pixels.to_model_input(x)
            with tf.GradientTape() as tape:
                y_pred = model(x, training=True)
                # Under a strategy a Keras loss is already divided by the replica count, so
                # the optimizer's all-reduce (a sum) yields the global batch's gradient.
                loss = objective.loss(y, y_pred)
                if model.losses:
                    loss = loss + tf.add_n(model.losses)
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, variables)
            loss = tf.cast(loss, tf.float32) * replicas
            return grads, tf.stack([loss, *objective.metrics(y, y_pred)])

        def replica_step(x, y):
            ctx = tf.distribute.get_replica_context()
            size = tf.shape(x)[0] // replicas
            start = ctx.replica_id_in_sync_group * size
            grads, values = forward_backward(x[start : start + size], y[start : start + size])
            optimizer.apply(grads, variables)  # all-reduces the gradients (sum)
            return values

        def train_step(x, y, ok):
            if strategy is not None:
                values = strategy.run(replica_step, args=(x, y))
                return strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None), ok
            # A step is a transaction (`gometal_keras.engines.guard`): keep a copy of what it may
            # change, to put back if it is not committed.
            forward = model.non_trainable_variables
            update = [*variables, *optimizer.variables] if plan.guard or scaled else []
            forward_saved = [(v, tf.identity(v.value)) for v in forward]
            update_saved = [(v, tf.identity(v.value)) for v in update]

            def put_back(saved):
                for v, old in saved:
                    v.assign(old)

            def restore():
                put_back([*forward_saved, *update_saved])

            grads, values = forward_backward(x, y)
            if scaled:
                # The loss scaler skips a step whose gradients are not finite (and backs
                # off the scale); an update that is not finite with finite gradients is
                # a divergence: not committed, and no later step is (`guard.scaled_verdict`).
                loss_ok, grads_ok = tf.math.is_finite(values[0]), guard.all_finite(grads)
                run = tf.logical_and(ok, tf.logical_or(loss_ok, tf.logical_not(grads_ok)))
                tf.cond(run, lambda: optimizer.apply(grads, variables), lambda: None)
                keep_update, keep_forward, ok = guard.scaled_verdict(
                    ok, loss_ok, grads_ok, [*variables, *optimizer.variables]
                )
                tf.cond(keep_update, lambda: None, lambda: put_back(update_saved))
                tf.cond(keep_forward, lambda: None, lambda: put_back(forward_saved))
                return guard.scaled_reported(values, ok), ok
            update_ok = guard.all_finite([values[0], *grads])
            if not plan.guard:
                # Without the guard and a loss scaler, the update is applied; the forward
                # pass's BatchNorm statistics and random-generator state are put back.
                tf.cond(update_ok, lambda: None, restore)
                optimizer.apply(grads, variables)
                return values, ok
            ok = tf.logical_and(ok, update_ok)
            tf.cond(ok, lambda: optimizer.apply(grads, variables), lambda: None)
            ok = tf.logical_and(ok, guard.all_finite([*variables, *optimizer.variables]))
            tf.cond(ok, lambda: None, restore)
            return guard.reported(values, ok), ok

        def one_step(x, y, ok):
            return train_step(x, y, ok)

        def train_epoch(xs, ys, ok):
            steps = tf.shape(xs)[0]
            out = tf.TensorArray(tf.float32, size=steps, element_shape=[objective.width])
            for i in tf.range(steps):
                values, ok = train_step(xs[i], ys[i], ok)
                out = out.write(i, values)
            return out.stack(), ok

        self._step = tf.function(one_step, jit_compile=plan.xla, reduce_retracing=True)
        self._epoch = tf.function(train_epoch, jit_compile=plan.xla, reduce_retracing=True)
        # A CPU placement pins every call (and so its trace) to the CPU, in any thread.
        self._where = placement.scope if isinstance(placement, CPUPlacement) else None
        self._latch = guard.EpochLatch(optimizer) if scaled else None

    def _going(self, going: Any) -> Any:
        """The flag a call starts from: under loss scaling, no divergence yet this epoch."""
        held = self._held()
        if held is None:
            return tf.convert_to_tensor(going, tf.bool)
        return held if going is True else tf.logical_and(held, going)

    def step(self, x: Any, y: Any) -> Any:
        with self._where() if self._where else contextlib.nullcontext():
            values, going = self._step(x, y, self._going(True))
            self._hold(going)
            return values

    def epoch(self, xs: Any, ys: Any, going: Any = True, read_late: bool = False) -> Any:
        with self._where() if self._where else contextlib.nullcontext():
            values, going = self._epoch(xs, ys, self._going(going))
            self._hold(going)
            return values


class MirroredPlacement(Placement):
    """Variables mirrored by a `tf.distribute` strategy; each replica takes a batch slice.

    Plans run here without the non-finite guard (a conditional update in a replica context
    would stall the gradient all-reduce) and without XLA; `adapt` says so in the plan.
    """

    def __init__(self, engine: Engine, strategy: tf.distribute.Strategy):
        super().__init__(engine)
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.description = f"{type(strategy).__name__} over {self.replicas} replicas"

    def scope(self) -> Any:
        return self.strategy.scope()

    def adopt(self, model: keras.Model) -> keras.Model:
        return rebuilt_in(self, model)  # mirrored variables exist only in the scope

    def adapt(self, plan: RunPlan) -> RunPlan:
        return super().adapt(plan).replace(guard=False, xla=False)


class CPUPlacement(Placement):
    """The host CPU of a GPU machine: models built, batches kept and steps run on the CPU.

    Example:
        >>> from gometal_keras.core.plan import Precision
        >>> CPUPlacement(TensorFlowEngine()).adapt(RunPlan(Precision.FLOAT32, False)).label()
        'float32 (no XLA, fused) on the CPU'
    """

    description = HOST

    def scope(self) -> Any:
        return tf.device("/CPU:0")

    def put(self, array: np.ndarray, batch_axis: int = 0) -> Any:
        with tf.device("/CPU:0"):
            return tf.identity(tf.convert_to_tensor(array))


class TensorFlowEngine(Engine):
    """Keras on TensorFlow: CPU, CUDA GPUs, and Apple GPUs through tensorflow-metal."""

    name = "tensorflow"
    program_class = TensorFlowProgram

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
            tf32=cc >= (8, 0) and tf.config.experimental.tensor_float_32_execution_enabled(),
            compute_capability=cc if cc != (0, 0) else None,
        )

    def jit_options(self, device: DeviceInfo, precision: Precision) -> tuple[bool, ...]:
        if not device.xla:
            return (False,)
        if device.kind == "cpu" and precision is Precision.MIXED_FLOAT16:
            return (True,)  # TF's float16 CPU kernels without XLA are ~100x slower
        # XLA is not always faster: on a CPU its random numbers make Dropout slow.
        return (False, True) if device.kind == "cpu" else (True, False)

    def cpu_placement(self) -> Placement | None:
        return CPUPlacement(self) if self._gpus else None

    def to_device(self, array: np.ndarray) -> Any:
        device = "/GPU:0" if self._gpus else "/CPU:0"
        with tf.device(device):
            return tf.identity(tf.convert_to_tensor(array))

    def sync(self, model: keras.Model | None = None) -> None:
        if self._gpus:
            tf.test.experimental.sync_devices()

    def peak_memory_bytes(self, reset: bool = False) -> int | None:
        if not self._gpus or self._metal:
            return None
        if reset:
            tf.config.experimental.reset_memory_stats("GPU:0")
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])

    def free_memory_bytes(self) -> int | None:
        if not self._gpus or self._metal:
            return host_free_memory_bytes()  # Apple GPUs share the host's memory
        try:
            info = tf.config.experimental.get_memory_info("GPU:0")
        except (ValueError, RuntimeError):
            return None
        total = tf.config.experimental.get_device_details(self._gpus[0]).get("memory_limit")
        return None if total is None else int(total) - int(info["current"])

    def placement(self, distribution: Any = None, devices: int | None = None) -> Placement:
        if isinstance(distribution, tf.distribute.Strategy):
            return MirroredPlacement(self, distribution)
        if distribution == "data_parallel":
            kind = "GPU" if self._gpus else "CPU"
            found = [d.name for d in tf.config.list_logical_devices(kind)]
            if devices is not None and len(found) < devices:
                raise ValueError(f"{devices} devices asked for, but only {len(found)} found.")
            chosen = found if devices is None else found[:devices]
            return MirroredPlacement(self, tf.distribute.MirroredStrategy(chosen))
        if distribution == "multi_worker":
            # Hosts and this one's role come from the TF_CONFIG environment variable.
            return MirroredPlacement(self, tf.distribute.MultiWorkerMirroredStrategy())
        return super().placement(distribution, devices)
