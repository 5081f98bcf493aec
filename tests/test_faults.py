"""Numeric faults: loss-scale back-off under mixed_float16, and the float32 non-finite stop.

Under mixed_float16 a step whose activations overflow float16 is skipped by
the `LossScaleOptimizer`, which halves its scale and doubles it again after
`loss_scale_growth_interval` finite steps. In float32 a non-finite loss stops `fit` with a
`FloatingPointError` naming the epoch and step, and the model keeps the weights of the last
finite step: exactly those of a run that never saw the bad batch.
"""

from __future__ import annotations

import math
from unittest import mock

import keras
import numpy as np
import tensorflow as tf

from gometal_keras.core.config import TrainerConfig
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.training import loop as loop_module
from gometal_keras.training.trainer import Trainer

FEATURES, CLASSES, BATCH = 8, 4, 16
#: Finite in float32, but a Dense layer's sums of such inputs overflow to inf: loss NaN.
HUGE = 3e38


def builder(batchnorm: bool = False) -> ModelBuilder:
    b = ModelBuilder([BATCH, FEATURES]).add_dense(16, name="hidden")
    if batchnorm:
        b.add_batchnorm(name="norm")
    return b.add_relu(name="act").add_dense(CLASSES, name="head")


def data(samples: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, FEATURES)).astype(np.float32)
    return x, rng.integers(0, CLASSES, samples).astype(np.int32)


def snapshot(variables) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def scale_of(trainer: Trainer) -> float:
    return float(keras.ops.convert_to_numpy(trainer.optimizer.dynamic_scale))


class LossScaleTest(tf.test.TestCase):
    """mixed_float16 (XLA: TF's float16 CPU kernels need it): overflow skipped, scale backs off."""

    def trainer(self, **kw) -> Trainer:
        kw.setdefault("loss_scale_growth_interval", 3)
        kw.setdefault("loop", "fused")  # XLA on a CPU: "auto" would time fused and per-step
        cfg = TrainerConfig(
            precision="mixed_float16",
            jit_compile=True,
            seed=3,
            batch_size=BATCH,
            learning_rate=0.01,
            **kw,
        )
        return Trainer(builder(), cfg)

    def test_overflow_step_is_skipped_and_scale_halves_then_grows(self):
        t = self.trainer()
        self.assertIsInstance(t.optimizer, keras.optimizers.LossScaleOptimizer)
        x, y = data(BATCH)
        start = scale_of(t)
        self.assertTrue(math.isfinite(t.train_batch(x, y).loss))  # finite step 1
        self.assertEqual(scale_of(t), start)
        before = snapshot(t.model.variables)
        bad = t.train_batch(x * 1e6, y)  # float16 activations overflow
        self.assertFalse(math.isfinite(bad.loss))
        for old, new in zip(before, snapshot(t.model.variables), strict=True):
            self.assertAllEqual(old, new)  # the overflowing step changed nothing
            self.assertTrue(np.isfinite(new).all())
        self.assertEqual(scale_of(t), start / 2)
        # The growth counter restarts at the overflow: 2 finite steps keep the scale...
        for _ in range(2):
            self.assertTrue(math.isfinite(t.train_batch(x, y).loss))
            self.assertEqual(scale_of(t), start / 2)
        moved = snapshot(t.model.trainable_variables)
        # ...and the 3rd (the growth interval) doubles it again.
        self.assertTrue(math.isfinite(t.train_batch(x, y).loss))
        self.assertEqual(scale_of(t), start)
        # Training continued: finite steps after the overflow updated the weights.
        changed = [
            not np.array_equal(a, b)
            for a, b in zip(moved, snapshot(t.model.trainable_variables), strict=True)
        ]
        self.assertTrue(any(changed))

    def test_overflow_keeps_batchnorm_statistics_finite(self):
        # A skipped step must not leave its traces in non-trainable state either: the
        # BatchNorm moving mean/variance of an overflowing batch are inf/NaN.
        cfg = TrainerConfig(
            precision="mixed_float16",
            jit_compile=True,
            loop="fused",
            seed=3,
            batch_size=BATCH,
            loss_scale_growth_interval=3,
        )
        t = Trainer(builder(batchnorm=True), cfg)
        x, y = data(BATCH)
        t.train_batch(x, y)
        before = snapshot(t.model.variables)
        start = scale_of(t)
        self.assertFalse(math.isfinite(t.train_batch(x * 1e6, y).loss))
        self.assertEqual(scale_of(t), start / 2)
        for var, old, new in zip(
            t.model.variables, before, snapshot(t.model.variables), strict=True
        ):
            self.assertTrue(np.isfinite(new).all(), f"{var.path} is not finite after a skip")
            self.assertTrue(np.array_equal(old, new), f"{var.path} changed by a skipped step")
        self.assertTrue(np.isfinite(t.predict(x)).all())

    def test_fit_skips_an_overflowing_batch_and_keeps_training(self):
        t = self.trainer(loss_scale_growth_interval=1000)
        x, y = data(8 * BATCH)
        x[3 * BATCH : 4 * BATCH] *= 1e6  # batch 4 of every epoch overflows in float16
        start = scale_of(t)
        run = t.fit(x, y, epochs=3)  # no error: the loss scaler handles it
        self.assertLen(run.losses, 3)
        self.assertTrue(all(math.isfinite(v) for v in run.losses))
        for v in snapshot(t.model.variables):
            self.assertTrue(np.isfinite(v).all())
        self.assertLess(scale_of(t), start)  # backed off once per epoch
        self.assertEqual(scale_of(t), start / 2**3)
        clean_x, clean_y = data(4 * BATCH, seed=1)
        before = t.evaluate(clean_x, clean_y)
        t.fit(clean_x, clean_y, epochs=5)
        self.assertLess(t.evaluate(clean_x, clean_y), before)  # it still learns


