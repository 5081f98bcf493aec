"""What a runner is asked (`RunRequest`) and what it measured (`Timing`).

Every runner (`gometal_keras.bench.runners`, `.torch_runner`, `.reference`) takes one
`RunRequest`, trains ``warmup`` untimed and then ``repeats`` timed epochs with
`time_epochs`, and returns `timing_of` its timed epochs and last losses.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from gometal_keras.bench.configs import BenchConfig


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """One (config, precision) for a runner to train and time.

    Attributes:
        config: The model, batch and steps per epoch.
        precision: A bench precision (`gometal_keras.bench.precisions.PRECISIONS`).
        data: ``(x, y)``: ``config.samples`` samples and labels (`runners.bench_data`).
        warmup: Untimed epochs first.
        repeats: Timed epochs.
        seed: Weights, dropout and data seed.
        devices: Train data-parallel over this many local devices (None: one device).
    """

    config: BenchConfig
    precision: str
    data: tuple[np.ndarray, np.ndarray]
    warmup: int
    repeats: int
    seed: int
    devices: int | None = None


@dataclasses.dataclass(frozen=True)
class Timing:
    """What one runner measured for one (config, precision).

    Attributes:
        seconds_per_step: Median timed epoch over the steps per epoch.
        epoch_seconds: Every timed epoch's seconds.
        loss: Mean finite loss of the last epoch (NaN when none was finite).
        detail: How the runner ran (loop layout, compiler, loss scaling).
        precision: The Trainer precision that ran, where the runner chose it (``auto``).
    """

    seconds_per_step: float
    epoch_seconds: list[float]
    loss: float
    detail: str = ""
    precision: str = ""


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
    times: list[float], steps: int, losses: Any, detail: str = "", precision: str = ""
) -> Timing:
    """Return the `Timing` of timed epochs of `steps` steps and the last epoch's losses.

    Example:
        >>> timing_of([0.4, 0.2, 0.3], 10, [1.0, 2.0]).seconds_per_step
        0.03
    """
    return Timing(statistics.median(times) / steps, times, last_loss(losses), detail, precision)


def time_epochs(epoch: Callable[[], Any], warmup: int, repeats: int) -> tuple[list[float], Any]:
    """Run `warmup` untimed and `repeats` timed epochs on the host clock.

    Args:
        epoch: Runs one epoch and returns its losses on the host (so it waits for the
            device before the clock is read).
        warmup: Untimed epochs first (compilation, caches).
        repeats: Timed epochs.

    Returns:
        The timed epochs' seconds, and the last epoch's losses.

    Example:
        >>> times, losses = time_epochs(lambda: [1.0], warmup=1, repeats=2)
        >>> len(times), losses
        (2, [1.0])
    """
    losses = None
    for _ in range(warmup):
        losses = epoch()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        losses = epoch()
        times.append(time.perf_counter() - start)
    return times, losses
