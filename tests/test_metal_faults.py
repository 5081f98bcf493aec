"""Apple Silicon (tensorflow-metal) failures, injected around the real engine on this CPU.

Nobody here has a Mac: `fakes.FaultyEngine` says the device is an Apple GPU and makes its
programs raise, hang or compute wrong losses, and `gometal_keras.engines.current` is
patched to return it. What is checked is the design: XLA is refused up front where there is
none; a candidate whose program fails is dropped with its error recorded and the next is
tried (fused, per-step, then the host CPU); a float32 plan whose losses disagree with the
CPU's is dropped with a warning naming the report; `Trainer` fails only when every
candidate failed, in one sentence listing each. On this plain CPU nothing changes. No test
branches on a measured time.
"""

from __future__ import annotations

import io
import warnings
from unittest import mock

import numpy as np
import tensorflow as tf
from fakes import CUDA, METAL, MISSING_KERNEL, FaultyEngine
from helpers import classification_data, float32_config, tiny_builder
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from gometal_keras import engines
from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import HOST, Loop, Precision
from gometal_keras.planning import autotune, trial_runner, trials
from gometal_keras.planning.decision import Decision
from gometal_keras.reporting.report import Reporter
from gometal_keras.training.trainer import Trainer

FUSED, STEP = "float32 (no XLA, fused)", "float32 (no XLA, step)"
CPU_FUSED, CPU_STEP = f"{FUSED} on the CPU", f"{STEP} on the CPU"
#: Every plan a float32 builder may be tried under on the fake Apple GPU.
LABELS = (FUSED, STEP, CPU_FUSED, CPU_STEP)
#: Trials kept short: one warm-up and two timed rounds of TRIAL_STEPS steps.
QUICK = mock.patch.multiple(trials, MIN_ROUNDS=2, MAX_ROUNDS=2)


def config(**overrides) -> TrainerConfig:
    """float32, XLA left to the device (none on Metal), the loop measured, always timed."""
    settings = {"jit_compile": None, "loop": "auto", "decision_cache": "always"}
    return float32_config(**{**settings, **overrides})


