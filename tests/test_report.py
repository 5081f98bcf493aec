"""Tests for gometal_keras.reporting.report: the demo's blocks, plain/terminal modes, ASCII
fallback."""

from __future__ import annotations

import io
import math
import re

import tensorflow as tf
from rich.console import Console

from gometal_keras.core.plan import Precision, RunPlan
from gometal_keras.planning.decision import Candidate, Decision
from gometal_keras.reporting.compare import compare_runs
from gometal_keras.reporting.report import EMOJI_ASCII, Reporter, epoch_rows, label_for
from gometal_keras.training.record import TrainingRun

ANSI = re.compile(r"\x1b\[")
EMOJI = tuple(EMOJI_ASCII)


class _AsciiFile(io.StringIO):
    """A text file that, like a C-locale terminal, can only carry ASCII."""

    encoding = "ascii"


def _runs() -> tuple[TrainingRun, TrainingRun]:
    base = TrainingRun(
        "float32",
        [2.0 - 0.08 * i for i in range(23)],
        [0.5] + [0.040] * 22,
        device="CPU (test)",
        loop="fused-epoch (xla)",
    )
    cand = TrainingRun(
        "mixed_float16",
        [2.0 - 0.0801 * i for i in range(23)],
        [0.9] + [0.025] * 22,
        device="CPU (test)",
        loop="per-step",
    )
    return base, cand


def _render(console: Console, base: TrainingRun, cand: TrainingRun, notes=()) -> str:
    reporter = Reporter(console)
    reporter.title()
    reporter.phase_header(1, "FP32", {"Batch Size": 64, "Epochs": 23})
    reporter.phase_result(base)
    reporter.phase_header(2, "FP16", {"Batch Size": 64, "Epochs": 23})
    reporter.phase_result(cand)
    reporter.comparison(compare_runs(base, cand), notes=notes)
    return console.file.getvalue()


def _plain_console(file: io.StringIO | None = None) -> Console:
    return Console(file=file or io.StringIO(), force_terminal=False, width=100)


