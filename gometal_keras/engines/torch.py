"""PyTorch engine: eager autograd steps over device-resident tensors (no XLA)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import torch

from gometal_keras import guard, pixels
from gometal_keras.engines.base import (
    Engine,
    Objective,
    Placement,
    Program,
    host_free_memory_bytes,
)
from gometal_keras.precision import DeviceInfo, cpu_device


class TorchProgram(Program):
    """Eager training step; an epoch loops over device-resident batches without copies.

    The non-finite guard reads on the host whether each step's loss and gradients, then its
    new weights, are finite (PyTorch decides in Python whether to keep an update), so a
    guarded epoch waits for the device twice a step.
    """

    def _compile(
        self, model: keras.Model, objective: Objective, optimizer: Any, placement: Placement
    ) -> None:
        variables = model.trainable_variables
        self._model, self._objective, self._optimizer = model, objective, optimizer
        self._vars = variables

    def _train_step(self, x: Any, y: Any, ok: bool) -> tuple[Any, bool]:
        model, optimizer, variables = self._model, self._optimizer, self._vars
        guard_on = self.plan.guard
        # The forward pass updates BatchNorm statistics and random-generator state: keep a
        # copy, to put back if this step's loss is not finite.
        saved = [v.value.detach().clone() for v in model.non_trainable_variables]
        y_pred = model(pixels.to_model_input(x), training=True)
        loss = self._objective.loss(y, y_pred)
        if model.losses:
            loss = loss + sum(model.losses)
        for v in variables:
            v.value.grad = None
        optimizer.scale_loss(loss).backward()
        with torch.no_grad():
            values = torch.stack([loss.detach().float(), *self._objective.metrics(y, y_pred)])
            grads = [v.value.grad for v in variables]
            update_ok = bool(guard.all_finite([values[0], *grads]))  # one wait a step
            if not guard_on:
                # The loss scaler skips a non-finite update; the forward pass's BatchNorm
                # statistics and random-generator state are put back with it.
                if not update_ok:
                    _assign(model.non_trainable_variables, saved)
                optimizer.apply(grads, variables)
                return values, ok
            ok = ok and update_ok
            if ok:  # committed only if what the update writes is finite too
                kept = [*variables, *optimizer.variables]
                before = [v.value.detach().clone() for v in kept]
                optimizer.apply(grads, variables)
                ok = bool(guard.all_finite([v.value for v in kept]))
                if not ok:
                    _assign(kept, before)
            if not ok:
                _assign(model.non_trainable_variables, saved)
                values[0] = float("nan")
        return values, ok

    def step(self, x: Any, y: Any) -> Any:
        return self._train_step(x, y, True)[0]

    def epoch(self, xs: Any, ys: Any, going: Any = True) -> Any:
        ok, rows = bool(going), []
        for i in range(xs.shape[0]):
            values, ok = self._train_step(xs[i], ys[i], ok)
            rows.append(values)
        return torch.stack(rows)


def _assign(variables: list, values: list) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


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
