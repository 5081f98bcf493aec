"""The run record: what one training run measured, and nothing else.

A `TrainingRun` is produced by `Trainer.fit` and consumed by the comparison and the
reports. It is plain data so that it can be compared, serialised and printed without
reaching back into training.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """What one `Trainer.fit` call measured.

    Attributes:
        precision: Keras dtype-policy name the run used (e.g. ``"mixed_float16"``).
        losses: Mean training loss of each epoch, in order.
        epoch_seconds: Wall time of each epoch, device work included.
        device: Short description of the device that ran it (e.g. ``"CPU (x86_64)"``).
        stopped_early: Whether `early_stop_loss` ended the run before `epochs`.
        decision: How the precision and loop were chosen (``None`` when the user fixed them);
            for ``precision="auto"`` it holds the measured step time of each candidate.
        loop: Name of the training loop that ran (e.g. ``"fused-epoch (xla)"``).
        val_losses: Validation loss of each epoch when validation data was given.
        metrics: Extra per-epoch metrics by name.

    Example:
        >>> run = TrainingRun("float32", [2.3, 1.1], [0.5, 0.1], device="CPU")
        >>> run.steady_seconds
        0.1
    """

    precision: str
    losses: list[float]
    epoch_seconds: list[float]
    device: str = "unknown"
    stopped_early: bool = False
    decision: dict[str, Any] | None = None
    loop: str = ""
    val_losses: list[float] = dataclasses.field(default_factory=list)
    metrics: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    @property
    def epochs_run(self) -> int:
        """Number of epochs that ran."""
        return len(self.losses)

    @property
    def final_loss(self) -> float:
        """Mean loss of the last epoch (NaN when no epoch ran)."""
        return self.losses[-1] if self.losses else float("nan")

    @property
    def total_seconds(self) -> float:
        """Wall time of all epochs, first (compiling) epoch included."""
        return float(sum(self.epoch_seconds))

    @property
    def steady_seconds(self) -> float:
        """Wall time of all epochs but the first, which holds one-off tracing and compilation.

        With a single epoch there is no steady state and this equals `total_seconds`.
        """
        if len(self.epoch_seconds) < 2:
            return self.total_seconds
        return float(sum(self.epoch_seconds[1:]))

    @property
    def steady_epoch_seconds(self) -> float:
        """Mean wall time of a steady-state epoch (all but the first)."""
        steady = self.epoch_seconds[1:] or self.epoch_seconds
        return float(sum(steady) / len(steady)) if steady else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Return the run as JSON-ready data, derived figures included."""
        data = dataclasses.asdict(self)
        data.update(
            epochs_run=self.epochs_run,
            final_loss=self.final_loss,
            total_seconds=self.total_seconds,
            steady_seconds=self.steady_seconds,
        )
        return data
