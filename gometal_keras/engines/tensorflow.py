"""TensorFlow engine: `tf.function` programs, XLA where the device has it (not on Metal)."""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import re
import sys
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gometal_keras.core import metal, pixels
from gometal_keras.core.device import DeviceInfo, cpu_device
from gometal_keras.core.plan import HOST, Precision, RunPlan
from gometal_keras.engines.base import (
    Engine,
    Objective,
    Placement,
    Program,
    host_free_memory_bytes,
)
from gometal_keras.engines.placement import lost_worker as lost_worker_sentence
from gometal_keras.engines.placement import rebuilt_in


def _plugin_version() -> str | None:
    """The installed tensorflow-metal's version on macOS, else None (never imported)."""
    if sys.platform != "darwin":
        return None
    try:
        return importlib.metadata.version("tensorflow-metal")
    except importlib.metadata.PackageNotFoundError:
        return None


def is_apple_gpu(details: dict[str, Any], platform: str | None = None) -> bool:
    """Whether a TensorFlow GPU is an Apple GPU, judged by the device, not a package name.

    A CUDA GPU reports its compute capability; a Metal device (tensorflow-metal names it
    ``METAL``, and any other Metal plugin) reports none and runs on macOS.

    Args:
        details: ``tf.config.experimental.get_device_details`` of the GPU.
        platform: ``sys.platform`` (injected by tests).

    Returns:
        True for an Apple (Metal) GPU.

    Example:
        >>> is_apple_gpu({"device_name": "METAL"}, "darwin")
        True
        >>> is_apple_gpu({"device_name": "NVIDIA H200", "compute_capability": (9, 0)}, "linux")
        False
    """
    name = str(details.get("device_name", "")).lower()
    on_mac = (platform or sys.platform) == "darwin"
    named = "metal" in name or "apple" in name
    return named or (on_mac and not details.get("compute_capability"))


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
        if strategy is not None:  # its steps commit as they come (see `MirroredPlacement`)
            self._commit = None
        rule = self._commit

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

        def train_step(x, y, going):
            if rule is None:
                values = strategy.run(replica_step, args=(x, y))
                return strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None), going
            # The step commit (`StepCommit`): keep a copy of what the step may write, and put
            # it back where the verdict does not keep it.
            forward = model.non_trainable_variables
            update = [*variables, *optimizer.variables] if rule.checked else []
            saved = [[tf.identity(v.value) for v in group] for group in (update, forward)]
            grads, values = forward_backward(x, y)
            optimizer.apply(grads, variables)
            verdict = rule.verdict(going, values, grads, update, forward)
            rule.keep(verdict, (update, saved[0]), (forward, saved[1]), _put_back_unless)
            return rule.report(values, verdict.going), verdict.going

        def one_step(x, y, going):
            return train_step(x, y, going)

        def train_epoch(xs, ys, going):
            steps = tf.shape(xs)[0]
            out = tf.TensorArray(tf.float32, size=steps, element_shape=[objective.width])
            for i in tf.range(steps):
                values, going = train_step(xs[i], ys[i], going)
                out = out.write(i, values)
            return out.stack(), going

        self._step = traced(one_step, plan.xla)
        self._epoch = traced(train_epoch, plan.xla)
        # A CPU placement pins every call (and so its trace) to the CPU, in any thread.
        self._where = placement.scope if isinstance(placement, CPUPlacement) else None
        self._true = tf.constant(True)
        self._workers = (placement.worker, placement.processes)

    def step(self, x: Any, y: Any) -> Any:
        with self._call():
            values, going = self._step(x, y, self._start())
            self._hold(going)
            return values

    def epoch(self, xs: Any, ys: Any, going: Any = True, read_late: bool = False) -> Any:
        with self._call():
            values, going = self._epoch(xs, ys, self._start(going))
            self._hold(going)
            return values

    @contextlib.contextmanager
    def _call(self) -> Any:
        """Where a call runs; a worker lost in its collectives is named in one sentence."""
        with self._where() if self._where else contextlib.nullcontext():
            try:
                yield
            except tf.errors.OpError as err:
                lost = lost_worker(err, *self._workers)
                if lost is None:
                    raise
                raise RuntimeError(lost) from None


