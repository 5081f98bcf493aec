"""The Go-Metal mixed-precision demo: train FP32, then mixed precision, and compare.

Same model, data and settings as Go-Metal's demo (784 -> 512 -> 256 -> 10 with ReLU and
Dropout 0.2, Adam 1e-3, batch 64, 1000 synthetic samples, 20 epochs, early stop below
0.1). Every figure printed is measured in this run; on a device where mixed precision
does not help, the report says so and why.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence

import keras

from gometal_keras.autotune import Variant
from gometal_keras.builder import ModelBuilder
from gometal_keras.compare import Comparison, compare_runs
from gometal_keras.config import TrainerConfig
from gometal_keras.data import demo_dataset
from gometal_keras.precision import DeviceInfo
from gometal_keras.record import TrainingRun
from gometal_keras.report import Reporter, label_for
from gometal_keras.trainer import Trainer

MIXED_CHOICES = ("auto", "mixed_float16", "mixed_bfloat16", "float32")


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """The demo's knobs (the seed README's "Customization"), with the seed's defaults."""

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

    @property
    def hidden_stack(self) -> tuple[int, ...]:
        """Hidden layer sizes in order."""
        return self.layers if self.layers else (self.hidden, 256)

    def builder(self) -> ModelBuilder:
        """The demo model as a Go-Metal builder chain."""
        b = ModelBuilder([self.batch_size, self.features])
        for i, units in enumerate(self.hidden_stack, start=1):
            b.AddDense(units, True, f"dense{i}").AddReLU(f"relu{i}").AddDropout(0.2, f"dropout{i}")
        return b.AddDense(self.classes, True, "output")

    def trainer_config(self, precision: str) -> TrainerConfig:
        """Go-Metal's demo configuration under `precision`."""
        return TrainerConfig(
            batch_size=self.batch_size,
            learning_rate=0.001,
            optimizer="adam",
            loss="sparse_categorical_crossentropy",
            precision=precision,
            seed=self.seed,
            distribution="data_parallel" if self.devices else None,
            devices=self.devices,
        )

    def to_dict(self) -> dict[str, object]:
        """Return the settings as JSON-ready data (tuples as lists)."""
        data = dataclasses.asdict(self)
        data["layers"] = list(self.layers) if self.layers else None
        data["hidden_stack"] = list(self.hidden_stack)
        return data

    def table(self) -> dict[str, object]:
        """The configuration lines the report prints."""
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


#: Makes a progress callback for a phase from its number and precision label.
ProgressFactory = Callable[[int, str], keras.callbacks.Callback]


def run_demo(
    settings: DemoSettings,
    reporter: Reporter | None = None,
    progress: ProgressFactory | None = None,
) -> DemoResult:
    """Train both phases and return the comparison; print the seed's blocks if `reporter`.

    Args:
        settings: The demo's knobs.
        reporter: Prints each block as it happens; None runs silently.
        progress: Called with (phase number, precision label) before each phase; the
            callback it returns is passed to `Trainer.fit` (e.g. a `PhaseProgress`).

    Returns:
        A `DemoResult` with both `TrainingRun`s and their `Comparison`.

    Example:
        >>> # result = run_demo(DemoSettings(epochs=3)); result.comparison.speedup_percent
    """
    x, y = demo_dataset(settings.samples, settings.features, settings.classes, settings.seed)
    runs = []
    verdict = None
    for index in (1, 2):
        if index == 1:
            trainer = Trainer(settings.builder(), settings.trainer_config("float32"))
        else:
            trainer, verdict = _mixed_trainer(settings)
        label = label_for(trainer.precision)
        if reporter:
            title = None
            if index == 2 and verdict:
                title = f"{label} Mixed Precision Training (auto would keep FP32; see below)"
            elif index == 2 and settings.precision == "auto":
                title = f"Mixed Precision Training (auto: {label} chosen by measurement)"
            reporter.phase_header(index, label, settings.table(), title=title)
        callbacks = [progress(index, label)] if progress else []
        run = trainer.fit(
            x,
            y,
            epochs=settings.epochs,
            early_stop_loss=settings.early_stop_loss,
            callbacks=callbacks,
        )
        if reporter:
            reporter.phase_result(run)
        runs.append((trainer, run))
    (base_trainer, base), (mixed_trainer, mixed) = runs
    comparison = compare_runs(base, mixed, timing=settings.timing)
    notes = _notes(mixed_trainer, comparison, verdict)
    if reporter:
        reporter.comparison(comparison, notes)
    configs = (base_trainer.config, mixed_trainer.config)
    return DemoResult(base, mixed, comparison, notes, settings, mixed_trainer.device, configs)


