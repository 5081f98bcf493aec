"""The numeric promises of docs/guarantees.md under attack.

Classes 1 (the guard covers gradients and new weights), 2 (a loss-scaler skip is a full
skip), 3 (config values checked as the float32 the device holds), 5 (Keras' global state
does not leak in), 6 (a seed fixes the XLA choice) and 7 (Ctrl-C inside a fused epoch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import tempfile
from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gometal_keras import engines
from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import Precision
from gometal_keras.core.seeds import SEED_MAX
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.planning import autotune
from gometal_keras.training.loop import TrainingLoop
from gometal_keras.training.trainer import Trainer

FEW = settings(max_examples=8, deadline=None)
F32 = np.finfo(np.float32)


def values(variables) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def everything(t: Trainer) -> list[np.ndarray]:
    return values(t.model.variables) + values(t.optimizer.variables)


def small(**kw) -> TrainerConfig:
    """A float32, no-XLA, seeded config of batch 8 with `kw` changed."""
    return TrainerConfig(
        **{"batch_size": 8, "precision": "float32", "jit_compile": False, "seed": 1, **kw}
    )


def regression(optimizer: str, loss: str, loop: str = "fused") -> Trainer:
    cfg = small(problem_type="regression", loss=loss, optimizer=optimizer, loop=loop)
    return Trainer(ModelBuilder([8, 4]).add_dense(1), cfg)


class GuardCoversUpdateTest(tf.test.TestCase):
    """Class 1: finite loss, overflowing gradients or weights: the step is not committed."""

    @FEW
    @given(
        exponent=st.integers(12, 37),
        bad_batch=st.integers(0, 2),
        optimizer=st.sampled_from(["sgd", "adam"]),
        loss=st.sampled_from(["mse", "mae", "huber"]),
        loop=st.sampled_from(["fused", "step"]),
    )
    def test_large_inputs_never_leave_non_finite_state(
        self, exponent, bad_batch, optimizer, loss, loop
    ):
        rng = np.random.default_rng(exponent)
        x = rng.normal(size=(24, 4)).astype(np.float32)
        x[bad_batch * 8 : bad_batch * 8 + 8] *= np.float32(10.0**exponent)
        y = rng.normal(size=24).astype(np.float32)
        t = regression(optimizer, loss, loop)
        try:
            t.fit(x, y, epochs=1)
            failed_at = None
        except FloatingPointError as err:
            failed_at = int(re.search(r"step (\d+)", str(err)).group(1)) - 1
        state = everything(t)
        self.assertTrue(all(np.isfinite(v).all() for v in state if v.dtype.kind == "f"))
        if failed_at is not None:  # oracle: a trainer that only saw the batches before
            ref = regression(optimizer, loss, loop)
            for i in range(failed_at):
                ref.train_batch(x[i * 8 : i * 8 + 8], y[i * 8 : i * 8 + 8])
            for got, want in zip(state, everything(ref), strict=True):
                self.assertAllEqual(got, want)

    def test_issue_example_dense_with_inputs_near_1e22(self):
        t = regression("sgd", "mse")
        before = everything(t)
        with self.assertRaisesRegex(FloatingPointError, "gradients or new weights"):
            t.fit(np.full((16, 4), 1e22, np.float32), np.zeros(16, np.float32))
        for got, want in zip(everything(t), before, strict=True):
            self.assertAllEqual(got, want)


class SkippedStepTest(tf.test.TestCase):
    """Class 2: a float16 step the loss scaler skips leaves BatchNorm and Dropout state."""

    def test_skipped_step_moves_no_variable(self):
        b = (
            ModelBuilder([16, 8])
            .add_dense(16)
            .add_batchnorm()
            .add_relu()
            .add_dropout(0.5)
            .add_dense(4)
        )
        cfg = TrainerConfig(
            batch_size=16,
            precision="mixed_float16",
            jit_compile=False,  # a tiny model: TF's slow float16 CPU kernels cost little
            seed=2,
            initial_loss_scale=1e38,
        )  # the first step's float16 gradients overflow
        t = Trainer(b, cfg)
        before = values(t.model.variables)
        x = np.random.default_rng(0).normal(size=(16, 8)).astype(np.float32)
        loss = t.train_batch(x, np.arange(16) % 4).loss
        self.assertTrue(np.isfinite(loss))  # the loss is finite: only the gradients overflow
        scale = keras.ops.convert_to_numpy(t.optimizer.dynamic_scale)
        self.assertEqual(scale, np.float32(1e38) / 2)  # halved: the step was skipped
        for got, want in zip(values(t.model.variables), before, strict=True):
            self.assertAllEqual(got, want)


#: Every real setting of TrainerConfig: (low, high, low_open, high_open), as documented.
BOUNDS = {
    "learning_rate": (0.0, math.inf, True, True),
    "epsilon": (0.0, math.inf, True, True),
    "initial_loss_scale": (0.0, math.inf, True, True),
    "beta1": (0.0, 1.0, False, True),
    "beta2": (0.0, 1.0, False, True),
    "momentum": (0.0, 1.0, False, True),
    "alpha": (0.0, 1.0, False, True),
    "lr_factor": (0.0, 1.0, False, True),
    "lr_gamma": (0.0, 1.0, False, False),
    "weight_decay": (0.0, math.inf, False, True),
    "lr_eta_min": (0.0, math.inf, False, True),
    "lr_min": (0.0, math.inf, False, True),
    "lr_threshold": (0.0, math.inf, False, True),
}
#: The config that makes each field reach Keras (an optimizer reading it, a schedule).
USES = {
    "learning_rate": {"optimizer": "sgd"},
    "epsilon": {"optimizer": "adam"},
    "initial_loss_scale": {"precision": "mixed_float16"},
    "beta1": {"optimizer": "nadam"},
    "beta2": {"optimizer": "adam"},
    "momentum": {"optimizer": "sgd"},
    "alpha": {"optimizer": "rmsprop", "momentum": 0.5},
    "lr_factor": {"lr_schedule": "plateau", "lr_patience": 1},
    "lr_gamma": {"lr_schedule": "exponential"},
    "weight_decay": {"optimizer": "adamw"},
    "lr_eta_min": {"lr_schedule": "cosine", "lr_t_max": 2},
    "lr_min": {"lr_schedule": "plateau", "lr_patience": 1},
    "lr_threshold": {"lr_schedule": "plateau", "lr_patience": 1},
}
EXTREME = st.sampled_from(
    [
        1e-46,
        1e-40,
        -1e-40,
        -1e-46,
        1e-39,
        float(F32.tiny),
        -float(F32.tiny),
        3.4e38,
        float(F32.max),
        3.5e38,
        1e39,
        -1e39,
        2**64,
        2**128,
        -(2**128),
        10**400,
        -(10**400),
        1 - 1e-9,
        0.9999999,
        0.99999994,
        1 + 1e-9,
        0,
        1,
        -0.0,
        np.float32(1e-40),
        np.float64(-1e-40),
    ]
)
#: The class of real values: edges, any float (NaN, ±inf, subnormals), ints of any size,
#: numpy scalars.
REALS = st.one_of(
    EXTREME,
    st.floats(),
    st.floats(-2.0, 2.0),
    st.integers(-(2**140), 2**140),
    st.integers(-2, 2),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-2, 2)),
)


def near_bounds(field: str) -> st.SearchStrategy:
    """Values just inside and just outside `field`'s bounds, as given and as float32:
    negative subnormals (float32 flushes them to -0.0), values that round onto 1.0 or
    past float32's max."""
    low, high = BOUNDS[field][:2]
    below = [low - d for d in (1e-40, 1e-45, 5e-324, 1e-38)] + [low, low + 1e-40]
    above = [high, 1 - 1e-9, 0.99999994, 1 + 1e-9] if high == 1 else [3.4e38, 3.41e38, 1e39]
    return st.sampled_from(below + above)


