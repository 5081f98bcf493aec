"""Go-Metal's mixed-precision demo on Keras 3: train FP32, then mixed precision, and compare.

    python examples/mixed_precision_demo.py                        # the seed's demo
    python examples/mixed_precision_demo.py --layers 1024,512,256  # a wider model
    python examples/mixed_precision_demo.py --precision mixed_float16 --epochs 10

The same model, data and settings as Go-Metal's demo: an MLP 784 -> 512 -> 256 -> 10 with
ReLU and Dropout 0.2, Adam at 1e-3, batches of 64 from 1000 synthetic samples, 20 epochs
with an early stop below a loss of 0.1. Read it top to bottom as Go-Metal's ``main.go``:
make the data, build the model with the ``ModelBuilder`` chain, make a ``TrainerConfig``,
train FP32 then mixed precision with ``Trainer``, time both again with their epochs in turn
(so that drift and load hit both alike), compare with ``compare_runs`` and print with the
``Reporter``. Every figure printed is measured in this run. ``--help`` lists the
flags; ``gometal-keras demo`` runs this same program.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from gometal_keras import (
    DemoResult,
    DemoSettings,
    ModelBuilder,
    Reporter,
    Trainer,
    TrainerConfig,
    TrainingRun,
    compare_runs,
    demo_dataset,
    demo_notes,
)


def build_model(s: DemoSettings) -> ModelBuilder:
    """The demo MLP as a Go-Metal builder chain: [batch, features] in, class logits out."""
    builder = ModelBuilder([s.batch_size, s.features])
    for i, units in enumerate(s.hidden_stack, start=1):
        builder.AddDense(units, True, f"dense{i}").AddReLU(f"relu{i}")
        builder.AddDropout(0.2, f"dropout{i}")
    return builder.AddDense(s.classes, True, "output")


def make_config(s: DemoSettings, precision: str) -> TrainerConfig:
    """Go-Metal's demo training configuration, under `precision`."""
    return TrainerConfig(
        batch_size=s.batch_size,
        learning_rate=0.001,
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        precision=precision,  # "float32", "mixed_float16", "mixed_bfloat16" or "auto"
        seed=s.seed,
        distribution="data_parallel" if s.devices else None,
        devices=s.devices,
    )


def run_demo(
    s: DemoSettings,
    reporter: Reporter | None = None,
    progress: Callable[[int, str], object] | None = None,
) -> DemoResult:
    """Train both phases, compare them, and print the seed's report if `reporter` is given.

    `progress(phase, label)`, when given, returns a Keras callback for that phase's `fit`.
    """
    # 1. The data: the seed demo's synthetic classification set.
    x, y = demo_dataset(s.samples, s.features, s.classes, s.seed)

    def train(phase: int, trainer: Trainer, title: str | None = None) -> TrainingRun:
        label = trainer.precision.label
        if reporter:
            reporter.phase_header(phase, label, s.table(), title=title)
        callbacks = [progress(phase, label)] if progress else []
        run = trainer.fit(
            x, y, epochs=s.epochs, early_stop_loss=s.early_stop_loss, callbacks=callbacks
        )
        if reporter:
            reporter.phase_result(run)
        return run

    # 2. Phase 1: the FP32 baseline.
    first = Trainer(build_model(s), make_config(s, "float32"))
    baseline = train(1, first)

    # 3. Phase 2: mixed precision. "auto" times the candidates this device runs fast and
    #    keeps the fastest sound plan; where that is float32, phase 2 trains the fastest
    #    mixed plan it timed instead, so the comparison shows what mixed precision does.
    trainer = Trainer(build_model(s), make_config(s, s.precision))
    title, verdict = None, None
    if s.precision == "auto" and trainer.decision is not None:
        mixed = [c for c in trainer.decision.candidates if c.sound and c.plan.precision.mixed]
        if not trainer.precision.mixed and mixed:
            best = min(mixed, key=lambda c: c.seconds).plan
            verdict = trainer.decision.reason
            config = make_config(s, best.policy).replace(jit_compile=best.xla, loop=best.loop.value)
            trainer = Trainer(build_model(s), config)
            title = f"{best.precision.label} Mixed Precision Training (auto would keep FP32)"
        else:
            title = f"Mixed Precision Training (auto: {trainer.precision.label} chosen)"
    candidate = train(2, trainer, title)

    # 4. Speed, measured so that drift and load hit both alike: the two trainers' epochs
    #    timed in turn (A B, B A, ...); each `train_epoch` waits for the device.
    rounds: tuple[list[float], list[float]] = ([], [])
    arranged = [(t, t.arrange(x, y)) for t in (first, trainer)]
    for r in range(s.rounds):
        for i in (0, 1) if r % 2 == 0 else (1, 0):
            start = time.perf_counter()
            arranged[i][0].train_epoch(arranged[i][1])
            rounds[i].append(time.perf_counter() - start)

    # 5. Compare: the interleaved rounds' speedup (with its range) and the final loss.
    comparison = compare_runs(baseline, candidate, s.timing, rounds if s.rounds else None)
    notes = demo_notes(trainer, comparison, verdict)
    if reporter:
        reporter.comparison(comparison, notes)
    configs = (make_config(s, "float32"), trainer.config)
    return DemoResult(baseline, candidate, comparison, notes, s, trainer.device, configs)


if __name__ == "__main__":
    # The flags, progress bars, --json and --plot belong to the command line.
    from gometal_keras import cli

    sys.exit(cli.main(["demo", *sys.argv[1:]]))
