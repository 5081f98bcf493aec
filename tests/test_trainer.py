"""Tests for gometal_keras.training.trainer.Trainer on the TensorFlow backend (small models,
CPU)."""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import Precision
from gometal_keras.data.synthetic import demo_dataset
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.planning import candidates as cands
from gometal_keras.planning.decision import Decision
from gometal_keras.training.record import TrainingRun
from gometal_keras.training.trainer import BatchResult, Trainer

FEATURES, BATCH = 32, 32
POLICIES = tuple(p.value for p in Precision)


def small_builder(dropout: bool = False, softmax: bool = False) -> ModelBuilder:
    b = ModelBuilder([BATCH, FEATURES]).add_dense(32, name="hidden").add_relu(name="act")
    if dropout:
        b.add_dropout(0.2, name="drop")
    b.add_dense(10, name="head")
    if softmax:
        b.add_softmax(name="probs")
    return b


def config(precision: str = "float32", **kw) -> TrainerConfig:
    # float16 on a CPU needs XLA; the others run fastest here without it. Under XLA on a CPU
    # loop="auto" times fused against per-step first (test_shared_state's auto trials do):
    # the loop is fixed here, as XLA is.
    kw.setdefault("jit_compile", precision == "mixed_float16")
    if kw["jit_compile"]:
        kw.setdefault("loop", "fused")
    kw.setdefault("seed", 7)
    kw.setdefault("batch_size", BATCH)
    kw.setdefault("learning_rate", 0.01)
    return TrainerConfig(precision=precision, **kw)


def data(samples: int = 256, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    return demo_dataset(samples=samples, features=FEATURES, seed=seed)


class PolicyGuard(tf.test.TestCase):
    """Restores Keras' global dtype policy even when a test fails."""

    def setUp(self):
        super().setUp()
        self._policy = keras.config.dtype_policy()
        self.addCleanup(keras.config.set_dtype_policy, self._policy)

    def assert_global_policy(self, name: str = "float32"):
        self.assertEqual(keras.config.dtype_policy().name, name)


class PrecisionTest(PolicyGuard):
    def test_dtypes_under_each_precision(self):
        x, _ = data(64)
        for policy in POLICIES:
            with self.subTest(policy=policy):
                trainer = Trainer(small_builder(dropout=True), config(policy))
                self.assertEqual(trainer.precision, policy)
                compute = "float32" if policy == "float32" else policy.split("_")[1]
                by_name = {layer.name: layer for layer in trainer.model.layers}
                for name in ("hidden", "act", "drop"):
                    self.assertEqual(by_name[name].compute_dtype, compute, name)
                self.assertEqual(by_name["head"].compute_dtype, "float32")
                for v in trainer.model.weights:
                    self.assertEqual(v.dtype, "float32", v.path)
                out = trainer.model(x[:4], training=False)
                self.assertEqual(keras.backend.standardize_dtype(out.dtype), "float32")
                self.assert_global_policy()

    def test_softmax_head_runs_in_float32(self):
        trainer = Trainer(small_builder(softmax=True), config("mixed_bfloat16"))
        by_name = {layer.name: layer for layer in trainer.model.layers}
        self.assertEqual(by_name["hidden"].compute_dtype, "bfloat16")
        self.assertEqual(by_name["probs"].compute_dtype, "float32")
        x, y = data(64)
        probs = trainer.predict(x)
        self.assertEqual(probs.dtype, np.float32)
        self.assertAllClose(probs.sum(axis=1), np.ones(len(x)), atol=1e-5)
        # The loss reads probabilities (not logits) from a softmax head.
        expected = keras.losses.SparseCategoricalCrossentropy()(y, probs)
        self.assertAllClose(trainer.evaluate(x, y), float(expected), rtol=1e-5)

    def test_loss_scale_optimizer_only_under_float16(self):
        cfg = config("mixed_float16", initial_loss_scale=1024.0, loss_scale_growth_interval=7)
        trainer = Trainer(small_builder(), cfg)
        opt = trainer.optimizer
        self.assertIsInstance(opt, keras.optimizers.LossScaleOptimizer)
        self.assertEqual(opt.initial_scale, 1024.0)
        self.assertEqual(opt.dynamic_growth_steps, 7)
        self.assertIsInstance(opt.inner_optimizer, keras.optimizers.Adam)
        self.assertAllClose(opt.inner_optimizer.beta_1, 0.9)
        self.assertAllClose(opt.inner_optimizer.beta_2, 0.999)
        default = Trainer(small_builder(), config("mixed_float16")).optimizer
        self.assertEqual(default.initial_scale, 65536.0)
        self.assertEqual(default.dynamic_growth_steps, 2000)
        for policy in ("float32", "mixed_bfloat16"):
            opt = Trainer(small_builder(), config(policy)).optimizer
            self.assertNotIsInstance(opt, keras.optimizers.LossScaleOptimizer, policy)
            self.assertIsInstance(opt, keras.optimizers.Adam, policy)

    def test_use_mixed_precision_means_float16(self):
        cfg = TrainerConfig(
            batch_size=BATCH, use_mixed_precision=True, jit_compile=True, seed=1, loop="fused"
        )
        trainer = Trainer(small_builder(), cfg)
        self.assertEqual(trainer.precision, "mixed_float16")
        self.assertIsInstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)

    def test_mixed_float16_trains_with_finite_decreasing_loss(self):
        x, y = data()
        trainer = Trainer(small_builder(), config("mixed_float16"))
        run = trainer.fit(x, y, epochs=4)
        self.assertEqual(run.precision, "mixed_float16")
        self.assertTrue(all(math.isfinite(v) for v in run.losses))
        self.assertLess(run.losses[-1], run.losses[0])
        self.assert_global_policy()


