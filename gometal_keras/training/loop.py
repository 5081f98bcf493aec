"""The training loop: full batches arranged once, kept on the device, run epoch by epoch.

`TrainingLoop` turns a host data set into batches stacked on a leading axis and, as the
program's `RunPlan` says, decides how they reach the device:

- ``fused``: the whole data set is copied to the device once and each epoch is one call
  of the engine's compiled epoch program (no per-step host work or copies);
- ``fused`` in chunks, when the data set does not fit: a few batches per device call;
- ``step``: one compiled step per batch (the reference path, and `train_batch`);
- streamed, for inputs that are not arrays (`stream`, `gometal_keras.data.streaming`): K
  staged batches per call of the compiled epoch while the host prepares the next K; when
  more epochs follow (`reading_ahead`), the next one's first stage is prepared while
  this epoch's last one trains, so the device does not wait for it.

All three run the same compiled step, in the same batch order, so they give the same
loss curve. Backend differences stay in `gometal_keras.engines`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from gometal_keras.core.plan import Loop, RunPlan
from gometal_keras.data.inputs import BatchSource
from gometal_keras.data.prefetch import SLOTS, Prefetcher
from gometal_keras.data.streaming import Check, StreamedData, host_stages, named
from gometal_keras.engines import Engine, Placement, Program, guard
from gometal_keras.engines.guard import still_going

#: Share of the device's free memory the data set may take to stay resident.
DEVICE_SHARE = 0.25


@dataclasses.dataclass(frozen=True)
class ArrangedData:
    """A data set arranged for one program: full batches, on the device where they fit.

    Attributes:
        xs: ``(steps, batch, ...)``: a device tensor when resident, else a host array.
        ys: Labels stacked the same way.
        steps: Batches per epoch.
        chunk: Batches per device call (== steps when resident).
        resident: Whether the whole data set lives on the device.
        plan: The plan of the program it was arranged for.
    """

    xs: Any
    ys: Any
    steps: int
    chunk: int
    resident: bool
    plan: RunPlan

    def describe(self) -> str:
        """How an epoch over this data runs, e.g. ``"whole epoch per call (XLA, ...)"``."""
        xla = "XLA" if self.plan.xla else "no XLA"
        if self.plan.replicas > 1:
            xla += f", {self.plan.placement}"
        if self.plan.loop is Loop.STEP:
            where = "device-resident" if self.resident else "copied per step"
            return f"one call per step ({xla}, {where})"
        if self.resident:
            return f"whole epoch per call ({xla}, device-resident data)"
        calls = -(-self.steps // self.chunk)
        return (
            f"{calls} calls per epoch ({xla}; data larger than the device share, copied in chunks)"
        )


class TrainingLoop:
    """Runs epochs of one `Program` over arranged data, as the program's plan says.

    Args:
        engine: The backend engine.
        program: The model's compiled step and epoch; its ``plan`` gives the loop layout
            and whether the non-finite guard stops an epoch's remaining steps.
        batch_size: Samples per step; the remainder of a data set is dropped (as Go-Metal).
        placement: Where batches go (split over replicas under data parallelism).
    """

    def __init__(
        self,
        engine: Engine,
        program: Program,
        batch_size: int,
        placement: Placement | None = None,
    ):
        self.engine, self.program, self.batch_size = engine, program, batch_size
        self.placement = placement or Placement(engine)
        self._ahead: tuple[StreamedData, int, Prefetcher] | None = None
        self._last_epoch: int | None = None

    @property
    def plan(self) -> RunPlan:
        """The plan the program runs."""
        return self.program.plan

    def arrange(self, x: np.ndarray, y: np.ndarray) -> ArrangedData:
        """Stack full batches and place them; raise ValueError when there is no full batch."""
        steps = len(x) // self.batch_size
        if steps == 0:
            raise ValueError(
                f"{len(x)} samples make no full batch of {self.batch_size}; an epoch uses "
                "full batches only, so pass at least batch_size samples."
            )
        n = steps * self.batch_size
        xs = x[:n].reshape(steps, self.batch_size, *x.shape[1:])
        ys = y[:n].reshape(steps, self.batch_size, *y.shape[1:])
        free = self.engine.free_memory_bytes()
        budget = DEVICE_SHARE * free if free else float("inf")
        per_batch = (xs.nbytes + ys.nbytes) / steps
        stepped = self.plan.loop is Loop.STEP
        chunk = steps if stepped else int(max(1, min(steps, budget // per_batch)))
        if chunk == steps and (not stepped or xs.nbytes + ys.nbytes <= budget):
            return ArrangedData(self._put(xs, 1), self._put(ys, 1), steps, steps, True, self.plan)
        return ArrangedData(xs, ys, steps, chunk, False, self.plan)

    def stream(
        self,
        source: BatchSource,
        check: Check,
        check_labels: Callable[[np.ndarray], Any],
        steps_per_epoch: int | None = None,
    ) -> StreamedData:
        """Arrange a stream input: nothing is read until an epoch runs.

        Args:
            source: The input.
            check: Checks a batch ``(x, y)`` and returns it as the model takes it.
            check_labels: Checks labels; run here on all of them when the input knows
                them before reading (an image folder does), so a bad one stops any step.
            steps_per_epoch: End each epoch after this many steps (None = when exhausted).
        """
        labels = source.labels()
        if labels is not None:
            named(check_labels, (labels,), f"The {source.kind}'s labels")
        limit = steps_per_epoch
        if limit is not None and (type(limit) is not int or limit < 1):
            raise ValueError(
                f"steps_per_epoch is {limit!r}; expected None or an int of at least 1."
            )
        known = None if source.samples is None else source.samples // self.batch_size
        if known == 0:
            raise ValueError(
                f"The {source.kind} has {source.samples} samples, no full batch of "
                f"{self.batch_size}; an epoch uses full batches only."
            )
        steps = min(s for s in (known, limit) if s is not None) if known or limit else None
        return StreamedData(
            source,
            check,
            check_labels,
            self.batch_size,
            steps,
            limit,
            self.plan,
            labels_checked=labels is not None,
        )

    @contextlib.contextmanager
    def reading_ahead(self, last_epoch: int) -> Iterator[None]:
        """Epochs up to `last_epoch` follow each other: read each next one's start early.

        Inside, a stream that can start any epoch (an image loader) prepares epoch
        ``e + 1``'s first stage while epoch ``e``'s last one trains (still at most
        `prefetch.SLOTS` stages on the device); on leaving, a stage read for an epoch that
        did not come (training stopped early) is dropped.
        """
        self._last_epoch = last_epoch
        try:
            yield
        finally:
            self._last_epoch = None
            if self._ahead is not None:
                self._ahead[2].close()
                self._ahead = None

    @contextlib.contextmanager
    def epoch_transaction(self, model: keras.Model, optimizer: Any) -> Iterator[None]:
        """Run one of `fit`'s epochs as a transaction: on Ctrl-C, every variable goes back.

        What `guard.rolled_back_on_interrupt` promises, at the price of a copy only where
        one is needed. TensorFlow and PyTorch write variables in place, so the state the
        epoch started from must be copied first (that function, a device copy per
        variable). A JAX variable's value is an immutable array that the programs replace
        and never donate (`engines.jax.program`), so holding the values is the snapshot:
        no copy, and no per-variable dispatch (about 0.1 ms each on a small CPU host,
        twenty-two of them an epoch for the seed MLP: 2 ms of a 25 ms epoch).

        Args:
            model: Its variables (weights, BatchNorm statistics, random-generator state).
            optimizer: Its variables (slots, iteration count, loss scale).
        """
        if self.engine.name != "jax":
            with guard.rolled_back_on_interrupt(model, optimizer):
                yield
            return
        variables = [*model.variables, *optimizer.variables]
        saved = [variable.value for variable in variables]
        try:
            with guard.epoch_open(optimizer):
                yield
        except KeyboardInterrupt:
            for variable, value in zip(variables, saved, strict=True):
                variable.assign(value)
            raise

    def run_epoch(self, data: ArrangedData | StreamedData, epoch: int = 0) -> np.ndarray:
        """Run one epoch (number `epoch`, which orders a streamed input's batches) and wait.

        Returns:
            The per-step values on the host, shape ``(steps, width)``: column 0 the loss,
            then the program's metrics.
        """
        guard = self.plan.guard
        if isinstance(data, StreamedData):
            last = self._last_epoch
            ahead = last is not None and epoch < last and data.source.restartable
            return self._run_streamed(data, epoch, epoch + 1 if ahead else None)
        if self.plan.loop is Loop.STEP:
            rows = []
            for i in range(data.steps):
                rows.append(_host(self._step(data, i)))
                if guard and not np.isfinite(rows[-1][0]):
                    # As in the fused program: no update after a non-finite loss.
                    rows += [np.full_like(rows[-1], np.nan)] * (data.steps - i - 1)
                    break
            return np.stack(rows)
        if data.resident:
            return _host(self.program.epoch(data.xs, data.ys))
        parts = []
        for start in range(0, data.steps, data.chunk):
            stop = min(start + data.chunk, data.steps)
            xs, ys = self._put(data.xs[start:stop], 1), self._put(data.ys[start:stop], 1)
            parts.append(_host(self.program.epoch(xs, ys)))
            if guard and not np.isfinite(parts[-1][:, 0]).all():
                # The guard restarts with each call: stop here, as one fused call would.
                parts.append(np.full((data.steps - stop, parts[-1].shape[1]), np.nan))
                break
        return np.concatenate(parts)

    def _run_streamed(self, data: StreamedData, epoch: int, next_epoch: int | None) -> np.ndarray:
        prefetch = self._prefetcher(data, epoch)
        parts: list[np.ndarray] = []
        # A full stage's values are read one call late, after the next call is dispatched,
        # so the device runs the calls back to back; the guard's flag goes from call to
        # call on the device (`guard.still_going`), as it does between one call's steps.
        pending: Any = None  # the last call's values, not read yet
        going: Any = True
        try:
            for staged in prefetch:
                values = None
                if staged.full and self.plan.loop is not Loop.STEP:
                    values = self.program.epoch(staged.xs, staged.ys, going, read_late=True)
                    going = still_going(values) if self.plan.guard else going
                stopped = pending is not None and self._read(parts, pending, prefetch)
                pending = values
                if values is None and not stopped:
                    rows = self._steps(staged.xs, staged.ys, staged.n)  # on the host already
                    stopped = self._read(parts, rows, prefetch)
                if stopped:
                    break  # as one fused call would: no update after a non-finite loss
                if next_epoch is not None and prefetch.drained:
                    # The last stage trains: start the next epoch's first one meanwhile.
                    self._ahead = (data, next_epoch, self._prefetcher(data, next_epoch, 1))
            if pending is not None:
                self._read(parts, pending, prefetch)
        finally:
            self.program.settle()  # calls not read (the epoch stopped, or raised)
            prefetch.close()
        if self._ahead is not None and self._ahead[2] is not prefetch:
            self._ahead[2].release(SLOTS - 1)  # this epoch's stages are off the device
        if not parts:
            raise ValueError(
                f"The {data.source.kind} gave no full batch of {self.batch_size} in epoch "
                f"{epoch + 1}; expected at least batch_size samples per epoch (a generator is "
                "read once: pass steps_per_epoch to spread it over epochs)."
            )
        return np.concatenate(parts)

    def _prefetcher(self, data: StreamedData, epoch: int, slots: int | None = None) -> Prefetcher:
        """The stages of `epoch`: the ones prepared ahead when they are that epoch's."""
        if slots is None and self._ahead is not None:
            ready, self._ahead = self._ahead, None
            if ready[0] is data and ready[1] == epoch:
                return ready[2]
            ready[2].close()
        free = self.engine.free_memory_bytes()
        budget = int(DEVICE_SHARE * free) if free else None
        stages = host_stages(data, epoch, budget)
        one = self.placement.replicas == 1
        return Prefetcher(stages, self._put, in_thread=one, slots=slots or SLOTS)

    def _read(self, parts: list[np.ndarray], values: Any, prefetch: Prefetcher) -> bool:
        """Add a stage's values to `parts` and free its slot; True when the guard stopped."""
        parts.append(_host(self.program.confirm(values)))
        prefetch.release()
        return self.plan.guard and not np.isfinite(parts[-1][:, 0]).all()

    def _steps(self, xs: Any, ys: Any, n: int) -> np.ndarray:
        rows = []
        for i in range(n):
            rows.append(_host(self.program.step(xs[i], ys[i])))
            if self.plan.guard and not np.isfinite(rows[-1][0]):
                break
        return np.stack(rows)

    def _step(self, data: ArrangedData, i: int) -> Any:
        if data.resident:
            return self.program.step(data.xs[i], data.ys[i])
        x, y = self._put(data.xs[i], 0), self._put(data.ys[i], 0)
        return self.program.step(x, y)

    def _put(self, array: np.ndarray, batch_axis: int) -> Any:
        return self.placement.put(array, batch_axis=batch_axis)


def _host(values: Any) -> np.ndarray:
    """A device tensor of per-step values as a float64 host array."""
    if not isinstance(values, np.ndarray):  # read already (`Program.epoch` may)
        values = keras.ops.convert_to_numpy(values)
    return np.asarray(values, dtype=np.float64)
