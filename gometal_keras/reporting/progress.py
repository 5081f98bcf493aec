"""Live training progress: a rich bar per phase with epoch, loss and ms per epoch.

`PhaseProgress` is a Keras callback. `Trainer.fit` (and `keras.Model.fit`) drive it through
``on_train_begin`` / ``on_epoch_begin`` / ``on_epoch_end`` / ``on_train_end``; it only reads
the epoch logs and its own clock, so it never changes what training does. On a terminal it
draws a bar; when the console is not a terminal (a CI log, a pipe) it draws nothing, so logs
stay readable and the report's epoch table is the record.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from typing import Any

import keras
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from gometal_keras.core.integers import is_int


class PhaseProgress(keras.callbacks.Callback):
    """A progress bar for one training phase, updated once per epoch.

    The bar shows the phase label, epochs done out of planned, the last epoch's loss (and
    validation loss when given) and how long the last epoch took in milliseconds, timed
    from ``on_epoch_begin`` to ``on_epoch_end`` (device work included, because the loss
    in the logs is already a host float).

    Args:
        label: Phase name shown before the bar, e.g. ``"FP32"``.
        console: Where to draw; a new rich ``Console()`` when None.
        enabled: Draw the bar: True, False, or None (default) to draw only when the console
            is a terminal.
        epochs: Planned epochs; None takes ``params["epochs"]`` from the callback list.
        clock: Seconds on a monotonic clock; ``time.perf_counter`` unless given (a test
            can pass a fake one).

    Attributes:
        epochs_done: Epochs finished so far.
        last_loss: Loss of the last finished epoch (NaN before the first).
        last_ms: Wall time of the last finished epoch in milliseconds (NaN before the first).

    Example:
        >>> import io
        >>> import numpy as np
        >>> from gometal_keras import ModelBuilder, Trainer, TrainerConfig
        >>> quiet = PhaseProgress("FP32", Console(file=io.StringIO()))
        >>> quiet.enabled  # not a terminal: no bar
        False
        >>> config = TrainerConfig(batch_size=8, precision="float32", jit_compile=False, seed=0)
        >>> trainer = Trainer(ModelBuilder([8, 4]).add_dense(3), config)
        >>> x, y = np.ones((16, 4), np.float32), np.arange(16) % 3
        >>> run = trainer.fit(x, y, epochs=2, callbacks=[quiet])
        >>> quiet.epochs_done, math.isclose(quiet.last_loss, run.final_loss, rel_tol=1e-6)
        (2, True)
    """

    def __init__(
        self,
        label: str,
        console: Console | None = None,
        enabled: bool | None = None,
        epochs: int | None = None,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        if not isinstance(label, str):
            raise TypeError(f"label is a {type(label).__name__}; expected a str.")
        self.label = label
        self.console = console if console is not None else Console()
        self.enabled = self.console.is_terminal if enabled is None else bool(enabled)
        self.planned = epochs
        self.clock = clock
        self.epochs_done = 0
        self.last_loss = math.nan
        self.last_ms = math.nan
        self._started = 0.0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def _total(self) -> int | None:
        if self.planned is not None:
            return self.planned
        epochs = (self.params or {}).get("epochs")
        return int(epochs) if is_int(epochs) and epochs > 0 else None

    def _fields(self, logs: dict[str, Any] | None = None) -> dict[str, str]:
        logs = logs or {}
        loss = f"loss {self.last_loss:.6f}" if math.isfinite(self.last_loss) else "loss -"
        val = logs.get("val_loss")
        if isinstance(val, numbers.Real) and math.isfinite(val):
            loss += f"  val {val:.6f}"
        ms = f"{self.last_ms:8.2f} ms/epoch" if math.isfinite(self.last_ms) else ""
        return {"loss": loss, "ms": ms}

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.epochs_done, self.last_loss, self.last_ms = 0, math.nan, math.nan
        if not self.enabled:
            return
        self._bar = Progress(
            TextColumn("[bold]{task.description:<6}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs  {task.fields[loss]}  {task.fields[ms]}"),
            console=self.console,
            auto_refresh=False,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self._total(), **self._fields())
        self._bar.refresh()

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = self.clock()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.last_ms = (self.clock() - self._started) * 1000.0
        self.epochs_done = epoch + 1
        loss = (logs or {}).get("loss")
        self.last_loss = float(loss) if isinstance(loss, numbers.Real) else math.nan
        if self._bar is not None and self._task is not None:
            self._bar.update(
                self._task, completed=self.epochs_done, refresh=True, **self._fields(logs)
            )

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._bar is None:
            return
        if self._task is not None:
            # An early stop ends the bar where training ended, not at the planned total.
            self._bar.update(self._task, total=self.epochs_done, refresh=True)
        self._bar.stop()
        self._bar, self._task = None, None