def device_float32(value) -> float:
    """`value` as the device's float32 (the documented rule): inf above float32's max,
    0 below its normal range (subnormals flush), else numpy's nearest float32."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf if value > 0 else -math.inf
    if math.isnan(number) or abs(number) > float(F32.max):
        return number if math.isnan(number) else math.copysign(math.inf, number)
    return 0.0 if abs(number) < float(F32.tiny) else float(np.float32(number))


def valid(field: str, value) -> bool:
    """The oracle: in range as given and as the device's float32, both finite."""
    low, high, low_open, high_open = BOUNDS[field]
    try:
        given = float(value)
    except OverflowError:
        given = math.inf if value > 0 else -math.inf
    for n in (given, device_float32(value)):
        if not math.isfinite(n) or (n <= low if low_open else n < low):
            return False
        if n >= high if high_open else n > high:
            return False
    return True


class Float32ConfigTest(tf.test.TestCase):
    """Class 3: a config value is accepted only if it is in range as given and as its float32,
    and every config accepted builds a Trainer whose optimizer and schedule take it."""

    def test_every_real_field_is_covered(self):
        reals = {f.name for f in dataclasses.fields(TrainerConfig) if f.type == "float"}
        self.assertEqual(set(BOUNDS), reals)

    @settings(max_examples=80, deadline=None)
    @given(
        case=st.sampled_from(sorted(BOUNDS)).flatmap(
            lambda field: st.tuples(st.just(field), near_bounds(field) | REALS)
        )
    )
    def test_accepted_exactly_when_in_range_as_given_and_as_float32(self, case):
        field, value = case
        kw = {"batch_size": 8, "precision": "float32", "jit_compile": False, "seed": 1}
        kw |= {"loop": "fused", **USES[field], field: value}
        try:
            cfg = TrainerConfig(**kw)
        except (TypeError, ValueError) as err:
            self.assertFalse(valid(field, value), f"{field}={value!r} was refused: {err}")
            self.assertIn(f"TrainerConfig.{field}", str(err))
            self.assertNotIn("\n", str(err))
            return
        self.assertTrue(valid(field, value), f"{field}={value!r} was accepted")
        event("accepted")
        self.assertIs(type(getattr(cfg, field)), float)  # what Keras' optimizers require
        t = Trainer(ModelBuilder([8, 4]).add_dense(3), cfg)  # Keras checks its optimizer here
        if t.schedule is not None:  # the schedule's rates reach the optimizer each epoch
            for epoch in range(3):
                t.schedule.on_epoch_begin(epoch)
                t.schedule.on_epoch_end(epoch, {"loss": 1.0})
            rate = float(keras.ops.convert_to_numpy(t.optimizer.learning_rate))
            self.assertTrue(math.isfinite(rate) and rate >= 0, f"{field}={value!r}: rate {rate}")

    def test_issue_examples(self):
        for field, value in (
            ("initial_loss_scale", 1e-40),
            ("initial_loss_scale", 1e39),
            ("seed", 2**64),
            ("beta1", 1 - 1e-9),
            ("learning_rate", 1e39),
            ("momentum", -1e-40),  # float32 flushes it to -0.0, but it is below 0 as given
            ("lr_min", -1e-45),
            ("beta2", 10**400),
        ):
            with self.subTest(field=field), self.assertRaisesRegex(ValueError, field):
                TrainerConfig(**{field: value})
        sgd = TrainerConfig(optimizer="sgd", momentum=0, precision="float32", jit_compile=False)
        self.assertEqual(repr(sgd.momentum), "0.0")  # an int reaches Keras as a float
        Trainer(ModelBuilder([32, 4]).add_dense(3), sgd)

    @FEW
    @given(
        lr=st.sampled_from([float(F32.tiny), 1e-30, 1e30, 3.4e38]),
        seed=st.sampled_from([0, SEED_MAX]),
    )
    def test_accepted_extremes_train_or_stop_cleanly(self, lr, seed):
        cfg = small(optimizer="sgd", learning_rate=lr, seed=seed)
        t = Trainer(ModelBuilder([8, 4]).add_dense(3), cfg)
        x = np.random.default_rng(0).normal(size=(8, 4))
        with contextlib.suppress(FloatingPointError):
            t.train_batch(x, np.arange(8) % 3)
        self.assertTrue(all(np.isfinite(v).all() for v in values(t.model.variables)))


