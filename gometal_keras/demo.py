"""The demo's settings and result: what `examples/mixed_precision_demo.py` takes and returns.

The demo program itself is the example (installed as
``gometal_keras.examples.mixed_precision_demo``), written with the public API in the
shape of Go-Metal's ``main.go``; ``gometal-keras demo`` runs it. This module holds only
its plain records and the notes that explain a result, so the command line, the JSON
report and the tests can use them without running anything.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from gometal_keras.compare import Comparison
from gometal_keras.config import TrainerConfig
from gometal_keras.precision import DeviceInfo
from gometal_keras.record import TrainingRun

if TYPE_CHECKING:
    from gometal_keras.trainer import Trainer


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """The demo's knobs (the seed README's "Customization"), with the seed's defaults.

    Example:
        >>> DemoSettings(layers=(1024, 512, 256)).hidden_stack
        (1024, 512, 256)
    """

    hidden: int = 512
    layers: tuple[int, ...] | None = None  # replaces (hidden, 256)
    batch_size: int = 64
    epochs: int = 20
    samples: int = 1000
    features: int = 784
    classes: int = 10
    precision: str = "auto"
    seed: int = 42
    early_stop_loss: float = 0.1
    timing: str = "steady"
    devices: int | None = None  # data parallel over this many local devices
    rounds: int = 6  # interleaved epochs of each phase for the speed comparison (0: none)

    @property
    def hidden_stack(self) -> tuple[int, ...]:
        """Hidden layer sizes in order."""
        return self.layers if self.layers else (self.hidden, 256)

    def to_dict(self) -> dict[str, object]:
        """Return the settings as JSON-ready data (tuples as lists)."""
        data = dataclasses.asdict(self)
        data["layers"] = list(self.layers) if self.layers else None
        data["hidden_stack"] = list(self.hidden_stack)
        return data

    def table(self) -> dict[str, object]:
        """The configuration lines the report prints.

        Example:
            >>> DemoSettings().table()["Hidden Size"]
            512
        """
        return {
            "Batch Size": self.batch_size,
            "Input Size": self.features,
            "Hidden Sizes" if self.layers else "Hidden Size": (
                ", ".join(map(str, self.hidden_stack)) if self.layers else self.hidden
            ),
            "Classes": self.classes,
            "Samples": self.samples,
            "Epochs": self.epochs,
        } | ({"Devices": f"{self.devices} (data parallel)"} if self.devices else {})


@dataclasses.dataclass(frozen=True)
class DemoResult:
    """Both runs, their comparison, and what they ran on and with.

    Attributes:
        baseline: The FP32 run.
        mixed: The second run, under the precision asked for (or chosen by "auto").
        comparison: `compare_runs(baseline, mixed)`.
        notes: Plain lines explaining the result.
        settings: The demo's knobs.
        device: The device both phases trained on.
        configs: The `TrainerConfig` of each phase, baseline first.
    """

    baseline: TrainingRun
    mixed: TrainingRun
    comparison: Comparison
    notes: tuple[str, ...]
    settings: DemoSettings = dataclasses.field(default_factory=DemoSettings)
    device: DeviceInfo | None = None
    configs: tuple[TrainerConfig, ...] = ()


def demo_notes(trainer: Trainer, cmp: Comparison, verdict: str | None = None) -> tuple[str, ...]:
    """Plain lines that explain a demo result from what was measured on this device.

    Args:
        trainer: Phase 2's trainer.
        cmp: The comparison of both phases.
        verdict: Auto's reason when it kept float32 and phase 2 shows a mixed candidate.

    Returns:
        The notes, in the order the report prints them.
    """
    notes = []
    decision = trainer.decision
    if verdict:
        notes.append(f"Precision choice: {verdict} Phase 2 shows the fastest mixed candidate.")
    elif trainer.config.resolved_precision == "auto" and decision is not None:
        notes.append(f"Precision choice: {decision.reason}")
    pct = cmp.speedup_percent
    if not cmp.candidate.precision.mixed:
        notes.append(
            f"Both phases trained FP32 (no mixed precision runs fast on this "
            f"{trainer.device.kind}): the {pct:+.1f}% between them is run-to-run variation."
        )
    elif trainer.device.kind == "cpu" and not pct >= 20:
        steady = max(cmp.baseline.epochs_run - 1, 1)
        said = (
            f"does not help on this CPU (measured {pct:+.1f}%)"
            if not pct > 0
            else f"gains little on this CPU (measured {pct:+.1f}% over {steady} short epochs)"
        )
        if not cmp.measurable:
            said = (
                f"makes no measurable difference on this CPU ({pct:+.1f}%, inside the noise "
                f"of {cmp.rounds} interleaved rounds)"
            )
        notes.append(
            f"Mixed precision {said}: the seed's 50-70% speedups come from a GPU's float16 units."
        )
    if trainer.device.tf32 and not cmp.baseline.precision.mixed:
        notes.append(
            "FP32 here multiplies matrices in TF32, the backend's default on this GPU; "
            "full float32 would be slower still."
        )
    if cmp.timing == "steady":
        notes.append("Times exclude epoch 1, which holds one-off tracing and compilation.")
    if cmp.rounds:
        notes.append(
            f"The speedup is the median of {cmp.rounds} rounds that timed one epoch of each "
            "phase in turn, after both phases trained; its range is the rounds'."
        )
    return tuple(notes)
