"""PyTorch engine: eager autograd steps over device-resident tensors (no XLA)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import torch

from gometal_keras.core import pixels
from gometal_keras.core.device import DeviceInfo, cpu_device
from gometal_keras.engines import guard
from gometal_keras.engines.base import (
    Engine,
    Objective,
    Placement,
    Program,
    host_free_memory_bytes,
)


class TorchProgram(Program):
    """Eager training step; an epoch loops over device-resident batches without copies.

    The non-finite guard reads on the host whether each step's loss and gradients, then its
    new weights, are finite (PyTorch decides in Python whether to keep an update), so a
    guarded step waits for the device twice; a loss-scaled one, once. A guarded epoch call
    first runs optimistically, waiting once (`_optimistic_epoch`).
    """

    def _compile(
        self, model: keras.Model, objective: Objective, optimizer: Any, placement: Placement
    ) -> None:
        variables = model.trainable_variables
        self._model, self._objective, self._optimizer = model, objective, optimizer
        self._vars = variables
        # What a forward pass writes that can become non-finite (BatchNorm statistics),
        # checked each step of an optimistic epoch; fixed once the model is built.
        self._forward_state = [v for v in model.non_trainable_variables if guard.is_float(v)]
        # Loss scaling without the guard: a divergent update stops the epoch (see below).
        self._scaled = self.plan.loss_scaling is not None and not self.plan.guard
        self._latch = guard.EpochLatch(optimizer) if self._scaled else None

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

    def _train_step(self, x: Any, y: Any, ok: bool) -> tuple[Any, bool]:
        model, optimizer, variables = self._model, self._optimizer, self._vars
        guard_on = self.plan.guard
        # The forward pass updates BatchNorm statistics and random-generator state: keep a
        # copy, to put back if this step's loss is not finite.
        saved = [v.value.detach().clone() for v in model.non_trainable_variables]
        values, grads = self._gradients(x, y)
        with torch.no_grad():
            if self._scaled:
                return self._scaled_update(values, grads, saved, ok)
            update_ok = bool(guard.all_finite([values[0], *grads]))  # one wait a step
            if not guard_on:
                # Without the guard and a loss scaler, the update is applied; the forward
                # pass's BatchNorm statistics and random-generator state are put back.
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

    def _scaled_update(self, values: Any, grads: list, saved: list, ok: bool) -> tuple:
        """A loss-scaled step's update (`guard.scaled_verdict`), deciding on one wait.

        The loss scaler skips a step whose gradients are not finite (and backs off the
        scale); an update that is not finite with finite gradients is a divergence: not
        committed, and no later step of the epoch is.
        """
        model, optimizer, variables = self._model, self._optimizer, self._vars
        kept = [*variables, *optimizer.variables]
        if ok:
            loss_ok, grads_ok = torch.isfinite(values[0]), guard.all_finite(grads)
            before = [v.value.detach().clone() for v in kept]
            optimizer.apply(grads, variables)  # undone below where it is not kept
            verdict = guard.scaled_verdict(True, loss_ok, grads_ok, [v.value for v in kept])
            keep_update, keep_forward, ok = torch.stack(verdict).tolist()  # one wait a step
            if not keep_update:
                _assign(kept, before)
        else:
            keep_forward = False
        if not keep_forward:
            _assign(model.non_trainable_variables, saved)
        if not ok:
            values[0] = guard.DIVERGED
        return values, ok

    def _start(self, going: Any) -> bool:
        """The flag a call starts from: under loss scaling, no divergence yet this epoch."""
        held = self._held()
        return bool(going) and (held is None or held)

    def step(self, x: Any, y: Any) -> Any:
        values, ok = self._train_step(x, y, self._start(True))
        self._hold(ok)
        return values

    def epoch(self, xs: Any, ys: Any, going: Any = True, read_late: bool = False) -> Any:
        ok, rows = self._start(going), []
        if ok and self.plan.guard:
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

        As JAX's optimistic call (`engines.jax_program`): each step's loss and forward-pass
        state are checked on the device, the weights and optimizer values once, at the
        end (a non-finite value an update wrote stays non-finite); the call waits for the
        device once instead of twice a step, and copies the state once instead of each
        step. When a check fails (or the call is interrupted) every variable is put back,
        and None tells `epoch` to run the batches again, each step guarded.
        """
        model, optimizer = self._model, self._optimizer
        state = [*model.variables, *optimizer.variables]
        first = [v.value.detach().clone() for v in state]
        try:
            ok, rows = torch.ones((), dtype=torch.bool, device=xs.device), []
            for i in range(xs.shape[0]):
                values, grads = self._gradients(xs[i], ys[i])
                with torch.no_grad():
                    optimizer.apply(grads, self._vars)
                    ok = ok & torch.isfinite(values[0])
                    if self._forward_state:
                        ok = ok & guard.all_finite(self._forward_state)
                rows.append(values)
            with torch.no_grad():
                ok = ok & guard.all_finite([*self._vars, *optimizer.variables])
            if bool(ok):  # the one wait
                return torch.stack(rows)
        except BaseException:  # e.g. Ctrl-C: the model keeps the state it had
            _assign(state, first)
            raise
        _assign(state, first)
        return None


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
