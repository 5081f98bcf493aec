"""PyTorch engine: eager autograd steps over device-resident tensors (no XLA).

On an Apple GPU (MPS) the engine also offers the host CPU (`TorchCPUPlacement`), so that MPS
gets tensorflow-metal's protections, keyed by the device kind ``"metal"``: every plan there
is checked against the CPU's float32 losses before it trains (`planning.verify`), the CPU is
a timed candidate, and `fit` replays a few steps on the CPU now and then
(`training.agreement`). MPS runs float16 (mixed_float16 is a candidate); bfloat16 is never
one: MPS has it only from macOS 14 (torch raises "MPS BFloat16 is only supported on MacOS 14
or newer" before; pytorch#119641), and M1/M2 GPUs emulate it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import keras
import numpy as np
import torch

import gometal_keras.engines.guard as guard
from gometal_keras.core import pixels
from gometal_keras.core.device import DeviceInfo, cpu_device
from gometal_keras.core.plan import HOST
from gometal_keras.engines.base import (
    Engine,
    Objective,
    Placement,
    Program,
    host_free_memory_bytes,
)
from gometal_keras.engines.commit import decided


class TorchProgram(Program):
    """Eager training step; an epoch loops over device-resident batches without copies.

    PyTorch decides in Python whether to keep a step's writes, so a step reads the step
    commit's verdict (`StepCommit`) on the host: an unguarded, guarded or loss-scaled step
    waits for the device once. A guarded epoch call first runs optimistically, waiting
    once (`_optimistic_epoch`).
    """

    def _compile(
        self, model: keras.Model, objective: Objective, optimizer: Any, placement: Placement
    ) -> None:
        variables = model.trainable_variables
        self._model, self._objective, self._optimizer = model, objective, optimizer
        self._vars = variables
        # What a step may write, listed once (fixed once the model and optimizer are built):
        # the update's values, and the forward pass's (BatchNorm statistics, random-generator
        # state), of which the float ones can become non-finite.
        self._update = [*variables, *optimizer.variables]
        self._forward = model.non_trainable_variables
        self._forward_state = [v for v in self._forward if guard.is_float(v)]
        # A CPU placement keeps every tensor a call makes on the CPU, in any thread.
        self._where = placement.scope if isinstance(placement, TorchCPUPlacement) else None

    def _gradients(self, x: Any, y: Any) -> tuple[Any, list]:
        """One batch's forward and backward pass: the step's values and the gradients."""
        model, variables = self._model, self._vars
        y_pred = model(pixels.to_model_input(x), training=True)
        loss = self._objective.loss(y, y_pred)
        if model.losses:
            loss = loss + sum(model.losses)
        for v in variables:
            v.value.grad = None
        self._optimizer.scale_loss(loss).backward()
        with torch.no_grad():
            values = torch.stack([loss.detach().float(), *self._objective.metrics(y, y_pred)])
        return values, [v.value.grad for v in variables]

    def _train_step(self, x: Any, y: Any, going: bool) -> tuple[Any, bool]:
        rule = self._commit
        update = self._update if rule.checked else []
        saved = [[v.value.detach().clone() for v in group] for group in (update, self._forward)]
        values, grads = self._gradients(x, y)
        with torch.no_grad():
            self._optimizer.apply(grads, self._vars)  # put back below where not kept
            verdict = rule.verdict(going, values, grads, update, self._forward_state)
            verdict = decided(verdict)  # one wait a step
            rule.keep(verdict, (update, saved[0]), (self._forward, saved[1]), _put_back_unless)
        return rule.report(values, verdict.going), verdict.going

    def step(self, x: Any, y: Any) -> Any:
        with self._where() if self._where else contextlib.nullcontext():
            values, ok = self._train_step(x, y, bool(self._start()))
        self._hold(ok)
        return values

    def epoch(self, xs: Any, ys: Any, going: Any = True, read_late: bool = False) -> Any:
        with self._where() if self._where else contextlib.nullcontext():
            return self._epoch(xs, ys, going)

    def _epoch(self, xs: Any, ys: Any, going: Any) -> Any:
        ok, rows = bool(self._start(going)), []
        if ok and self._commit.guarded:
            values = self._optimistic_epoch(xs, ys)
            if values is not None:
                return values
        for i in range(xs.shape[0]):
            values, ok = self._train_step(xs[i], ys[i], ok)
            rows.append(values)
        self._hold(ok)
        return torch.stack(rows)

    def _optimistic_epoch(self, xs: Any, ys: Any) -> Any:
        """The batches with every update applied and one wait, or None with nothing applied.

        The step commit's optimistic call (`StepCommit.optimistic`), as JAX's: each step's
        loss and forward-pass state are checked on the device, the weights and optimizer
        values once, at the end; the call waits for the device once instead of once a
        step, and copies the state once instead of each step. When a check fails (or the
        call is interrupted) every variable is put back, and None tells `epoch` to run the
        batches again, each step checked.
        """
        rule, optimizer = self._commit, self._optimizer
        state = [*self._model.variables, *optimizer.variables]
        first = [v.value.detach().clone() for v in state]
        try:
            ok, rows = True, []
            for i in range(xs.shape[0]):
                values, grads = self._gradients(xs[i], ys[i])
                with torch.no_grad():
                    optimizer.apply(grads, self._vars)
                    ok = rule.optimistic(ok, values, grads, self._forward_state).going
                rows.append(values)
            with torch.no_grad():
                committed = rule.call_verdict(True, ok, self._update)
            if bool(committed):  # the one wait
                return torch.stack(rows)
        except BaseException:  # e.g. Ctrl-C: the model keeps the state it had
            _assign(state, first)
            raise
        _assign(state, first)
        return None


def _put_back_unless(keep: bool, variables: list, saved: list) -> None:
    """Put `saved` back into `variables` unless `keep` (decided on the host) holds."""
    if not keep:
        _assign(variables, saved)


def _assign(variables: list, values: list) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


class TorchCPUPlacement(Placement):
    """The host CPU beside an Apple GPU (MPS): models built, batches kept and steps run there.

    Example:
        >>> from gometal_keras.core.plan import Precision, RunPlan
        >>> TorchCPUPlacement(None).adapt(RunPlan(Precision.FLOAT32, False)).label()
        'float32 (no XLA, fused) on the CPU'
    """

    description = HOST

    def scope(self) -> Any:
        return keras.device("cpu")

    def put(self, array: np.ndarray, batch_axis: int = 0) -> Any:
        with keras.device("cpu"):
            return keras.ops.convert_to_tensor(array)


class TorchEngine(Engine):
    """Keras on PyTorch: CPU, CUDA GPUs and Apple GPUs (MPS)."""

    name = "torch"
    program_class = TorchProgram

    def describe_device(self) -> DeviceInfo:
        if torch.cuda.is_available():
            cc = torch.cuda.get_device_capability(0)
            return DeviceInfo(
                self.name,
                "cuda",
                torch.cuda.get_device_name(0),
                xla=False,
                fp16_fast=cc >= (7, 0),
                bf16_fast=cc >= (8, 0),
                tf32=cc >= (8, 0) and torch.backends.cuda.matmul.allow_tf32,
                compute_capability=cc,
            )
        if torch.backends.mps.is_available():
            return DeviceInfo(self.name, "metal", "Apple GPU (MPS)", False, True, False)
        return cpu_device(self.name, xla=False)

    def cpu_placement(self) -> Placement | None:
        """The host CPU beside an Apple GPU (MPS), to check it against and to time; else None."""
        if torch.cuda.is_available() or not torch.backends.mps.is_available():
            return None
        return TorchCPUPlacement(self)

    def to_device(self, array: np.ndarray) -> Any:
        return keras.ops.convert_to_tensor(array)

    def sync(self, model: keras.Model | None = None) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        elif torch.backends.mps.is_available():
            torch.mps.synchronize()

    def peak_memory_bytes(self, reset: bool = False) -> int | None:
        if not torch.cuda.is_available():
            return None
        if reset:
            torch.cuda.reset_peak_memory_stats()
        return int(torch.cuda.max_memory_allocated())

    def free_memory_bytes(self) -> int | None:
        if torch.cuda.is_available():
            return int(torch.cuda.mem_get_info()[0])
        return host_free_memory_bytes()
