"""Go-Metal's mixed-precision demo: its settings, the program, its result and the notes on it.

`run_demo` reads top to bottom as Go-Metal's ``main.go``: make the data, build the model with
the ``ModelBuilder`` chain, make a ``TrainerConfig``, train FP32 then mixed precision with
``Trainer``, time both again with their epochs in turn (so that drift and load hit both
alike), compare with ``compare_runs`` and print with the ``Reporter``. Every figure printed is
measured in this run. ``gometal-keras demo`` and ``examples/mixed_precision_demo.py`` run it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.demo_settings import (
    TRANSFORMER_FEED_FORWARD,
    TRANSFORMER_HEADS,
    TRANSFORMER_WIDTH,
    DemoSettings,
)
from gometal_keras.core.device import DeviceInfo
from gometal_keras.data.synthetic import demo_dataset, demo_tokens
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.reporting.compare import Comparison, Outcome, compare_runs
from gometal_keras.reporting.report import Reporter
from gometal_keras.training.record import TrainingRun
from gometal_keras.training.trainer import Trainer


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
    pct, figure = cmp.speedup_percent, cmp.headline(verdict=False)  # the notes say it in words
    if not cmp.candidate.precision.mixed:
        notes.append(
            f"Both phases trained FP32 (no mixed precision runs fast on this "
            f"{trainer.device.kind}): the {figure} between them is run-to-run variation."
        )
    elif trainer.device.kind == "cpu" and not pct >= 20:
        said = {
            Outcome.SAME: f"makes no measurable difference on this CPU ({figure})",
            Outcome.FASTER: f"gains little on this CPU (measured {figure})",
        }.get(cmp.outcome, f"does not help on this CPU (measured {figure})")
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
            f"The speedup compares the median epoch times of {cmp.rounds} rounds that timed "
            "one epoch of each phase in turn, after both phases trained; its range is the "
            "rounds' own."
        )
    return tuple(notes)


def build_model(s: DemoSettings) -> ModelBuilder:
    """The demo model as a Go-Metal builder chain, class logits out: the MLP on
    [batch, features], or the small transformer on [batch, tokens] token ids."""
    if s.model == "transformer":
        return (
            ModelBuilder([s.batch_size, s.tokens])
            .AddEmbedding(s.vocab, TRANSFORMER_WIDTH, "embed")
            .AddMultiHeadAttention(TRANSFORMER_HEADS, None, 0.0, True, "attention")
            .AddLayerNorm(None, 1e-5, True, "norm1")
            .AddConv1D(TRANSFORMER_FEED_FORWARD, 1, 1, 0, True, "feed_forward")
            .AddReLU("relu")
            .AddConv1D(TRANSFORMER_WIDTH, 1, 1, 0, True, "feed_back")
            .AddLayerNorm(None, 1e-5, True, "norm2")
            .AddGlobalAvgPool1D("mean")
            .AddDense(s.classes, True, "output")
        )
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
    # 1. The data: the seed demo's synthetic classification set (token sequences for the
    #    transformer, each class leaning on its own band of the vocabulary).
    if s.model == "transformer":
        x, y = demo_tokens(s.samples, s.tokens, s.vocab, s.classes, s.seed)
    else:
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
