"""Tests for gometal_keras.reporting.compare: arithmetic, timing bases and verdict thresholds."""

from __future__ import annotations

import json
import math

import tensorflow as tf
from helpers import hand_run as _run

from gometal_keras.reporting.compare import (
    BASIS_PER_EPOCH,
    BASIS_TOTAL,
    LOSS_MINOR_DIFFERENCE,
    LOSS_WELL_PRESERVED,
    SPEEDUP_EXCELLENT_PERCENT,
    SPEEDUP_GOOD_PERCENT,
    SPEEDUP_MODEST_PERCENT,
    Comparison,
    ConvergenceVerdict,
    SpeedupVerdict,
    compare_runs,
    convergence_verdict,
    speedup_verdict,
)


class SpeedupTest(tf.test.TestCase):
    def test_speedup_arithmetic_uses_steady_epochs_by_default(self) -> None:
        base = _run("float32", [2.0, 1.0, 0.5], [4.0, 1.0, 2.0])
        cand = _run("mixed_float16", [2.0, 1.0, 0.5], [9.0, 0.5, 1.5])
        cmp = compare_runs(base, cand)
        self.assertIsInstance(cmp, Comparison)
        self.assertEqual(cmp.timing, "steady")
        self.assertEqual(cmp.basis, BASIS_TOTAL)
        self.assertAllClose([cmp.baseline_seconds, cmp.candidate_seconds], [3.0, 2.0])
        self.assertAllClose(cmp.speedup_percent, 50.0)
        self.assertAllClose([cmp.baseline_total_seconds, cmp.candidate_total_seconds], [7.0, 11.0])
        self.assertAllClose([cmp.baseline_steady_seconds, cmp.candidate_steady_seconds], [3.0, 2.0])

    def test_total_timing_includes_first_epoch(self) -> None:
        base = _run("float32", [2.0, 1.0, 0.5], [4.0, 1.0, 2.0])
        cand = _run("mixed_float16", [2.0, 1.0, 0.5], [9.0, 0.5, 1.5])
        cmp = compare_runs(base, cand, timing="total")
        self.assertEqual(cmp.timing, "total")
        self.assertAllClose([cmp.baseline_seconds, cmp.candidate_seconds], [7.0, 11.0])
        self.assertAllClose(cmp.speedup_percent, (7.0 / 11.0 - 1.0) * 100.0)
        self.assertEqual(cmp.speedup_verdict, SpeedupVerdict.NO_SPEEDUP)

    def test_unequal_epoch_counts_compare_mean_epoch_time(self) -> None:
        # The candidate stopped early: summed times would flatter it; per-epoch means do not.
        base = _run("float32", [1.0] * 5, [3.0, 1.0, 1.0, 1.0, 1.0])
        cand = _run("mixed_float16", [1.0] * 3, [5.0, 2.0, 2.0])
        steady = compare_runs(base, cand)
        self.assertEqual(steady.basis, BASIS_PER_EPOCH)
        self.assertAllClose([steady.baseline_seconds, steady.candidate_seconds], [1.0, 2.0])
        self.assertAllClose(steady.speedup_percent, -50.0)
        self.assertEqual(steady.speedup_verdict, SpeedupVerdict.NO_SPEEDUP)
        total = compare_runs(base, cand, timing="total")
        self.assertEqual(total.basis, BASIS_PER_EPOCH)
        self.assertAllClose([total.baseline_seconds, total.candidate_seconds], [7 / 5, 3.0])
        # Totals are still reported as sums.
        self.assertAllClose([total.baseline_total_seconds, total.candidate_total_seconds], [7, 9])

    def test_single_epoch_steady_falls_back_to_total(self) -> None:
        cmp = compare_runs(_run("float32", [1.0], [2.0]), _run("mixed_float16", [1.0], [1.0]))
        self.assertAllClose(cmp.speedup_percent, 100.0)

    def test_unusable_times_give_nan_and_no_speedup(self) -> None:
        cmp = compare_runs(_run("float32", [1.0], [1.0]), _run("mixed_float16", [1.0], [0.0]))
        self.assertTrue(math.isnan(cmp.speedup_percent))
        self.assertEqual(cmp.speedup_verdict, SpeedupVerdict.NO_SPEEDUP)

    def test_speedup_thresholds_at_their_edges(self) -> None:
        self.assertEqual(SPEEDUP_EXCELLENT_PERCENT, 50.0)
        self.assertEqual(SPEEDUP_GOOD_PERCENT, 20.0)
        self.assertEqual(SPEEDUP_MODEST_PERCENT, 0.0)
        cases = {
            50.0001: SpeedupVerdict.EXCELLENT,
            50.0: SpeedupVerdict.GOOD,
            20.0001: SpeedupVerdict.GOOD,
            20.0: SpeedupVerdict.MODEST,
            0.0001: SpeedupVerdict.MODEST,
            0.0: SpeedupVerdict.NO_SPEEDUP,
            -35.2: SpeedupVerdict.NO_SPEEDUP,
            math.nan: SpeedupVerdict.NO_SPEEDUP,
        }
        for percent, expected in cases.items():
            self.assertEqual(speedup_verdict(percent), expected, msg=f"speedup {percent}")

    def test_speedup_edges_through_runs(self) -> None:
        def verdict(base_s: float, cand_s: float) -> SpeedupVerdict:
            base = _run("float32", [1.0], [base_s])
            return compare_runs(base, _run("mixed_float16", [1.0], [cand_s])).speedup_verdict

        self.assertEqual(verdict(1.5, 1.0), SpeedupVerdict.GOOD)  # exactly 50 %
        self.assertEqual(verdict(1.25, 1.0), SpeedupVerdict.GOOD)  # 25 %
        self.assertEqual(verdict(1.125, 1.0), SpeedupVerdict.MODEST)  # 12.5 %
        self.assertEqual(verdict(1.0, 1.0), SpeedupVerdict.NO_SPEEDUP)  # exactly 0 %
        self.assertEqual(verdict(2.0, 1.0), SpeedupVerdict.EXCELLENT)

    def test_invalid_timing_raises_naming_valid_values(self) -> None:
        run = _run("float32", [1.0], [1.0])
        with self.assertRaisesRegex(ValueError, "steady.*total"):
            compare_runs(run, run, timing="wall")