#: Errors of a collective whose peer is gone: killed (the connection reset), hung (TF's
#: coordination service misses its heartbeats, about 10 s), or past a collective timeout.
_LOST = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
         tf.errors.CancelledError)


def lost_worker(err: Exception, worker: int, processes: int) -> str | None:
    """The sentence for a multi-worker collective that failed because a peer is gone.

    Args:
        err: What the call raised.
        worker: This process' worker index.
        processes: Workers in the cluster (1: not a multi-worker run, so None).

    Returns:
        One sentence naming the lost worker (its task index, read from TensorFlow's message,
        or the only other one of two), or None when `err` is not a lost peer.

    Example:
        >>> err = tf.errors.UnavailableError(None, None, "Collective ops is aborted by: "
        ...     "recvmsg:Connection reset by peer ... remote target /job:worker/replica:0/task:1")
        >>> lost_worker(err, 0, 2)[:56]
        'Worker 1 of 2 stopped answering in a training collective'
    """
    message = str(getattr(err, "message", err))
    if processes < 2 or not (isinstance(err, _LOST) or "Collective ops is aborted" in message):
        return None
    named = {int(t) for t in re.findall(r"/job:\w+/(?:replica:\d+/)?task:(\d+)", message)}
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    cause = next((ln.split("aborted by:")[-1] for ln in lines if "aborted by:" in ln),
                 lines[0] if lines else "")
    return lost_worker_sentence(f"{type(err).__name__}: {cause.strip()}", worker, processes,
                                named)


def traced(fn: Any, xla: bool) -> Any:
    """`fn` as a `tf.function` of its own program, traced once per input shape.

    ``reduce_retracing`` makes a second shape (another step count: a shorter fit, a
    stream's last stage) trace one relaxed program that every later shape reuses, so
    nothing traces again after the first epoch of a shape.

    TensorFlow counts traces for its "triggered tf.function retracing" warning per source
    function (its code object), across every `tf.function` made from it: every program
    a trainer builds (each trial, each trainer) traced once added up to "5 out of the last
    11 calls" although none traced twice. Wrapped in a `functools.partial`, each program
    is counted alone, so the warning tells of real retracing only.

    Args:
        fn: The Python function to trace (a closure over one model's variables).
        xla: Whether to compile it with XLA (``jit_compile``).

    Returns:
        The `tf.function`; ``experimental_get_tracing_count()`` counts its traces.

    Example:
        >>> f = traced(lambda x: x * 2.0, xla=False)
        >>> [float(f(tf.constant(v))) for v in (1.0, 2.0)], f.experimental_get_tracing_count()
        ([2.0, 4.0], 1)
    """
    own = functools.partial(fn)
    own.__name__ = getattr(fn, "__name__", "program")  # the name TF gives the graph
    return tf.function(own, jit_compile=xla, reduce_retracing=True)


def _put_back_unless(keep: Any, variables: list, saved: list) -> None:
    """Under a tf.cond: put `saved` back into `variables` unless `keep` holds."""

    def put_back() -> None:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)

    tf.cond(keep, lambda: None, put_back)


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
        resolver = getattr(strategy, "cluster_resolver", None)
        if resolver is not None:  # several workers (TF_CONFIG): every task of the cluster
            spec = resolver.cluster_spec()
            self.processes = max(sum(spec.num_tasks(job) for job in spec.jobs), 1)
            self.worker = int(resolver.task_id or 0)

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
        details = tf.config.experimental.get_device_details(self._gpus[0]) if self._gpus else {}
        self._metal = bool(self._gpus) and is_apple_gpu(details)
        plugin = _plugin_version()
        why = None
        if plugin and not self._gpus:  # loaded, yet no GPU: training would be on the CPU
            why = (f"tensorflow-metal {plugin} is installed but TensorFlow registered no GPU, "
                   "so training runs on the CPU")
        elif not self._gpus and metal.is_apple_silicon():
            note = metal.status()  # e.g. no wheels for this Python
            if note.startswith("not installed ("):
                why = f"tensorflow-metal is {note}, so training runs on the CPU"
        if why:
            warnings.warn(f"{why}; expected a Metal GPU (see docs/apple-silicon.md, or use the "
                          "torch backend on MPS).", RuntimeWarning, stacklevel=2)

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
