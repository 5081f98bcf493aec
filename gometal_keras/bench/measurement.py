"""What a runner is asked (`RunRequest`), how it runs (`Session`), and what it measured.

Every runner (`gometal_keras.bench.runners`, `.torch_runner`, `.reference`) turns one
`RunRequest` into a `Session`: its model built and its data in place, nothing timed yet.
`gometal_keras.bench.measure` then calls every session of a configuration in turn, round
after round (interleaved, so that a drift of the machine hits every runner alike): each
`Session.call` trains ``epochs`` epochs as its user would call it (the Trainer: one
``Trainer.fit(x, y, epochs=N)``) and returns a `Call`; `Session.predict` times one
prediction over the data. `timing_of` reduces a session's calls to its `Timing`.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from gometal_keras.bench.configs import BenchConfig


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One (config, precision) for a runner to train and time.

    Attributes:
        config: The model, batch and steps per epoch.
        precision: A bench precision (`gometal_keras.bench.precisions.PRECISIONS`).
        data: ``(x, y)``: ``config.samples`` samples and labels (`runners.bench_data`).
        epochs: Epochs per call (the first of each call is not counted: compilation in
            the first call, the call's own start in later ones).
        seed: Weights, dropout and data seed.
        devices: Train data-parallel over this many local devices (None: one device).
    """

    config: BenchConfig
    precision: str
    data: tuple[np.ndarray, np.ndarray]
    epochs: int
    seed: int
    devices: int | None = None


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of a session: ``epochs`` epochs trained as the runner's user calls them.

    Attributes:
        epoch_seconds: Each epoch's seconds, device work included (the Trainer: the run
            record's ``epoch_seconds``; Keras: `EpochTimer`; the hand-written loops: the
            host clock around an epoch whose losses were read back).
        wall_seconds: The whole call on the host clock (arranging the data, callbacks).
        loss: Mean finite loss of the call's last epoch (NaN when none was finite).
    """

    epoch_seconds: list[float]
    wall_seconds: float
    loss: float

    @property
    def steady(self) -> list[float]:
        """The epochs after the first."""
        return self.epoch_seconds[1:]

    @property
    def overhead_seconds(self) -> float:
        """What the call cost beyond its epochs: ``wall - sum(epoch_seconds)``."""
        return self.wall_seconds - sum(self.epoch_seconds)


class Session(Protocol):
    """A runner's model and data, ready; `measure` calls it round after round."""

    #: How it runs (loop layout, compiler, loss scaling).
    detail: str
    #: The Trainer precision that ran where the runner chose it (``auto``), else empty.
    precision: str

    def call(self) -> Call:
        """Train the request's ``epochs`` epochs; return what they took."""

    def predict(self) -> float | None:
        """Predict every sample of the data once; return the seconds (None: not timed)."""


@dataclasses.dataclass(frozen=True)
class Timing:
    """What one runner measured for one (config, precision), over all its timed calls.

    Attributes:
        seconds_per_step: Median steady epoch (every call's epochs after its first) over
            the steps per epoch.
        epoch_seconds: Every steady epoch's seconds, call after call.
        loss: Mean finite loss of the last epoch (NaN when none was finite).
        detail: How the runner ran (loop layout, compiler, loss scaling).
        precision: The Trainer precision that ran, where the runner chose it (``auto``).
        round_seconds: Per round (one call), its median steady epoch: what the
            interleaved ratios are taken of.
        call_overhead_seconds: Median over calls of what a call cost beyond its epochs.
        predict_seconds: Median seconds of one prediction over the data (None: not timed).
    """

    seconds_per_step: float
    epoch_seconds: list[float]
    loss: float
    detail: str = ""
    precision: str = ""
    round_seconds: list[float] = dataclasses.field(default_factory=list)
    call_overhead_seconds: float | None = None
    predict_seconds: float | None = None


def last_loss(losses: Any) -> float:
    """Return the mean finite loss of an epoch's per-step losses (or the Trainer's rows).

    Args:
        losses: A loss per step, or ``(steps, width)`` rows whose column 0 is the loss.

    Returns:
        The mean over the finite losses (float16 steps that overflowed were skipped), or
        NaN when there is none.

    Example:
        >>> last_loss([[2.0, 0.5], [float("inf"), 0.1], [1.0, 0.2]])
        1.5
    """
    a = np.asarray(losses, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, 0]
    finite = a[np.isfinite(a)]
    return float(finite.mean()) if finite.size else math.nan


def timing_of(
    calls: list[Call],
    steps: int,
    detail: str = "",
    precision: str = "",
    predict: list[float] | None = None,
) -> Timing:
    """Return the `Timing` of a session's timed calls of `steps`-step epochs.

    Example:
        >>> calls = [Call([9.0, 0.5, 0.25], 10.0, 2.0), Call([0.5, 0.25, 0.25], 1.25, 1.5)]
        >>> t = timing_of(calls, 10)
        >>> t.seconds_per_step, t.round_seconds, t.loss, t.call_overhead_seconds
        (0.025, [0.375, 0.25], 1.5, 0.25)
    """
    steady = [s for c in calls for s in c.steady]
    return Timing(
        seconds_per_step=statistics.median(steady) / steps,
        epoch_seconds=steady,
        loss=calls[-1].loss,
        detail=detail,
        precision=precision,
        round_seconds=[statistics.median(c.steady) for c in calls],
        call_overhead_seconds=statistics.median(c.overhead_seconds for c in calls),
        predict_seconds=statistics.median(predict) if predict else None,
    )


def timed_epochs(epoch: Callable[[], Any], epochs: int) -> Call:
    """Run `epochs` epochs of a hand-written loop, each on the host clock.

    Args:
        epoch: Runs one epoch and returns its losses on the host (so it waits for the
            device before the clock is read).
        epochs: Epochs in the call.

    Returns:
        The `Call`, its loss the last epoch's.

    Example:
        >>> call = timed_epochs(lambda: [1.0, 3.0], 2)
        >>> len(call.epoch_seconds), call.loss
        (2, 2.0)
    """
    start, times, losses = time.perf_counter(), [], None
    for _ in range(epochs):
        t0 = time.perf_counter()
        losses = epoch()
        times.append(time.perf_counter() - t0)
    return Call(times, time.perf_counter() - start, last_loss(losses))


def timed(fn: Callable[[], Any]) -> float:
    """Seconds of one call of `fn` on the host clock (`fn` waits for the device itself)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
