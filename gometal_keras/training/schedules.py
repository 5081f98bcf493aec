"""Go-Metal's learning-rate schedulers, stepped once per epoch as in PyTorch.

`LearningRateSchedule` is a Keras callback bound to an optimizer: at the start of each
epoch it sets the learning rate (StepLR, ExponentialLR, CosineAnnealingLR), and at the end
of each epoch it watches a value of the epoch's logs (ReduceLROnPlateau, as PyTorch's with
its `mode`, `threshold` and `threshold_mode`: the training or validation loss, or a metric).
Setting the rate between epochs assigns the optimizer's learning-rate variable, which the
compiled epoch reads, so the whole-epoch loop needs no retracing. Its state is small and
saved with checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

import keras

from gometal_keras.core.config import TrainerConfig


def scheduled_rate(config: TrainerConfig, base: float, epoch: int) -> float:
    """The closed-form rate of a step / exponential / cosine schedule at `epoch` (0-based).

    Args:
        config: Gives the schedule and its settings.
        base: The initial learning rate.
        epoch: Epochs completed before this one.

    Returns:
        The learning rate for this epoch (``base`` when the schedule is None or plateau).

    Example:
        >>> cfg = TrainerConfig(lr_schedule="step", lr_step_size=2, lr_gamma=0.5)
        >>> [scheduled_rate(cfg, 1.0, e) for e in range(5)]
        [1.0, 1.0, 0.5, 0.5, 0.25]
    """
    kind = config.lr_schedule
    if kind == "step":
        return base * config.lr_gamma ** (epoch // config.lr_step_size)
    if kind == "exponential":
        return base * config.lr_gamma**epoch
    if kind == "cosine":
        eta = config.lr_eta_min
        return eta + (base - eta) * (1 + math.cos(math.pi * epoch / config.lr_t_max)) / 2
    return base


class LearningRateSchedule(keras.callbacks.Callback):
    """Sets an optimizer's learning rate per epoch from a `TrainerConfig` schedule.

    Args:
        config: Its `lr_schedule` and settings; `learning_rate` is the base rate.
        optimizer: The optimizer whose rate is set (a loss-scale wrapper forwards it).

    Attributes:
        rates: The rate used in each epoch so far.

    `Trainer` adds it to fit's callbacks when ``config.lr_schedule`` is set; Keras calls
    ``on_epoch_begin`` / ``on_epoch_end`` as below.

    Example:
        >>> optimizer = keras.optimizers.SGD(learning_rate=0.1)
        >>> cfg = TrainerConfig(learning_rate=0.1, lr_schedule="exponential", lr_gamma=0.5)
        >>> schedule = LearningRateSchedule(cfg, optimizer)
        >>> for epoch in range(3):
        ...     schedule.on_epoch_begin(epoch)
        >>> schedule.rates, round(float(optimizer.learning_rate), 6)
        ([0.1, 0.05, 0.025], 0.025)
    """

    def __init__(self, config: TrainerConfig, optimizer: Any):
        super().__init__()
        self.config, self.optimizer = config, optimizer
        self.rates: list[float] = []
        self.best = math.inf if config.lr_mode == "min" else -math.inf
        self.wait = 0
        self.current = float(config.learning_rate)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.config.lr_schedule != "plateau":
            self.current = scheduled_rate(self.config, self.config.learning_rate, epoch)
        self.optimizer.learning_rate = self.current
        self.rates.append(self.current)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.config.lr_schedule != "plateau":
            return
        name = self.config.lr_monitor
        if not logs or name not in logs:
            shown = ", ".join(sorted(logs or {})) or "none"
            raise ValueError(
                f"TrainerConfig.lr_monitor is {name!r}, which this epoch's logs do not hold "
                f"(they hold {shown}); expected one of them (val_loss needs validation_data)."
            )
        value = float(logs[name])
        if self.improves(value):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait > self.config.lr_patience:
            self.current = max(self.current * self.config.lr_factor, self.config.lr_min)
            self.wait = 0

    def improves(self, value: float) -> bool:
        """Whether `value` is better than the best so far by the threshold (PyTorch's rule).

        Example:
            >>> cfg = TrainerConfig(lr_schedule="plateau", lr_mode="max", lr_threshold=0.1,
            ...                     lr_threshold_mode="abs")
            >>> s = LearningRateSchedule(cfg, keras.optimizers.SGD()); s.best = 0.5
            >>> s.improves(0.55), s.improves(0.65)
            (False, True)
        """
        threshold, best = self.config.lr_threshold, self.best
        relative = self.config.lr_threshold_mode == "rel"
        if self.config.lr_mode == "min":
            return value < (best * (1 - threshold) if relative else best - threshold)
        return value > (best * (1 + threshold) if relative else best + threshold)

    def get_state(self) -> dict[str, float]:
        """The state a checkpoint keeps (plateau's best loss, wait count, current rate)."""
        return {"best": self.best, "wait": self.wait, "current": self.current}

    def set_state(self, state: dict[str, float]) -> None:
        """Restore what `get_state` returned."""
        self.best, self.wait = float(state["best"]), int(state["wait"])
        self.current = float(state["current"])