class Float32NonFiniteTest(tf.test.TestCase):
    """float32: a NaN loss stops fit naming epoch and step; the last finite weights are kept."""

    def make(self, loop: str, jit: bool, batchnorm: bool = False) -> Trainer:
        cfg = TrainerConfig(
            precision="float32",
            jit_compile=jit,
            loop=loop,
            seed=11,
            batch_size=BATCH,
            learning_rate=0.01,
        )
        return Trainer(builder(batchnorm), cfg)

    def check_stop(self, loop: str, jit: bool, batchnorm: bool = False) -> None:
        first_x, first_y = data(4 * BATCH, seed=1)
        x, y = data(6 * BATCH, seed=2)
        x[2 * BATCH] = HUGE  # one sample of batch 3: the whole batch's loss becomes NaN
        faulty, reference = self.make(loop, jit, batchnorm), self.make(loop, jit, batchnorm)
        faulty.fit(first_x, first_y, epochs=1)
        with self.assertRaisesRegex(FloatingPointError, r"epoch 2, step 3\b"):
            faulty.fit(x, y, epochs=2)
        # The reference never sees the bad batch: epoch 1, then batches 1-2 of epoch 2.
        reference.fit(first_x, first_y, epochs=1)
        reference.fit(x[: 2 * BATCH], y[: 2 * BATCH], epochs=1)
        self.assert_same(faulty.model.weights, reference.model.weights, "model")
        self.assert_same(faulty.optimizer.variables, reference.optimizer.variables, "optimizer")
        self.assertEqual(faulty.epoch, 1)  # the failed epoch is not counted as completed

    def assert_same(self, got_vars, want_vars, what: str) -> None:
        got, want = snapshot(got_vars), snapshot(want_vars)
        self.assertEqual(len(got), len(want))
        for var, a, b in zip(got_vars, got, want, strict=True):
            finite = bool(np.isfinite(a).all()) if a.dtype.kind == "f" else True
            self.assertTrue(finite, f"{what} {var.path} is not finite after the stop")
            self.assertTrue(
                np.array_equal(a, b),
                f"{what} {var.path} differs from the last finite step's value "
                f"(max |diff| {np.max(np.abs(a.astype(np.float64) - b)):.3g})",
            )

    def test_fused_no_xla(self):
        self.check_stop("fused", jit=False)

    def test_fused_xla(self):
        self.check_stop("fused", jit=True)

    def test_step_no_xla(self):
        # One device call per step: steps after the bad one must not update either.
        self.check_stop("step", jit=False)

    def test_step_xla(self):
        self.check_stop("step", jit=True)

    def test_fused_in_chunks(self):
        # Data larger than the device share runs a few batches per call; a chunk after the
        # bad one must not update the weights either.
        with mock.patch.object(loop_module, "DEVICE_SHARE", 1e-12):
            self.check_stop("fused", jit=False)

    def test_batchnorm_moving_statistics_are_kept(self):
        # The moving mean/variance are model state: the bad batch must not poison them.
        self.check_stop("fused", jit=False, batchnorm=True)

    def test_train_batch_raises_and_leaves_weights_and_optimizer(self):
        t = self.make("fused", jit=False)
        x, y = data(BATCH)
        t.train_batch(x, y)
        weights, opt = snapshot(t.model.variables), snapshot(t.optimizer.variables)
        x[0] = HUGE
        with self.assertRaisesRegex(FloatingPointError, "non-finite.*skipped"):
            t.train_batch(x, y)
        for a, b in zip(weights, snapshot(t.model.variables), strict=True):
            self.assertAllEqual(a, b)
        for a, b in zip(opt, snapshot(t.optimizer.variables), strict=True):
            self.assertAllEqual(a, b)
        self.assertTrue(math.isfinite(t.train_batch(*data(BATCH, seed=5)).loss))  # usable