class ConvergenceTest(tf.test.TestCase):
    def test_loss_difference_is_absolute(self) -> None:
        base = _run("float32", [2.0, 0.421853], [1.0, 1.0])
        cand = _run("mixed_float16", [2.0, 0.423917], [1.0, 1.0])
        self.assertAllClose(compare_runs(base, cand).loss_difference, 0.002064)
        self.assertAllClose(compare_runs(cand, base).loss_difference, 0.002064)
        self.assertEqual(
            compare_runs(base, cand).convergence_verdict, ConvergenceVerdict.WELL_PRESERVED
        )

    def test_convergence_thresholds_at_their_edges(self) -> None:
        self.assertEqual(LOSS_WELL_PRESERVED, 0.05)
        self.assertEqual(LOSS_MINOR_DIFFERENCE, 0.1)
        cases = {
            0.0: ConvergenceVerdict.WELL_PRESERVED,
            0.0499: ConvergenceVerdict.WELL_PRESERVED,
            0.05: ConvergenceVerdict.MINOR,
            0.0999: ConvergenceVerdict.MINOR,
            0.1: ConvergenceVerdict.SIGNIFICANT,
            3.0: ConvergenceVerdict.SIGNIFICANT,
            math.nan: ConvergenceVerdict.DIVERGED,
            math.inf: ConvergenceVerdict.DIVERGED,
        }
        for difference, expected in cases.items():
            self.assertEqual(convergence_verdict(difference), expected, msg=f"diff {difference}")

    def test_non_finite_loss_in_either_run_diverged(self) -> None:
        good = _run("float32", [1.0, 0.5], [1.0, 1.0])
        for bad_loss in (math.nan, math.inf):
            bad = _run("mixed_float16", [1.0, bad_loss], [1.0, 1.0])
            self.assertEqual(
                compare_runs(good, bad).convergence_verdict, ConvergenceVerdict.DIVERGED
            )
            self.assertEqual(
                compare_runs(bad, good).convergence_verdict, ConvergenceVerdict.DIVERGED
            )


class ToDictTest(tf.test.TestCase):
    def test_to_dict_is_strict_json(self) -> None:
        base = _run("float32", [2.0, 0.5], [1.0, 1.5])
        cand = _run("mixed_float16", [2.0, math.nan], [1.0, 1.0])
        data = compare_runs(base, cand).to_dict()
        text = json.dumps(data, allow_nan=False)
        loaded = json.loads(text)
        self.assertEqual(loaded["timing"], "steady")
        self.assertEqual(loaded["basis"], BASIS_TOTAL)
        self.assertEqual(loaded["speedup_verdict"], "Good")
        self.assertEqual(loaded["convergence_verdict"], "diverged")
        self.assertIsNone(loaded["loss_difference"])
        self.assertEqual(loaded["baseline"]["precision"], "float32")
        self.assertEqual(loaded["candidate"]["losses"], [2.0, None])
        self.assertAllClose(loaded["speedup_percent"], 50.0)


if __name__ == "__main__":
    tf.test.main()
