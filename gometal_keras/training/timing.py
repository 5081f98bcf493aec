"""`EpochTimer`: honest wall-clock time per epoch and per step.

Backends queue device work and return at once, so a clock read right after a step can
make an epoch look fast. The timer waits for the device before every reading.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import keras

from gometal_keras.training.record import steady_mean


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's and each step's wall time, device work included.

    Works with `Trainer.fit` and with plain `keras.Model.fit`. Before reading the clock it
    calls `sync` (by default the current backend's "wait for the model's queued work"),
    so asynchronous dispatch cannot hide device time.

    Args:
        sync: Called before each clock reading; None uses the Keras backend's engine.
        time_steps: Also time each step (waits for the device after every step, which
            costs a little speed in `keras.Model.fit`).

    Example:
        >>> timer = EpochTimer()
        >>> import numpy as np
        >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        >>> model.compile("sgd", "mse")
        >>> _ = model.fit(np.ones((8, 2)), np.ones(8), epochs=3, verbose=0, callbacks=[timer])
        >>> len(timer.epoch_seconds), len(timer.step_seconds)
        (3, 3)
    """

    def __init__(self, sync: Callable[[], None] | None = None, time_steps: bool = True):
        super().__init__()
        self._sync = sync
        self.time_steps = time_steps
        self.epoch_seconds: list[float] = []
        self.step_seconds: list[float] = []
        self._epoch_start = self._step_start = 0.0

    def _wait(self) -> None:
        if self._sync is not None:
            self._sync()
            return
        from gometal_keras import engines

        engines.current().sync(self.model)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.epoch_seconds, self.step_seconds = [], []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._wait()
        self._epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        if self.time_steps:
            self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.time_steps:
            self._wait()
            self.step_seconds.append(time.perf_counter() - self._step_start)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._wait()
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)

    @property
    def steady_epoch_seconds(self) -> float:
        """Mean time of the epochs after the first (the first holds compilation)."""
        return steady_mean(self.epoch_seconds)