class GlobalStateTest(tf.test.TestCase):
    """Class 5: the trainer's precision comes from its plan, whatever Keras' globals hold."""

    def tearDown(self):
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")

    def run_float32(self) -> list[float]:
        cfg = TrainerConfig(batch_size=16, precision="float32", jit_compile=False, seed=0)
        t = Trainer(ModelBuilder([16, 8]).add_dense(8).add_relu().add_dense(4), cfg)
        x = np.random.default_rng(0).normal(size=(48, 8))
        return t.fit(x, np.arange(48) % 4, epochs=2).losses

    def test_floatx_does_not_reach_a_float32_trainer(self):
        reference = self.run_float32()
        for floatx in ("float16", "float64"):
            with self.subTest(floatx=floatx):
                keras.config.set_floatx(floatx)
                self.assertEqual(self.run_float32(), reference)
                self.assertEqual(keras.config.floatx(), floatx)

    def test_global_mixed_policy(self):
        cfg = TrainerConfig(batch_size=8, precision="float32", jit_compile=False, seed=0)
        t = Trainer(ModelBuilder([8, 4]).add_dense(2), cfg)
        path = os.path.join(tempfile.mkdtemp(), "run.gmk")
        t.save(path)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        keras.config.set_dtype_policy("mixed_float16")
        self.assertEqual(Trainer.load(path).plan.precision, Precision.FLOAT32)
        mine = Trainer(model, TrainerConfig(batch_size=8, jit_compile=False, seed=0))
        self.assertEqual(mine.plan.precision, Precision.FLOAT32)
        self.assertTrue(mine.plan.guard)
        self.assertIsNone(mine.plan.loss_scaling)