class ReportTest(tf.test.TestCase):
    def test_blocks_in_order_with_real_numbers(self) -> None:
        base, cand = _runs()
        out = _render(_plain_console(), base, cand)
        blocks = [
            "🚀 gometal_keras Mixed Precision Training Demo",
            "📊 Phase 1: FP32 Baseline Training",
            "FP32 Training Configuration:",
            "  Batch Size: 64",
            "Starting training...",
            "⚡ Phase 2: FP16 Mixed Precision Training",
            "📈 Performance Comparison",
            "Training Time (steady state, epochs 2-23):",
            "✅ Summary",
            "🏁 Mixed precision training demo completed!",
        ]
        positions = [out.index(block) for block in blocks]
        self.assertEqual(positions, sorted(positions))
        lines = out.splitlines()
        self.assertEqual(lines[1], "=" * 46)  # emoji is two cells wide
        cmp = compare_runs(base, cand)
        self.assertIn(f"  FP32: {cmp.baseline_seconds:.2f} seconds", lines)
        self.assertIn(f"  FP16: {cmp.candidate_seconds:.2f} seconds", lines)
        self.assertIn(f"  Speedup: {cmp.speedup_percent:+.1f}%", lines)
        self.assertIn(f"  FP32: {base.final_loss:.6f}", lines)
        self.assertIn(f"  FP16: {cand.final_loss:.6f}", lines)
        self.assertIn(f"  Loss Difference: {cmp.loss_difference:.6f}", lines)
        self.assertIn(f"  FP16: {cand.total_seconds:.2f} seconds", lines)  # with compilation
        self.assertIn(f"🎉 Excellent speedup achieved: {cmp.speedup_percent:+.1f}%.", lines)
        self.assertIn("✅ Loss convergence well preserved", lines)
        self.assertIn("Precision: float32  Device: CPU (test)  Loop: fused-epoch (xla)", lines)

    def test_epoch_rows_selection(self) -> None:
        self.assertEqual(epoch_rows(0), [])
        self.assertEqual(epoch_rows(3), [1, 2, 3])
        self.assertEqual(epoch_rows(20), [1, 2, 3, 4, 5, 10, 20])
        self.assertEqual(epoch_rows(23), [1, 2, 3, 4, 5, 10, 20, 23])
        base, _ = _runs()
        console = _plain_console()
        Reporter(console).phase_result(base)
        rows = [line for line in console.file.getvalue().splitlines() if " | " in line]
        self.assertEqual(rows[0], "Epoch | Loss     | Time (ms)")
        shown = [int(row.split("|")[0]) for row in rows[1:]]
        self.assertEqual(shown, [1, 2, 3, 4, 5, 10, 20, 23])
        self.assertIn(f"   10 | {base.losses[9]:8.6f} |    40.00", rows)
        self.assertIn("    1 | 2.000000 |   500.00", rows)

    def test_plain_output_has_no_ansi_or_markup(self) -> None:
        base, cand = _runs()
        cand = TrainingRun(
            "mixed_float16",
            cand.losses,
            cand.epoch_seconds,
            device="[bold]GPU[/bold]",
            decision=Decision(
                RunPlan(Precision.FLOAT32, xla=False),
                "float32 measured [red]fastest[/red]",
                (
                    Candidate(RunPlan(Precision.FLOAT32, xla=False), 0.002),
                    Candidate(RunPlan(Precision.MIXED_FLOAT16, xla=False), 0.001, finite=False),
                    Candidate(RunPlan(Precision.MIXED_BFLOAT16, xla=False), math.nan),
                ),
            ),
            stopped_early=True,
        )
        out = _render(_plain_console(), base, cand)
        self.assertIsNone(ANSI.search(out))
        self.assertIn("Device: [bold]GPU[/bold]", out)  # user text printed literally
        self.assertIn("Reason: float32 measured [red]fastest[/red]", out)
        self.assertIn("  float32 (no XLA, fused)        |     2.00 ms/step  <- chosen", out)
        self.assertIn("  mixed_float16 (no XLA, fused)  | rejected", out)
        self.assertIn("  mixed_bfloat16 (no XLA, fused) | rejected", out)
        self.assertIn("Stopped early at epoch 23 (loss below threshold)", out)

    def test_ascii_fallback_when_encoding_cannot_carry_emoji(self) -> None:
        base, cand = _runs()
        console = _plain_console(_AsciiFile())
        reporter = Reporter(console)
        self.assertFalse(reporter.emoji)
        self.assertTrue(reporter.plain)
        out = _render(console, base, cand, notes=["Note: no fast FP16 units — ✓ expected"])
        out.encode("ascii")  # nothing left that the file cannot carry
        self.assertFalse(any(icon in out for icon in EMOJI))
        self.assertIn("[DEMO] gometal_keras Mixed Precision Training Demo", out)
        self.assertIn("[BASE] Phase 1: FP32 Baseline Training", out)
        self.assertIn("[MIXED] Phase 2: FP16 Mixed Precision Training", out)
        self.assertIn("[OK] Summary\n============\n", out)
        self.assertIn("[DONE] Mixed precision training demo completed!", out)
        self.assertIn("Note: no fast FP16 units ? ? expected", out)

    def test_terminal_mode_has_emoji_and_colour(self) -> None:
        base, cand = _runs()
        console = Console(file=io.StringIO(), force_terminal=True, width=100)
        self.assertFalse(Reporter(console).plain)
        out = _render(console, base, cand)
        for icon in ("🚀", "📊", "⚡", "📈", "✅", "🏁"):
            self.assertIn(icon, out)
        self.assertIsNotNone(ANSI.search(out))
        plain = Reporter(Console(file=io.StringIO(), force_terminal=True), plain=True)
        plain.title("Demo")
        self.assertIsNone(ANSI.search(plain.console.file.getvalue()))

    def test_no_speedup_wording_and_notes(self) -> None:
        base = TrainingRun("float32", [2.0, 0.50], [1.0, 1.0])
        cand = TrainingRun("mixed_float16", [2.0, 0.58], [1.0, 2.0])
        console = _plain_console()
        Reporter(console).comparison(
            compare_runs(base, cand), notes=["This CPU has no fast float16 arithmetic."]
        )
        lines = console.file.getvalue().splitlines()
        self.assertIn("  Speedup: -50.0% (mixed precision was slower)", lines)
        # the summary states the headline's own figure, never one recomputed from the phases
        self.assertIn("⚠️ No speedup: mixed precision was slower than FP32 here (-50.0%).", lines)
        self.assertIn("⚠️ Minor loss difference", lines)
        self.assertIn("This CPU has no fast float16 arithmetic.", lines)
        self.assertLess(
            lines.index("This CPU has no fast float16 arithmetic."),
            lines.index("🏁 Mixed precision training demo completed!"),
        )
        self.assertNotIn("Excellent", "\n".join(lines))

    def test_per_epoch_basis_and_divergence(self) -> None:
        base = TrainingRun("float32", [2.0, 1.0, 0.5, 0.4], [1.0, 0.1, 0.1, 0.1])
        cand = TrainingRun("mixed_bfloat16", [2.0, math.nan], [1.0, 0.05])
        console = _plain_console()
        Reporter(console).comparison(compare_runs(base, cand))
        out = console.file.getvalue()
        self.assertIn(
            "Time per Epoch (steady state, epoch 1 excluded; runs of 4 and 2 epochs):", out
        )
        self.assertIn("  FP32: 100.00 ms/epoch", out)
        self.assertIn("  BF16: 50.00 ms/epoch", out)
        self.assertIn("❌ Training diverged", out)

    def test_label_for(self) -> None:
        self.assertEqual(label_for("float32"), "FP32")
        self.assertEqual(label_for("mixed_float16"), "FP16")
        self.assertEqual(label_for("mixed_bfloat16"), "BF16")
        self.assertEqual(label_for("auto"), "auto")


