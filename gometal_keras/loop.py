"""The training loop: full batches arranged once, kept on the device, run epoch by epoch.

`TrainingLoop` turns a host data set into batches stacked on a leading axis and decides
how they reach the device:

- ``fused``: the whole data set is copied to the device once and each epoch is one call
  of the engine's compiled epoch program (no per-step host work or copies);
- ``fused`` in chunks, when the data set does not fit: a few batches per device call;
- ``step``: one compiled step per batch (the reference path, and `train_batch`).

All three run the same compiled step, in the same batch order, so they give the same
loss curve. Backend differences stay in `gometal_keras.engines`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from gometal_keras.engines import Engine, Placement, Program

#: Share of the device's free memory the data set may take to stay resident.
DEVICE_SHARE = 0.25


@dataclasses.dataclass
class EpochData:
    """A data set arranged for the loop: full batches, on the device where it fits."""

    xs: Any  # (steps, batch, ...) device tensor, or host array when chunked / stepped
    ys: Any
    steps: int
    chunk: int  # batches per device call (== steps when resident)
    resident: bool


class TrainingLoop:
    """Runs epochs of one `Program` over arranged data.

    Args:
        engine: The backend engine.
        program: The model's compiled step and epoch.
        batch_size: Samples per step; the remainder of a data set is dropped (as Go-Metal).
        mode: ``"auto"`` (fused when it fits, else chunked), ``"fused"`` or ``"step"``.
        jit: Whether the program was compiled with XLA (for the name only).
        placement: Where batches go (split over replicas under data parallelism).
        guard: Stop an epoch's steps at the first non-finite loss (the program's guard).
    """

    def __init__(
        self,
        engine: Engine,
        program: Program,
        batch_size: int,
        mode: str,
        jit: bool,
        placement: Placement | None = None,
        guard: bool = True,
    ):
        self.engine, self.program, self.guard = engine, program, guard
        self.placement = placement or Placement(engine)
        self.batch_size, self.mode, self.jit = batch_size, mode, jit
        self.last_layout = ""

    def arrange(self, x: np.ndarray, y: np.ndarray) -> EpochData:
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
        chunk = steps if self.mode == "step" else int(max(1, min(steps, budget // per_batch)))
        if chunk == steps and (self.mode != "step" or xs.nbytes + ys.nbytes <= budget):
            data = EpochData(self._put(xs, 1), self._put(ys, 1), steps, steps, True)
        else:
            data = EpochData(xs, ys, steps, chunk, False)
        self.last_layout = self._describe(data)
        return data

    def run_epoch(self, data: EpochData) -> np.ndarray:
        """Run one epoch and wait for it.

        Returns:
            The per-step values on the host, shape ``(steps, width)``: column 0 the loss,
            then the program's metrics.
        """
        if self.mode == "step":
            rows = []
            for i in range(data.steps):
                rows.append(np.asarray(self._step(data, i), np.float64))
                if self.guard and not np.isfinite(rows[-1][0]):
                    # As in the fused program: no update after a non-finite loss.
                    rows += [np.full_like(rows[-1], np.nan)] * (data.steps - i - 1)
                    break
            return np.stack(rows)
        if data.resident:
            return np.asarray(self.program.epoch(data.xs, data.ys), dtype=np.float64)
        parts = []
        for start in range(0, data.steps, data.chunk):
            stop = min(start + data.chunk, data.steps)
            xs, ys = self._put(data.xs[start:stop], 1), self._put(data.ys[start:stop], 1)
            parts.append(np.asarray(self.program.epoch(xs, ys), dtype=np.float64))
            if self.guard and not np.isfinite(parts[-1][:, 0]).all():
                # The guard restarts with each call: stop here, as one fused call would.
                parts.append(np.full((data.steps - stop, parts[-1].shape[1]), np.nan))
                break
        return np.concatenate(parts)

    def _step(self, data: EpochData, i: int) -> Any:
        if data.resident:
            return self.program.step(data.xs[i], data.ys[i])
        x, y = self._put(data.xs[i], 0), self._put(data.ys[i], 0)
        return self.program.step(x, y)

    def _put(self, array: np.ndarray, batch_axis: int) -> Any:
        return self.placement.put(array, batch_axis=batch_axis)

    def _describe(self, data: EpochData) -> str:
        xla = "XLA" if self.jit else "no XLA"
        if self.placement.replicas > 1:
            xla += f", {self.placement.description}"
        if self.mode == "step":
            where = "device-resident" if data.resident else "copied per step"
            return f"one call per step ({xla}, {where})"
        if data.resident:
            return f"whole epoch per call ({xla}, device-resident data)"
        calls = -(-data.steps // data.chunk)
        return (
            f"{calls} calls per epoch ({xla}; data larger than the device share, copied in chunks)"
        )