class SeedFixesXlaTest(tf.test.TestCase):
    """Class 6: with a seed and jit_compile=None, the XLA choice is replayed from the decision
    cache (tests/test_auto_cache.py), or, without trials, the engine's default."""

    def test_seeded_plans_offer_one_xla_setting(self):
        engine = engines.current()
        device = engine.describe_device()
        for precision in Precision:
            config = TrainerConfig(seed=3, decision_cache="never")
            seeded = autotune.plans(config, engine, device, precision)
            self.assertLen({p.xla for p in seeded}, 1)
            self.assertEqual(seeded[0].xla, engine.jit_options(device, precision)[0])

    def test_same_seed_same_run_with_dropout(self):
        def run() -> list[float]:
            b = ModelBuilder([16, 8]).add_dense(16).add_dropout(0.5).add_dense(4)
            t = Trainer(b, TrainerConfig(batch_size=16, precision="float32", seed=4))
            x = np.random.default_rng(1).normal(size=(32, 8))
            return [*t.fit(x, np.arange(32) % 4, epochs=2).losses, t.plan.xla]

        self.assertEqual(run(), run())


class InterruptedEpochTest(tf.test.TestCase):
    """Class 7: Ctrl-C arriving as a fused epoch returns rolls that epoch back."""

    def test_interrupted_epoch_is_rolled_back_and_resumes_exactly(self):
        x = np.random.default_rng(2).normal(size=(32, 8)).astype(np.float32)
        y = np.arange(32) % 4

        def trainer() -> Trainer:
            b = ModelBuilder([16, 8]).add_dense(16).add_dropout(0.3).add_dense(4)
            return Trainer(
                b, TrainerConfig(batch_size=16, precision="float32", jit_compile=False, seed=5)
            )

        unbroken = trainer()
        unbroken.fit(x, y, epochs=1)
        after_one = everything(unbroken)
        unbroken.fit(x, y, epochs=1)
        t = trainer()
        t.fit(x, y, epochs=1)
        real = TrainingLoop.run_epoch

        def interrupted(loop, data, *epoch):
            real(loop, data, *epoch)  # the device call finished: its updates are in
            raise KeyboardInterrupt

        with (
            mock.patch.object(TrainingLoop, "run_epoch", interrupted),
            self.assertRaises(KeyboardInterrupt),
        ):
            t.fit(x, y, epochs=1)
        self.assertEqual(t.epoch, 1)
        for got, want in zip(everything(t), after_one, strict=True):
            self.assertAllEqual(got, want)
        path = os.path.join(tempfile.mkdtemp(), "run.gmk")
        t.save(path)
        resumed = Trainer.load(path)
        resumed.fit(x, y, epochs=1)
        for got, want in zip(everything(resumed), everything(unbroken), strict=True):
            self.assertAllEqual(got, want)