def _mixed_trainer(settings: DemoSettings) -> tuple[Trainer, str | None]:
    """Phase 2's trainer, and auto's verdict when phase 2 trains something else.

    When ``precision="auto"`` keeps float32, phase 2 trains the fastest mixed candidate
    timed (its XLA setting and loop too), so the comparison shows what mixed precision
    really does here. Without any mixed candidate, phase 2 is float32 again.
    """
    trainer = Trainer(settings.builder(), settings.trainer_config(settings.precision))
    if settings.precision != "auto" or trainer.precision != "float32" or not trainer.decision:
        return trainer, None
    timed = [
        (seconds, *Variant.parse(label))
        for label, seconds in trainer.decision["candidates"].items()
        if label.startswith("mixed_") and seconds is not None and math.isfinite(seconds)
    ]
    if not timed:
        return trainer, None
    _, precision, variant = min(timed, key=lambda item: item[0])
    config = settings.trainer_config(precision).replace(jit_compile=variant.jit, loop=variant.loop)
    return Trainer(settings.builder(), config), trainer.decision["reason"]


def _notes(trainer: Trainer, cmp: Comparison, verdict: str | None = None) -> tuple[str, ...]:
    """Plain lines that explain the result from what was measured on this device."""
    notes = []
    auto = trainer.config.resolved_precision == "auto"
    if verdict:
        notes.append(f"Precision choice: {verdict} Phase 2 shows the fastest mixed candidate.")
    elif auto and trainer.decision and trainer.decision.get("reason"):
        notes.append(f"Precision choice: {trainer.decision['reason']}")
    pct = cmp.speedup_percent
    if trainer.device.kind == "cpu" and not pct >= 20:
        steady = max(cmp.baseline.epochs_run - 1, 1)
        said = (
            f"does not help on this CPU (measured {pct:+.1f}%)"
            if not pct > 0
            else f"gains little on this CPU (measured {pct:+.1f}% over {steady} short epochs)"
        )
        notes.append(
            f"Mixed precision {said}: the seed's 50-70% speedups come from a GPU's float16 units."
        )
    if trainer.device.tf32 and cmp.baseline.precision == "float32":
        notes.append(
            "FP32 here multiplies matrices in TF32, the backend's default on this GPU; "
            "full float32 would be slower still."
        )
    if cmp.timing == "steady":
        notes.append("Times exclude epoch 1, which holds one-off tracing and compilation.")
    return tuple(notes)


def _layers(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    if not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected positive sizes like 1024,512,256, got {text!r}")
    return tuple(int(p) for p in parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's flags to `parser` (shared by the example script and the CLI)."""
    d = DemoSettings()
    parser.add_argument("--hidden", type=int, default=d.hidden, help="first hidden layer size")
    parser.add_argument("--layers", type=_layers, help="hidden sizes, e.g. 1024,512,256")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--samples", type=int, default=d.samples)
    parser.add_argument(
        "--precision",
        choices=MIXED_CHOICES,
        default=d.precision,
        help="precision of phase 2 (auto: measure and keep the fastest sound one)",
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--early-stop", type=float, default=d.early_stop_loss, dest="early_stop")
    parser.add_argument(
        "--timing",
        choices=("steady", "total"),
        default=d.timing,
        help="compare steady-state time (epoch 1 excluded) or total time",
    )
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        help="train data-parallel over N local devices (the batch size stays global)",
    )


def settings_from(args: argparse.Namespace) -> DemoSettings:
    """Build `DemoSettings` from parsed flags, rejecting non-positive sizes."""
    for flag in ("hidden", "batch_size", "epochs", "samples", "devices"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be a positive integer.")
    return DemoSettings(
        hidden=args.hidden,
        layers=args.layers,
        batch_size=args.batch_size,
        epochs=args.epochs,
        samples=args.samples,
        precision=args.precision,
        seed=args.seed,
        early_stop_loss=args.early_stop,
        timing=args.timing,
        devices=args.devices,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo from the command line (``gometal-keras demo``); return the exit code.

    Args:
        argv: The demo's flags (see ``gometal-keras demo --help``); None reads sys.argv.

    Returns:
        0 on success, 2 on a usage error, 1 on a failure.

    Example:
        >>> # main(["--epochs", "5", "--json", "demo.json", "--plot", "demo.png"])
    """
    import sys

    from gometal_keras import cli

    return cli.main(["demo", *(sys.argv[1:] if argv is None else argv)])