if __name__ == "__main__":
    tf.test.main()


class DecisionAndFirstStepTest(tf.test.TestCase):
    def test_spread_line_and_time_to_first_step_say_what_was_measured(self) -> None:
        f32, f16 = (
            RunPlan(Precision.FLOAT32, xla=False),
            RunPlan(Precision.MIXED_FLOAT16, xla=False),
        )
        timed = (
            Candidate(f32, 0.002, samples=(0.0021, 0.002, 0.0019)),
            Candidate(f16, 0.001, samples=(0.0011, 0.001, 0.0009)),
        )
        base, cand = _runs()
        trials = Decision(f16, "fp16 wins", timed, trial_seconds=4.25)
        cached = Decision(f16, "fp16 wins", timed, origin="cache")
        cand_trials = TrainingRun("mixed_float16", cand.losses, cand.epoch_seconds, decision=trials)
        cand_cached = TrainingRun("mixed_float16", cand.losses, cand.epoch_seconds, decision=cached)
        for run, first in ((cand_trials, "trials 4.25 s"), (cand_cached, "trials none (cached")):
            out = _render(_plain_console(), base, run)
            self.assertIn(
                "  mixed_float16 (no XLA, fused) |     1.00 ms/step (median; 0.900-1.100, 3 rounds)"
                "  <- chosen",
                out,
            )
            step = [line for line in out.splitlines() if line.startswith("  FP16: trials")]
            self.assertEqual(len(step), 1, out)
            compile_ = run.compile_seconds
            self.assertEqual(
                step[0],
                f"  FP16: {first}{' decision)' if 'cached' in first else ''}, "
                f"compile {compile_:.2f} s, training {run.training_seconds:.2f} s",
            )
