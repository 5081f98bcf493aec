"""`FitSession`: the bookkeeping of one `Trainer.fit` call around the training loop.

It drives the Keras callbacks (the user's, the learning-rate schedule and an `EpochTimer`
that waits for the device before each clock reading), keeps each epoch's logs, decides
when to stop (early-stop loss or a callback's ``model.stop_training``) and turns what it
saw into a `TrainingRun`. It never trains and never prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras

from gometal_keras.core.plan import RunPlan
from gometal_keras.planning.decision import Decision
from gometal_keras.training.memory import PeakMemory
from gometal_keras.training.record import TrainingRun
from gometal_keras.training.timing import EpochTimer


class CallbackModel:
    """The model as Keras callbacks see it during `Trainer.fit`.

    Every attribute is the trained model's (``save``, ``get_weights``, ``layers``...),
    except ``optimizer``, which is the trainer's (a model the trainer trains is never
    compiled with it, and a user's compiled model keeps its own), and ``stop_training``,
    which a callback sets to end training. So callbacks that read or change the learning
    rate (`ReduceLROnPlateau`) or save (`ModelCheckpoint`) work with the trainer's state,
    and the user's model keeps its compile state.

    Args:
        model: The trained Keras model.
        optimizer: The trainer's optimizer.

    Example:
        >>> m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> view = CallbackModel(m, keras.optimizers.SGD(0.5))
        >>> float(view.optimizer.learning_rate), view.count_params(), getattr(m, "optimizer", None)
        (0.5, 2, None)
    """

    def __init__(self, model: keras.Model, optimizer: Any):
        self.model, self.optimizer, self.stop_training = model, optimizer, False

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this view does not hold itself.
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)


class FitSession:
    """Callbacks, timing and history of one fit call.

    Args:
        model: The model the callbacks see (its ``stop_training`` ends training).
        callbacks: The user's callbacks (the schedule, when there is one, goes first).
        sync: Waits for the device's queued work; called before every clock reading.
        epochs: Last epoch number of this call (for Keras' progress bar).
        steps: Steps per epoch.
        verbose: Keras' progress bar (0 = silent).
        early_stop_loss: Stop once an epoch's mean loss is below this (None = never).
        optimizer: The optimizer callbacks see as ``model.optimizer`` (`CallbackModel`);
            None for the model's own.

    Example:
        >>> m = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
        >>> s = FitSession(m, [], sync=lambda: None, epochs=3, steps=1, verbose=0,
        ...                early_stop_loss=0.5)
        >>> s.begin(); s.epoch_begin(0); s.epoch_end(0, {"loss": 1.0})
        False
        >>> s.epoch_begin(1); s.epoch_end(1, {"loss": 0.4})
        True
    """

    def __init__(
        self,
        model: keras.Model,
        callbacks: Sequence[keras.callbacks.Callback],
        sync: Callable[[], None],
        epochs: int,
        steps: int,
        verbose: int,
        early_stop_loss: float | None,
        optimizer: Any = None,
    ):
        view = model if optimizer is None else CallbackModel(model, optimizer)
        self.model, self.early_stop_loss, self.epochs = view, early_stop_loss, epochs
        self.timer = EpochTimer(sync=sync, time_steps=False)
        self.callbacks = keras.callbacks.CallbackList(
            [self.timer, *callbacks],
            add_progbar=verbose != 0,
            model=view,
            verbose=verbose,
            epochs=epochs,
            steps=steps,
        )
        self.history: dict[str, list[float]] = {}
        self.stopped_early = False

    def begin(self) -> None:
        """Start the run: callbacks' ``on_train_begin``."""
        self.model.stop_training = False
        self.callbacks.on_train_begin()

    def epoch_begin(self, epoch: int) -> None:
        """Callbacks' ``on_epoch_begin`` (the timer waits for the device and starts)."""
        self.callbacks.on_epoch_begin(epoch)

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> bool:
        """Record the epoch's logs and tell the callbacks; return whether to stop now."""
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        self.callbacks.on_epoch_end(epoch, logs)
        limit = self.early_stop_loss
        stop = (limit is not None and logs["loss"] < limit) or bool(self.model.stop_training)
        self.stopped_early = stop and epoch + 1 < self.epochs
        return stop

    def end(self) -> None:
        """Callbacks' ``on_train_end``."""
        self.callbacks.on_train_end()

    def run(
        self,
        plan: RunPlan,
        device: str,
        decision: Decision | None,
        layout: str,
        peak: PeakMemory | None = None,
    ) -> TrainingRun:
        """What this session saw, as a `TrainingRun` of `plan` (with its `peak` memory)."""
        history = dict(self.history)
        return TrainingRun(
            plan,
            losses=history.pop("loss", []),
            epoch_seconds=list(self.timer.epoch_seconds),
            device=device,
            stopped_early=self.stopped_early,
            decision=decision,
            loop=layout,
            val_losses=history.pop("val_loss", []),
            metrics=history,
            peak_memory_bytes=None if peak is None else peak.bytes,
            memory_kind="" if peak is None else peak.kind,
        )
