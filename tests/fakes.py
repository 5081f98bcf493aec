"""An Apple GPU simulated on this CPU: a fake Metal `DeviceInfo` and a fault-injecting engine.

Nobody here has a Mac, so tensorflow-metal's known failures are injected around the real
TensorFlow engine: `FaultyEngine` delegates everything to it, says its device is
`METAL`, and wraps each `Program` it builds so that, as configured, a plan's calls raise
(a missing kernel, a command-buffer error), hang, return wrong losses, or return tensors
that reach numpy only through ``keras.ops.convert_to_numpy`` (as MPS tensors do). Plans
on the CPU placement (a real `CPUPlacement`) are never faulty: they are the reference.

Use it as ``with mock.patch.object(engines, "current", return_value=FaultyEngine(...))``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Collection, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from gometal_keras import engines
from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.plan import RunPlan
from gometal_keras.engines.base import Engine, Placement, Program
from gometal_keras.engines.tensorflow import CPUPlacement

#: An Apple GPU as tensorflow-metal presents it: no XLA, fast float16, no fast bfloat16.
METAL = DeviceInfo("tensorflow", "metal", "Apple M2 GPU (fake)", False, True, False)
#: A CUDA GPU without XLA and without fast mixed types: float32 is its only candidate...
CUDA = DeviceInfo("tensorflow", "cuda", "NVIDIA GPU (fake)", False, False, True)

#: What the injected failures say, as tensorflow-metal's would.
MISSING_KERNEL = "No registered 'TensorListReserve' OpKernel for 'GPU' devices (fake)"
COMMAND_BUFFER = "Command buffer execution failed: kIOGPUCommandBufferCallbackError (fake)"
NO_XLA = "Could not find an XLA device for the Apple GPU (fake)"
#: What tensorflow-metal prints on stderr, without raising, when a command buffer fails
#: (tensorflow#57058, apple/tensorflow_macos#202), and before it aborts the process.
COMMAND_BUFFER_LINE = ("Error: command buffer exited with error status.\n\tThe Metal Performance "
                       "Shaders operations encoded on it may not have completed.")
NDARRAY_ASSERTION = ("failed assertion `[MPSNDArray initWithDevice:descriptor:] Error: total "
                     "bytes of NDArray > 2**32' (fake)")


class DeviceTensor:
    """A device tensor that refuses ``np.asarray`` except inside ``convert_to_numpy``."""

    def __init__(self, tensor: Any):
        self.tensor = tensor

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name == "convert_to_numpy":
                return np.asarray(self.tensor.numpy(), dtype=dtype)
            frame = frame.f_back
        raise TypeError("can't convert mps:0 device type tensor to numpy (simulated)")


class FaultyProgram(Program):
    """Wraps a real `Program`; its calls fail as its `FaultyEngine` says."""

    def __init__(self, inner: Program, engine: FaultyEngine):  # no super(): nothing to build
        self.inner, self.engine, self.plan = inner, engine, inner.plan

    def _compile(self, model: Any, objective: Any, optimizer: Any, placement: Any) -> None:
        raise NotImplementedError("a FaultyProgram wraps a compiled program")

    def step(self, x: Any, y: Any) -> Any:
        return self.engine.call(self.plan, "step", lambda: self.inner.step(x, y))

    def epoch(self, xs: Any, ys: Any, going: Any = True, read_late: bool = False) -> Any:
        run = lambda: self.inner.epoch(xs, ys, going, read_late)  # noqa: E731
        return self.engine.call(self.plan, "epoch", run)

    def confirm(self, values: Any) -> Any:
        return self.inner.confirm(values)

    def settle(self) -> None:
        self.inner.settle()


class FaultyEngine(Engine):
    """The real TensorFlow engine on a fake device, with faults in its GPU programs.

    Args:
        device: What `describe_device` says (default `METAL`).
        fails: Labels of plans (``RunPlan.label()``) whose every call raises.
        epoch_raises: Every fused epoch call on the GPU raises (a missing TensorList kernel).
        hangs: Labels of plans whose calls block until `release` (a hung command buffer).
        hang_after: Calls of a plan in `hangs` that run before it hangs (0: from the first).
        stalls: Once a plan hangs, every later call on the GPU hangs too (a real hung command
            buffer stalls the device's queue), until `release`.
        wrong: GPU programs report their losses times 1.5 (silently wrong numbers).
        garbage: GPU programs print `COMMAND_BUFFER_LINE` on stderr and return finite
            garbage (their values plus noise) without raising.
        crashes: Labels of plans whose first call ends the process: ``"abort"`` (after
            printing `NDARRAY_ASSERTION`, as the MPSNDArray assertion does) or ``"segv"``.
        drift_after: GPU calls that run right before every later one reports its losses
            times 1.5 (numbers that drift away from the CPU's during training); None: never.
        raises_after: GPU calls that run right before every later one raises
            `MISSING_KERNEL` (a kernel only `fit` needs, never the trials); None: never.
        device_tensors: GPU programs return `DeviceTensor` values.
        cpu: Whether `cpu_placement` offers the (real) host CPU.
    """

    name = "tensorflow"

    def __init__(
        self,
        device: DeviceInfo = METAL,
        *,
        fails: Collection[str] = (),
        epoch_raises: bool = False,
        hangs: Collection[str] = (),
        hang_after: int = 0,
        stalls: bool = False,
        wrong: bool = False,
        garbage: bool = False,
        crashes: Mapping[str, str] | None = None,
        drift_after: int | None = None,
        raises_after: int | None = None,
        device_tensors: bool = False,
        cpu: bool = True,
    ):
        self.real = engines.current()
        self.program_class = self.real.program_class
        self.device, self.fails, self.epoch_raises = device, set(fails), epoch_raises
        self.hangs, self.wrong, self.device_tensors = set(hangs), wrong, device_tensors
        self.hang_after, self.stalls, self.stalled = hang_after, stalls, False
        self.garbage, self.crashes, self.drift_after = garbage, dict(crashes or {}), drift_after
        self.raises_after = raises_after
        self.gpu_calls = 0
        self.cpu = CPUPlacement(self.real) if cpu else None
        self.released = threading.Event()
        self.calls: list[str] = []  # labels of the plans called, in order

    def __getstate__(self) -> dict:  # a child process gets the same faults (not the event)
        return {**self.__dict__, "released": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.released = threading.Event()

    def release(self) -> None:
        """Let hung calls go on (they raise): the abandoned trial threads end."""
        self.released.set()

    def call(self, plan: RunPlan, kind: str, run: Any) -> Any:
        """Run one call of `plan`'s program (`kind` "step" or "epoch"), faults injected."""
        label = plan.label()
        self.calls.append(label)
        hangs = label in self.hangs and self.calls.count(label) > self.hang_after
        if hangs or (self.stalled and not plan.on_host):
            self.stalled = self.stalls
            self.released.wait()
            raise RuntimeError(f"{label} was released after hanging (fake)")
        if plan.xla:
            raise tf.errors.InvalidArgumentError(None, None, NO_XLA)
        if label in self.fails:
            raise tf.errors.InternalError(None, None, COMMAND_BUFFER)
        if label in self.crashes:
            if self.crashes[label] == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            os.write(2, NDARRAY_ASSERTION.encode() + b"\n")
            os.abort()
        late = self.raises_after is not None and self.gpu_calls >= self.raises_after
        if ((self.epoch_raises and kind == "epoch") or late) and not plan.on_host:
            raise tf.errors.NotFoundError(None, None, MISSING_KERNEL)
        values = run()
        if not plan.on_host:
            self.gpu_calls += 1
        drifted = self.drift_after is not None and self.gpu_calls > self.drift_after
        if (self.wrong or drifted) and not plan.on_host:
            values = values * 1.5
        if self.garbage and not plan.on_host:
            os.write(2, COMMAND_BUFFER_LINE.encode() + b"\n")
            noise = np.random.default_rng(self.gpu_calls).uniform(0.5, 2.0, values.shape)
            values = values + tf.constant(noise, values.dtype)
        return DeviceTensor(values) if self.device_tensors and not plan.on_host else values

    def program(self, model, objective, optimizer, plan, placement=None) -> Program:
        return FaultyProgram(self.real.program(model, objective, optimizer, plan, placement), self)

    def describe_device(self) -> DeviceInfo:
        return self.device

    def cpu_placement(self) -> Placement | None:
        return self.cpu

    def to_device(self, array: np.ndarray) -> Any:
        return self.real.to_device(array)

    def sync(self, model: keras.Model | None = None) -> None:
        self.real.sync(model)

    def free_memory_bytes(self) -> int | None:
        return self.real.free_memory_bytes()

    def placement(self, distribution: Any = None, devices: int | None = None) -> Placement:
        return Placement(self) if distribution is None else self.real.placement(distribution)

    def jit_options(self, device: DeviceInfo, precision: Any) -> tuple[bool, ...]:
        return self.real.jit_options(device, precision)
