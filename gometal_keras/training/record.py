"""The run record: what one training run measured, and nothing else.

A `TrainingRun` is produced by `Trainer.fit` and consumed by the comparison and the
reports. It is plain data so that it can be compared, serialised and printed without
reaching back into training.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from gometal_keras.core.plan import Precision, RunPlan
from gometal_keras.planning.decision import Decision


def steady_mean(seconds: Sequence[float]) -> float:
    """Mean of the epoch times after the first, which holds one-off tracing and compiling.

    With one time there is no steady state and that time is returned; with none, NaN.

    Args:
        seconds: Epoch (or repeat) times in order.

    Returns:
        The mean of ``seconds[1:]`` (or of ``seconds`` when it has one entry).

    Example:
        >>> steady_mean([5.0, 1.0, 2.0]), steady_mean([3.0])
        (1.5, 3.0)
    """
    steady = list(seconds[1:]) or list(seconds)
    return float(sum(steady) / len(steady)) if steady else float("nan")


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """What one `Trainer.fit` call measured.

    Attributes:
        plan: What ran: the `RunPlan` of the program when a `Trainer` made the record, or
            only a `Precision` (a policy name is accepted) for a record made by hand.
        losses: Mean training loss of each epoch, in order.
        epoch_seconds: Wall time of each epoch, device work included.
        device: Short description of the device that ran it (e.g. ``"CPU (x86_64)"``).
        stopped_early: Whether `early_stop_loss` ended the run before `epochs`.
        decision: How the plan was chosen (a `gometal_keras.planning.decision.Decision`; ``None``
            when the user fixed it); for ``precision="auto"`` it holds every timed candidate.
        loop: How the epochs ran, made from the plan and the data's layout (e.g.
            ``"whole epoch per call (XLA, device-resident data)"``).
        val_losses: Validation loss of each epoch when validation data was given.
        metrics: Extra per-epoch metrics by name.
        peak_memory_bytes: Peak memory of the run (`gometal_keras.training.memory`), or None.
        memory_kind: What `peak_memory_bytes` is: ``"device peak"`` or, on a CPU,
            ``"process peak RSS growth"``.
        metric_history: Go-Metal's metrics on the validation data, per epoch, by name
            (``fit(..., metric_history=True)``; `gometal_keras.training.metric_history`);
            empty when not asked for.

    Example:
        >>> run = TrainingRun("float32", [2.3, 1.1], [0.5, 0.1], device="CPU")
        >>> run.steady_seconds
        0.1
    """

    plan: RunPlan | Precision
    losses: list[float]
    epoch_seconds: list[float]
    device: str = "unknown"
    stopped_early: bool = False
    decision: Decision | None = None
    loop: str = ""
    val_losses: list[float] = dataclasses.field(default_factory=list)
    metrics: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    peak_memory_bytes: int | None = None
    memory_kind: str = ""
    metric_history: dict[str, list[float | None]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.plan, RunPlan):
            object.__setattr__(self, "plan", Precision(self.plan))

    @property
    def precision(self) -> Precision:
        """The precision that ran."""
        return self.plan.precision if isinstance(self.plan, RunPlan) else self.plan

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
        return steady_mean(self.epoch_seconds)

    @property
    def trial_seconds(self) -> float:
        """Time the trainer spent on trials to choose the plan (0 when cached or fixed)."""
        return self.decision.trial_seconds if self.decision is not None else 0.0

    @property
    def compile_seconds(self) -> float:
        """One-off time in epoch 1: its excess over a steady epoch (NaN with one epoch).

        Example:
            >>> TrainingRun("float32", [1.0, 0.5, 0.4], [2.5, 0.5, 0.5]).compile_seconds
            2.0
        """
        if len(self.epoch_seconds) < 2:
            return math.nan
        return max(0.0, self.epoch_seconds[0] - self.steady_epoch_seconds)

    @property
    def training_seconds(self) -> float:
        """`total_seconds` less `compile_seconds` (all of it with one epoch)."""
        compile_ = self.compile_seconds
        return self.total_seconds - (compile_ if math.isfinite(compile_) else 0.0)

    def to_dict(self) -> dict[str, Any]:
        """Return the run as JSON-ready data, derived figures included."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        plan, decision = self.plan, self.decision
        data.update(
            precision=self.precision.value,
            plan=plan.to_dict() if isinstance(plan, RunPlan) else None,
            decision=decision.to_dict() if decision is not None else None,
            losses=list(self.losses),
            epoch_seconds=list(self.epoch_seconds),
            val_losses=list(self.val_losses),
            metrics={k: list(v) for k, v in self.metrics.items()},
            metric_history={k: list(v) for k, v in self.metric_history.items()},
            epochs_run=self.epochs_run,
            final_loss=self.final_loss,
            total_seconds=self.total_seconds,
            steady_seconds=self.steady_seconds,
            trial_seconds=self.trial_seconds,
            compile_seconds=self.compile_seconds,
            training_seconds=self.training_seconds,
        )
        return data


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """Result of one `Trainer.train_batch` step.

    Attributes:
        loss: The batch's loss (computed before the update), as a Python float.
    """

    loss: float

    @property
    def Loss(self) -> float:
        """Go-Metal's name for `loss`."""
        return self.loss