class GlobalPolicyTest(PolicyGuard):
    def test_unchanged_after_construction_fit_and_failure(self):
        x, y = data(64)
        for policy in POLICIES:
            trainer = Trainer(small_builder(), config(policy))
            self.assert_global_policy()
            trainer.fit(x, y, epochs=1)
            self.assert_global_policy()
        with self.assertRaises(TypeError):
            Trainer("not a model", config("mixed_float16"))
        self.assert_global_policy()
        plain = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(10)])
        with self.assertRaisesRegex(ValueError, "mixed_bfloat16"):
            Trainer(plain, config("mixed_bfloat16"))
        self.assert_global_policy()
        with self.assertRaises(TypeError):
            Trainer(small_builder(), {"batch_size": 32})
        self.assert_global_policy()

    def test_non_default_global_policy_is_kept_and_not_used(self):
        keras.config.set_dtype_policy("mixed_bfloat16")
        trainer = Trainer(small_builder(), config("float32"))
        self.assert_global_policy("mixed_bfloat16")
        self.assertEqual(trainer.precision, "float32")
        for layer in trainer.model.layers:
            self.assertEqual(layer.compute_dtype, "float32", layer.name)
        x, y = data(64)
        trainer.fit(x, y, epochs=1)
        self.assert_global_policy("mixed_bfloat16")

    def test_unbuilt_model_is_rejected(self):
        with self.assertRaisesRegex(ValueError, "not built"):
            Trainer(keras.Sequential([keras.layers.Dense(3)]), config())
        self.assert_global_policy()