class MetalTestCase(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        QUICK.start()
        self.addCleanup(QUICK.stop)

    def trainer(self, engine: FaultyEngine, source=None, **overrides) -> Trainer:
        self.addCleanup(engine.release)
        with mock.patch.object(engines, "current", return_value=engine):
            return Trainer(source or tiny_builder(), config(**overrides))

    def errors(self, decision: Decision) -> dict[str, str | None]:
        return {c.plan.label(): c.error for c in decision.candidates}


class RefusedTest(MetalTestCase):
    def test_xla_is_refused_before_any_work(self):
        engine = FaultyEngine()
        refused = self.assertRaisesRegex(ValueError, r"^jit_compile=True asks for XLA, which ")
        with mock.patch.object(autotune, "select") as select, refused:
            self.trainer(engine, jit_compile=True)
        select.assert_not_called()
        self.assertEqual(engine.calls, [])

    def test_no_xla_plan_is_built_on_metal(self):
        for precision in Precision:
            plans = autotune.plans(config(), FaultyEngine(), METAL, precision)
            self.assertFalse(any(p.xla for p in plans), plans)

    def test_fused_and_per_step_are_both_timed_on_metal(self):
        # No GPU kernels for the fused loop's TensorArray ops or Dropout's random-key op:
        # the fused loop may copy to the CPU every step, so per-step is timed against it.
        for precision in Precision:
            plans = autotune.plans(config(), FaultyEngine(), METAL, precision)
            self.assertEqual([p.loop for p in plans], [Loop.FUSED, Loop.STEP])
        plans = autotune.plans(config(loop="fused"), FaultyEngine(), METAL, Precision.FLOAT32)
        self.assertEqual([p.loop for p in plans], [Loop.FUSED])  # the user's loop is kept


class FallbackTest(MetalTestCase):
    def test_fused_raises_step_is_chosen(self):
        trainer = self.trainer(FaultyEngine(epoch_raises=True, cpu=False))
        self.assertEqual(trainer.plan.label(), STEP)
        errors = self.errors(trainer.decision)
        self.assertEqual(list(errors), [FUSED, STEP])
        self.assertIn(MISSING_KERNEL, errors[FUSED])
        self.assertIsNone(errors[STEP])
        self.assertIn(f"Failed: {FUSED}: NotFoundError", trainer.decision.reason)
        run = trainer.fit(*classification_data(), epochs=2)  # trains, per step
        self.assertEqual(run.epochs_run, 2)

    def test_a_keras_model_falls_back_to_per_step_on_metal(self):
        # A keras.Model keeps its own policy and device (no CPU); its loops are both tried.
        model = tiny_builder().compile("float32", seed=0)
        engine = FaultyEngine(epoch_raises=True)
        trainer = self.trainer(engine, model)
        self.assertEqual(trainer.plan.loop, Loop.STEP)
        self.assertIs(trainer.model, model)
        self.assertIn("NotFoundError", self.errors(trainer.decision)[FUSED])
        self.assertEqual(engine.calls[:2], [FUSED, STEP])  # one warm-up call each

    def test_sole_plan_that_works_keeps_the_old_decision(self):
        model = tiny_builder().compile("float32", seed=0)
        engine = FaultyEngine()
        trainer = self.trainer(engine, model, precision="float32", loop="fused")
        self.assertIsNone(trainer.decision)
        # Tried once, not timed, and its float32 losses checked against the CPU's.
        self.assertEqual(engine.calls, [FUSED, CPU_FUSED])

    def test_the_cpu_is_a_timed_candidate_on_metal(self):
        # Small models often train faster on Apple Silicon's CPU than on its GPU (row 7).
        trainer = self.trainer(FaultyEngine())
        timed = {c.plan.label(): c for c in trainer.decision.candidates}
        self.assertIn(CPU_FUSED, timed)
        self.assertTrue(timed[CPU_FUSED].sound)
        sound = [c for c in trainer.decision.candidates if c.sound]
        self.assertEqual(trainer.plan, min(sound, key=lambda c: c.seconds).plan)

    def test_both_loops_raise_the_cpu_is_chosen(self):
        trainer = self.trainer(FaultyEngine(fails=(FUSED, STEP)))
        self.assertEqual(trainer.plan.placement, HOST)
        self.assertEqual(trainer.plan.label(), CPU_FUSED)
        errors = self.errors(trainer.decision)
        self.assertIn("InternalError: Command buffer", errors[FUSED])
        self.assertIn("InternalError: Command buffer", errors[STEP])
        for v in trainer.model.weights:
            self.assertIn("CPU", v.value.device)
        self.assertEqual(trainer.fit(*classification_data(), epochs=1).plan, trainer.plan)

    def test_on_a_cuda_gpu_the_cpu_is_only_a_fallback(self):
        bf16 = ("mixed_bfloat16 (no XLA, fused)", "mixed_bfloat16 (no XLA, step)")
        engine = FaultyEngine(CUDA, fails={FUSED, STEP, *bf16})
        trainer = self.trainer(engine, precision="auto")
        self.assertEqual(trainer.plan.label(), CPU_FUSED)
        labels = [c.plan.label() for c in trainer.decision.candidates]
        self.assertEqual(labels[-1], CPU_FUSED)  # tried last, once everything else failed
        self.assertEqual(sum(label.endswith("on the CPU") for label in labels), 1)

    def test_every_candidate_fails_in_one_sentence(self):
        with self.assertRaises(RuntimeError) as raised:
            self.trainer(FaultyEngine(fails=LABELS))
        message = str(raised.exception)
        self.assertTrue(message.startswith("Every candidate plan failed: "), message)
        self.assertNotIn("\n", message)
        self.assertEqual(message.count(". "), 0)
        for label in LABELS:
            self.assertIn(f"{label}: InternalError", message)

    def test_a_hang_drops_the_whole_gpu_and_the_cpu_is_tried_at_once(self):
        # A hung command buffer stalls the device's queue: the next GPU plan would hang too.
        engine = FaultyEngine(hangs=(FUSED,), stalls=True)
        with mock.patch.object(trial_runner, "TRIAL_TIME_LIMIT", 5.0), \
                self.assertWarnsRegex(RuntimeWarning, "trial time limit of 5 s"):
            trainer = self.trainer(engine)
        self.assertEqual(trainer.plan.label(), CPU_FUSED)
        errors = self.errors(trainer.decision)
        self.assertEqual(errors[FUSED], "did not finish within 5 s")
        self.assertEqual(errors[STEP], f"dropped: {FUSED} did not finish within 5 s on this "
                                       "device, and a hung device stalls every plan on it")
        self.assertNotIn(STEP, engine.calls)  # never tried: one time limit, not one per plan
        self.assertIsNone(errors[CPU_FUSED])

    def test_a_hang_in_the_timed_rounds_drops_every_gpu_candidate(self):
        # Warmed up fine, then hung in a timed round: the CPU's rounds decide.
        engine = FaultyEngine(hangs=(FUSED,), hang_after=2, stalls=True)
        with mock.patch.object(trial_runner, "TRIAL_TIME_LIMIT", 5.0), \
                self.assertWarnsRegex(RuntimeWarning, "trial time limit of 5 s"):
            trainer = self.trainer(engine)
        self.assertEqual(trainer.plan.label(), CPU_FUSED)
        errors = self.errors(trainer.decision)
        self.assertEqual(errors[FUSED], "did not finish within 5 s")
        self.assertIn("a hung device stalls every plan on it", errors[STEP])
        self.assertGreater(engine.calls.count(FUSED), 2)  # it hung in a timed round
        self.assertEqual(trainer.fit(*classification_data(), epochs=1).epochs_run, 1)


class SilentErrorTest(MetalTestCase):
    def test_wrong_losses_drop_the_gpu_candidate_with_a_warning(self):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer = self.trainer(FaultyEngine(wrong=True))
        self.assertTrue(trainer.plan.on_host, trainer.plan)
        errors = self.errors(trainer.decision)
        self.assertEqual(
            errors[FUSED], "losses disagree with the CPU (Apple developer forum thread 778640)"
        )
        texts = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        self.assertTrue(any(t.startswith(f"{FUSED} dropped:") and "778640" in t for t in texts))

    def test_wrong_float32_losses_drop_every_plan_on_that_device_under_auto(self):
        # Only float32 can be checked against the CPU; a device that gets it wrong is not
        # trusted with mixed precision either (its plans would otherwise win unchecked).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            trainer = self.trainer(FaultyEngine(wrong=True), precision="auto")
        self.assertTrue(trainer.plan.on_host, trainer.plan)
        on_gpu = [c for c in trainer.decision.candidates if not c.plan.on_host]
        self.assertTrue(any(c.plan.precision.value != "float32" for c in on_gpu), on_gpu)
        for c in on_gpu:
            self.assertIn("disagree with the CPU (Apple developer forum thread 778640)", c.error)

    def test_right_losses_keep_the_gpu_candidate(self):
        trainer = self.trainer(FaultyEngine())
        self.assertIsNone(self.errors(trainer.decision)[FUSED])

    def test_device_tensors_reach_numpy_only_through_convert_to_numpy(self):
        trainer = self.trainer(FaultyEngine(device_tensors=True, cpu=False))
        self.assertEqual(trainer.plan.label(), FUSED)
        run = trainer.fit(*classification_data(), epochs=2)
        self.assertTrue(np.isfinite(run.losses).all())
        self.assertTrue(np.isfinite(trainer.train_batch(*classification_data(16)).loss))


class PlainCpuTest(tf.test.TestCase):
    """On this machine's CPU (no injection) nothing new is timed or decided."""

    def test_decisions_look_as_before(self):
        engine = engines.current()
        self.assertIsNone(engine.cpu_placement())
        with QUICK:
            trainer = Trainer(tiny_builder(), config(seed=None))  # XLA on and off are timed
        device = engine.describe_device()
        expected = autotune.plans(trainer.config, engine, device, Precision.FLOAT32)
        self.assertEqual([c.plan for c in trainer.decision.candidates], expected)
        self.assertEqual(trainer.decision.reason, "XLA setting and loop chosen by measurement.")
        for c in trainer.decision.candidates:
            self.assertIsNone(c.error)
            self.assertEqual(c.plan.placement, "one device")
        self.assertNotIn("Failed", trainer.decision.reason)
        self.assertEqual(Decision.from_dict(trainer.decision.to_dict()), trainer.decision)


class ReportTest(MetalTestCase):
    def test_the_report_prints_failed_candidates(self):
        trainer = self.trainer(FaultyEngine(epoch_raises=True, cpu=False))
        run = trainer.fit(*classification_data(), epochs=1)
        out = io.StringIO()
        Reporter(Console(file=out, width=200)).phase_result(run)
        lines = out.getvalue().splitlines()
        failed = [line for line in lines if line.strip().startswith(FUSED)]
        self.assertEqual(len(failed), 1)
        self.assertIn("| failed: NotFoundError: No registered 'TensorListReserve'", failed[0])
        self.assertTrue(
            any(line.strip().startswith(STEP) and "<- chosen" in line for line in lines)
        )
        back = Decision.from_dict(trainer.decision.to_dict())
        self.assertEqual(back, trainer.decision)
        self.assertIn(FUSED, trainer.decision.to_dict()["failed"])


class AnySubsetFailsTest(MetalTestCase):
    @settings(max_examples=6, deadline=None, database=None)
    @given(failing=st.sets(st.sampled_from(LABELS)))
    def test_never_a_failing_plan_and_raises_iff_all_fail(self, failing):
        engine = FaultyEngine(fails=failing)
        try:
            with mock.patch.object(engines, "current", return_value=engine):
                trainer = Trainer(tiny_builder(), config())
        except RuntimeError as error:
            self.assertEqual(failing, set(LABELS), str(error))
            return
        finally:
            engine.release()
        self.assertNotEqual(failing, set(LABELS))
        self.assertNotIn(trainer.plan.label(), failing)
        errors = self.errors(trainer.decision)
        self.assertIsNone(errors[trainer.plan.label()])
        self.assertEqual({label for label, e in errors.items() if e}, failing & set(errors))