class KerasModelTest(PolicyGuard):
    def make_model(self) -> keras.Model:
        keras.utils.set_random_seed(3)
        return keras.Sequential(
            [
                keras.Input((FEATURES,)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dense(10),
            ]
        )

    def test_trained_as_is(self):
        model = self.make_model()
        before = [w.copy() for w in model.get_weights()]
        trainer = Trainer(model, config(precision=None))
        self.assertIs(trainer.model, model)
        self.assertEqual(trainer.precision, "float32")
        x, y = data(128)
        run = trainer.fit(x, y, epochs=3)
        self.assertLess(run.losses[-1], run.losses[0])
        after = model.get_weights()
        self.assertTrue(any(not np.allclose(a, b) for a, b in zip(before, after, strict=True)))
        self.assertAllClose(trainer.predict(x[:8]), model.predict(x[:8], verbose=0))

    def test_explicit_conflicting_precision_raises(self):
        model = self.make_model()
        for bad in ("mixed_float16", "mixed_bfloat16"):
            with self.assertRaisesRegex(ValueError, bad):
                Trainer(model, config(bad))
        with self.assertRaisesRegex(ValueError, "mixed_float16"):
            Trainer(model, TrainerConfig(batch_size=BATCH, use_mixed_precision=True))
        self.assertEqual(Trainer(model, config("float32")).precision, "float32")
        self.assert_global_policy()

    def test_model_built_under_global_mixed_policy(self):
        keras.config.set_dtype_policy("mixed_float16")
        model = self.make_model()
        keras.config.set_dtype_policy("float32")
        trainer = Trainer(model, config("mixed_float16"))
        self.assertIs(trainer.model, model)
        self.assertEqual(trainer.precision, "mixed_float16")
        self.assertIsInstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
        self.assert_global_policy()

    def test_mixed_model_compiled_by_builder_keeps_its_precision(self):
        # ModelBuilder.compile("mixed_float16") gives float16 layers inside a Sequential whose
        # own (container) policy is the global float32. The trainer must see the policy the
        # layers compute under: float16 without loss scaling underflows its gradients.
        model = small_builder().compile("mixed_float16", seed=1)
        self.assertEqual(model.layers[0].compute_dtype, "float16")
        trainer = Trainer(model, TrainerConfig(batch_size=BATCH, jit_compile=True, loop="fused"))
        self.assertEqual(trainer.precision, "mixed_float16")
        self.assertIsInstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
        explicit = Trainer(model, config("mixed_float16"))  # the matching precision is accepted
        self.assertEqual(explicit.precision, "mixed_float16")


class TrainBatchTest(PolicyGuard):
    def test_result_alias_and_learning(self):
        self.assertIs(Trainer.TrainBatch, Trainer.train_batch)
        x, y = data(BATCH)
        trainer = Trainer(small_builder(), config())
        first = trainer.train_batch(x, y)
        self.assertIsInstance(first, BatchResult)
        self.assertIsInstance(first.loss, float)
        self.assertEqual(first.Loss, first.loss)
        self.assertTrue(math.isfinite(first.loss) and first.loss > 0)
        # The loss is the batch's loss before the step: it equals evaluate() on fresh weights.
        fresh = Trainer(small_builder(), config())
        self.assertAllClose(fresh.evaluate(x, y), first.loss, rtol=1e-5)
        losses = [trainer.TrainBatch(x, y).loss for _ in range(15)]
        self.assertLess(losses[-1], 0.75 * first.loss)
        self.assertEqual(int(trainer.optimizer.iterations.numpy()), 16)

    def test_train_batch_under_mixed_float16(self):
        x, y = data(BATCH)
        trainer = Trainer(small_builder(), config("mixed_float16"))
        losses = [trainer.train_batch(x, y).loss for _ in range(10)]
        self.assertTrue(all(math.isfinite(v) for v in losses))
        self.assertLess(losses[-1], losses[0])


class FitTest(PolicyGuard):
    def test_losses_decrease_on_demo_data(self):
        x, y = data(320)
        trainer = Trainer(small_builder(dropout=True), config())
        run = trainer.fit(x, y, epochs=6)
        self.assertIsInstance(run, TrainingRun)
        self.assertEqual(run.epochs_run, 6)
        self.assertEqual(len(run.losses), 6)
        self.assertEqual(len(run.epoch_seconds), 6)
        self.assertFalse(run.stopped_early)
        self.assertEqual(run.precision, "float32")
        self.assertEqual(run.final_loss, run.losses[-1])
        self.assertTrue(all(isinstance(v, float) for v in run.losses))
        self.assertLess(run.losses[-1], 0.6 * run.losses[0])
        drops = sum(b < a for a, b in zip(run.losses, run.losses[1:], strict=False))
        self.assertGreaterEqual(drops, 4)
        self.assertTrue(all(s > 0 for s in run.epoch_seconds))
        self.assertAllClose(run.total_seconds, sum(run.epoch_seconds))
        self.assertEqual(run.device, trainer.device.describe())
        self.assertIsNone(run.decision)
        self.assertIs(run.plan, trainer.plan)
        xla = "XLA" if trainer.plan.xla else "no XLA"
        self.assertIn(f"({xla}", run.loop)

    def test_full_batches_only(self):
        x, y = data(BATCH * 2 + 6)
        trainer = Trainer(small_builder(), config(optimizer="sgd"))
        trainer.fit(x, y, epochs=3)
        self.assertEqual(int(trainer.optimizer.iterations.numpy()), 2 * 3)
        with self.assertRaisesRegex(ValueError, "full batch"):
            trainer.fit(x[: BATCH - 1], y[: BATCH - 1])
        for bad in (0, -1, 1.5, True):
            with self.assertRaisesRegex(ValueError, "epochs"):
                trainer.fit(x, y, epochs=bad)

    def test_early_stop_loss(self):
        x, y = data()
        full = Trainer(small_builder(), config()).fit(x, y, epochs=5)
        self.assertLess(full.losses[2], full.losses[1])
        threshold = (full.losses[1] + full.losses[2]) / 2
        run = Trainer(small_builder(), config()).fit(x, y, epochs=5, early_stop_loss=threshold)
        self.assertEqual(run.epochs_run, 3)
        self.assertTrue(run.stopped_early)
        self.assertEqual(run.losses, full.losses[:3])
        self.assertLess(run.final_loss, threshold)
        # Reaching the threshold in the very last epoch is not an early stop.
        last = Trainer(small_builder(), config()).fit(x, y, epochs=3, early_stop_loss=threshold)
        self.assertEqual(last.epochs_run, 3)
        self.assertFalse(last.stopped_early)

    def test_validation_data(self):
        x, y = data(192)
        xv, yv = data(64, seed=9)
        trainer = Trainer(small_builder(dropout=True), config())
        run = trainer.fit(x, y, epochs=3, validation_data=(xv, yv))
        self.assertEqual(len(run.val_losses), 3)
        self.assertTrue(all(math.isfinite(v) and v > 0 for v in run.val_losses))
        self.assertLess(run.val_losses[-1], run.val_losses[0])
        self.assertAllClose(run.val_losses[-1], trainer.evaluate(xv, yv), rtol=1e-5)
        self.assertEqual(trainer.fit(x, y, epochs=1).val_losses, [])

    def test_callbacks_see_epochs_and_can_stop(self):
        class Recorder(keras.callbacks.Callback):
            def __init__(self, stop_after=None):
                super().__init__()
                self.stop_after, self.seen, self.events = stop_after, [], []

            def on_train_begin(self, logs=None):
                self.events.append("train_begin")

            def on_epoch_end(self, epoch, logs=None):
                self.seen.append((epoch, dict(logs)))
                if self.stop_after is not None and epoch + 1 >= self.stop_after:
                    self.model.stop_training = True

            def on_train_end(self, logs=None):
                self.events.append("train_end")

        x, y = data()
        rec = Recorder(stop_after=2)
        trainer = Trainer(small_builder(), config())
        run = trainer.fit(x, y, epochs=5, callbacks=[rec])
        self.assertEqual(run.epochs_run, 2)
        self.assertTrue(run.stopped_early)
        self.assertEqual([e for e, _ in rec.seen], [0, 1])
        self.assertEqual(rec.events, ["train_begin", "train_end"])
        # Callbacks see the trained model through a view whose optimizer is the trainer's.
        self.assertIs(rec.model.model, trainer.model)
        self.assertIs(rec.model.optimizer, trainer.optimizer)
        for (_, logs), loss in zip(rec.seen, run.losses, strict=True):
            self.assertAllClose(logs["loss"], loss)
        # stop_training is reset: the next fit runs all its epochs.
        again = Recorder()
        self.assertEqual(trainer.fit(x, y, epochs=3, callbacks=[again]).epochs_run, 3)
        self.assertEqual(len(again.seen), 3)

    def test_same_seed_same_losses(self):
        x, y = data()
        a = Trainer(small_builder(dropout=True), config(seed=11)).fit(x, y, epochs=3)
        b = Trainer(small_builder(dropout=True), config(seed=11)).fit(x, y, epochs=3)
        self.assertEqual(a.losses, b.losses)
        c = Trainer(small_builder(dropout=True), config(seed=12)).fit(x, y, epochs=3)
        self.assertNotEqual(a.losses, c.losses)

    def test_two_precisions_side_by_side(self):
        x, y = data()
        t32 = Trainer(small_builder(), config("float32"))
        t16 = Trainer(small_builder(), config("mixed_bfloat16"))
        runs = {"float32": [], "mixed_bfloat16": []}
        for _ in range(2):  # interleaved: neither trainer disturbs the other
            runs["float32"] += t32.fit(x, y, epochs=2).losses
            runs["mixed_bfloat16"] += t16.fit(x, y, epochs=2).losses
        for name, losses in runs.items():
            self.assertTrue(all(math.isfinite(v) for v in losses), name)
            self.assertLess(losses[-1], losses[0], name)
        self.assertEqual(t32.model.layers[0].compute_dtype, "float32")
        self.assertEqual(t16.model.layers[0].compute_dtype, "bfloat16")
        self.assert_global_policy()


class InferenceTest(PolicyGuard):
    def test_predict_and_evaluate(self):
        x, y = data(70)  # not a multiple of the batch: every sample is predicted
        for policy in POLICIES:
            with self.subTest(policy=policy):
                trainer = Trainer(small_builder(dropout=True), config(policy))
                out = trainer.predict(x)
                self.assertEqual(out.shape, (70, 10))
                self.assertEqual(out.dtype, np.float32)
                self.assertIs(Trainer.Predict, Trainer.predict)
                self.assertAllClose(trainer.InferBatch(x[:5]), out[:5], rtol=1e-3, atol=1e-3)
                loss = trainer.evaluate(x, y)
                self.assertIsInstance(loss, float)
                want = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, out)
                self.assertAllClose(loss, float(want), rtol=1e-4)

    def test_bad_inputs_raise_before_training(self):
        x, y = data(64)
        trainer = Trainer(small_builder(), config())
        before = [w.copy() for w in trainer.model.get_weights()]
        with self.assertRaisesRegex(ValueError, "shape"):
            trainer.fit(x[:, :5], y)
        with self.assertRaisesRegex(ValueError, "class indices"):
            trainer.train_batch(x[:BATCH], np.full(BATCH, 10))
        with self.assertRaisesRegex(ValueError, "samples"):
            trainer.fit(x, y[:10])
        for a, b in zip(before, trainer.model.get_weights(), strict=True):
            self.assertAllEqual(a, b)


class AutoPrecisionTest(PolicyGuard):
    def test_auto_records_a_decision(self):
        x, y = data(128)
        cfg = TrainerConfig(batch_size=BATCH, precision="auto", seed=5)
        trainer = Trainer(small_builder(), cfg)
        self.assertIn(trainer.precision, POLICIES)
        decision = trainer.decision
        self.assertIsInstance(decision, Decision)
        # The decision's plan is the plan the program runs, and nothing else holds a copy.
        self.assertEqual(decision.chosen, trainer.plan)
        self.assertIn(trainer.precision.value, decision.reason)
        pool = cands.candidates(trainer.device)
        self.assertIn(trainer.precision, pool)
        timed = {c.plan for c in decision.candidates}
        if decision.candidates:
            self.assertIn(decision.chosen, timed)
            self.assertTrue(all(c.plan.precision in pool for c in decision.candidates))
            sound = [c for c in decision.candidates if c.sound]
            fastest_of_chosen = min(
                (c for c in sound if c.plan.precision is trainer.precision),
                key=lambda c: c.seconds,
            )
            self.assertEqual(fastest_of_chosen.plan, trainer.plan)
        if len(pool) > 1:  # every precision the device runs fast was timed
            self.assertEqual({c.plan.precision for c in decision.candidates}, set(pool))
        self.assertEqual(dict(decision.skipped), cands.rejected(trainer.device))
        run = trainer.fit(x, y, epochs=2)
        self.assertIs(run.decision, decision)
        self.assertEqual(run.plan, trainer.plan)
        self.assertEqual(run.precision, trainer.precision)
        self.assertTrue(all(math.isfinite(v) for v in run.losses))
        self.assert_global_policy()
