"""Shared state: the global dtype policy, random state and the user's own model are left alone.

Trainers hand policies to layers and never touch Keras' global policy; they
draw seeds without consuming numpy's or Python's global random streams; a user's
`keras.Model` is trained in place but keeps its policy, layers and compile state; automatic
precision trials run on copies; trainers of different precisions live side by side; and a
KeyboardInterrupt during `fit` leaves a usable trainer.
"""

from __future__ import annotations

import math
import random

import keras
import numpy as np
import tensorflow as tf

from gometal_keras.core.config import TrainerConfig
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.training.trainer import Trainer

FEATURES, CLASSES, BATCH = 8, 4, 16
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def builder(dropout: bool = False) -> ModelBuilder:
    b = ModelBuilder([BATCH, FEATURES]).add_dense(32, name="hidden").add_relu(name="act")
    if dropout:
        b.add_dropout(0.2, name="drop")
    return b.add_dense(CLASSES, name="head")


def config(precision: str = "float32", **kw) -> TrainerConfig:
    kw.setdefault("jit_compile", precision == "mixed_float16")  # TF float16 on CPU needs XLA
    if kw["jit_compile"]:  # XLA on a CPU: "auto" would time fused against per-step first
        kw.setdefault("loop", "fused")
    kw.setdefault("seed", 4)
    kw.setdefault("batch_size", BATCH)
    kw.setdefault("learning_rate", 0.01)
    return TrainerConfig(precision=precision, **kw)


def data(samples: int = 8 * BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learnable data: the label is the argmax of the first CLASSES features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, FEATURES)).astype(np.float32)
    return x, np.argmax(x[:, :CLASSES], axis=1).astype(np.int32)


def snapshot(variables) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def user_model(dtype: str | None = None) -> keras.Sequential:
    head = "float32" if dtype and dtype.startswith("mixed_") else dtype
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(32, activation="relu", dtype=dtype, name="u_hidden"),
            keras.layers.Dropout(0.1, dtype=dtype, name="u_drop"),
            keras.layers.Dense(CLASSES, dtype=head, name="u_head"),
        ],
        name="user_model",
    )


class Interrupt(keras.callbacks.Callback):
    def __init__(self, at_epoch: int, when: str = "end"):
        super().__init__()
        self.at_epoch, self.when = at_epoch, when

    def on_epoch_begin(self, epoch, logs=None):
        if self.when == "begin" and epoch == self.at_epoch:
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch, logs=None):
        if self.when == "end" and epoch == self.at_epoch:
            raise KeyboardInterrupt


class SharedStateCase(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        policy = keras.config.dtype_policy()
        self.addCleanup(keras.config.set_dtype_policy, policy)
        self.policy_name = policy.name

    def assert_policy_unchanged(self):
        self.assertEqual(keras.config.dtype_policy().name, self.policy_name)

    def assert_random_untouched(self, action) -> None:
        np_state, py_state = np.random.get_state(), random.getstate()
        action()
        after = np.random.get_state()
        self.assertEqual(np_state[0], after[0])
        self.assertTrue(np.array_equal(np_state[1], after[1]), "numpy's global RNG was used")
        self.assertEqual(np_state[2:], after[2:])
        self.assertTrue(py_state == random.getstate(), "Python's random module state was used")


class GlobalPolicyTest(SharedStateCase):
    def test_an_auto_trainer_leaves_the_global_policy(self):
        # The three fixed precisions: SideBySideTest (their trainers, side by side).
        x, y = data()
        t = Trainer(builder(), config("auto", jit_compile=None))
        self.assert_policy_unchanged()
        t.fit(x, y, epochs=1)
        t.evaluate(x, y)
        t.predict(x[:3])
        self.assert_policy_unchanged()

    def test_a_user_global_policy_is_neither_used_nor_changed(self):
        keras.config.set_dtype_policy("mixed_bfloat16")
        t = Trainer(builder(), config("float32"))
        self.assertEqual(keras.config.dtype_policy().name, "mixed_bfloat16")
        for layer in t.model.layers:
            self.assertEqual(layer.dtype_policy.name, "float32", layer.name)
        t.fit(*data(), epochs=1)
        self.assertEqual(keras.config.dtype_policy().name, "mixed_bfloat16")

    def test_errors_leave_the_global_policy(self):
        x, y = data()
        for precision in PRECISIONS:
            with self.subTest(precision):
                t = Trainer(builder(), config(precision))
                with self.assertRaises(ValueError):
                    t.fit(x[:, :3], y)
                with self.assertRaises(ValueError):
                    t.fit(x[: BATCH - 1], y[: BATCH - 1])
                self.assert_policy_unchanged()
        with self.assertRaises(ValueError):  # a keras.Model whose policy differs from the config
            Trainer(user_model("mixed_bfloat16"), config("float32"))
        self.assert_policy_unchanged()
        t = Trainer(builder(), config("float32"))
        x_bad = x.copy()
        x_bad[0] = 3e38
        with self.assertRaises(FloatingPointError):
            t.fit(x_bad, y)
        self.assert_policy_unchanged()


class InterruptTest(SharedStateCase):
    """A KeyboardInterrupt leaves a usable trainer; no step draws on the global RNGs.

    Each trainer (seeded, and unseeded: a drawn seed) is made, interrupted, resumed and
    stepped with numpy's and Python's global random state checked around every call.
    """

    def check_interrupt(self, precision: str, when: str, seed: int | None) -> None:
        x, y = data()
        made: list[Trainer] = []
        self.assert_random_untouched(
            lambda: made.append(Trainer(builder(dropout=True), config(precision, seed=seed)))
        )
        t = made[0]

        def interrupted():
            with self.assertRaises(KeyboardInterrupt):
                t.fit(x, y, epochs=4, callbacks=[Interrupt(1, when)])

        self.assert_random_untouched(interrupted)
        self.assert_policy_unchanged()
        done = 2 if when == "end" else 1
        self.assertEqual(t.epoch, done)
        weights = snapshot(t.model.trainable_variables)
        for w in weights:
            self.assertTrue(np.isfinite(w).all())
        runs = []
        self.assert_random_untouched(lambda: runs.append(t.fit(x, y, epochs=3)))
        run = runs[0]  # the trainer is still usable
        self.assertLen(run.losses, 3)
        self.assertTrue(all(math.isfinite(v) for v in run.losses))
        self.assertEqual(t.epoch, done + 3)
        self.assertFalse(run.stopped_early)
        self.assertLen(run.epoch_seconds, 3)
        losses = []
        self.assert_random_untouched(
            lambda: losses.append(t.train_batch(x[:BATCH], y[:BATCH]).loss)
        )
        self.assertTrue(math.isfinite(losses[0]))
        self.assert_policy_unchanged()

    def test_interrupt_at_epoch_end(self):
        for precision, seed in (("float32", None), ("mixed_float16", 3), ("mixed_bfloat16", None)):
            with self.subTest(precision, seed=seed):
                self.check_interrupt(precision, "end", seed)

    def test_interrupt_at_epoch_begin(self):
        self.check_interrupt("float32", "begin", 3)


class UserModelTest(SharedStateCase):
    def test_user_model_is_trained_in_place_but_otherwise_unchanged(self):
        model = user_model()
        user_optimizer = keras.optimizers.SGD(0.5)
        model.compile(optimizer=user_optimizer, loss="mse", metrics=["mae"])
        layers = list(model.layers)
        policies = [layer.dtype_policy.name for layer in layers]
        model_policy = model.dtype_policy.name
        weights = snapshot(model.trainable_variables)
        t = Trainer(model, config("float32"))
        self.assertIs(t.model, model)
        t.fit(*data(), epochs=2)
        # Trained in place...
        moved = snapshot(model.trainable_variables)
        self.assertTrue(any(not np.array_equal(a, b) for a, b in zip(weights, moved, strict=True)))
        # ...but its policy, layers and compile state are the user's.
        self.assertEqual(model.dtype_policy.name, model_policy)
        self.assertEqual([layer.dtype_policy.name for layer in model.layers], policies)
        self.assertEqual(len(model.layers), len(layers))
        for a, b in zip(layers, model.layers, strict=True):
            self.assertIs(a, b)
        self.assertTrue(model.compiled)
        self.assertIs(model.optimizer, user_optimizer)
        self.assertEqual(model.loss, "mse")
        self.assertEqual(int(keras.ops.convert_to_numpy(user_optimizer.iterations)), 0)
        self.assertIsNot(t.optimizer, user_optimizer)

    def test_auto_trials_do_not_touch_the_user_model(self):
        model = user_model()
        before = snapshot(model.variables)  # weights and the dropout seed state
        # Unseeded: a seeded run takes the default XLA setting untimed (guarantees.md, 5).
        made: list[Trainer] = []
        self.assert_random_untouched(
            lambda: made.append(Trainer(model, config("auto", jit_compile=None, seed=None)))
        )
        t = made[0]
        self.assertIsNotNone(t.decision)
        self.assertTrue(t.decision.candidates, "no trial ran; the test would prove nothing")
        self.assertIs(t.model, model)
        for a, b in zip(before, snapshot(model.variables), strict=True):
            self.assertTrue(np.array_equal(a, b), "an auto trial changed the user's model")
        self.assertEqual(int(keras.ops.convert_to_numpy(t.optimizer.iterations)), 0)

    def test_auto_keeps_a_user_models_own_precision(self):
        # precision="auto" on a user's model keeps the model's policy: a mixed_float16 model
        # must train with loss scaling whatever the device would choose for a new model.
        for dtype in ("mixed_float16", "mixed_bfloat16", "float32"):
            with self.subTest(dtype):
                model = user_model(dtype)
                t = Trainer(model, config("auto", jit_compile=False))  # loops still timed
                self.assertEqual(t.precision, dtype)
                scaled = isinstance(t.optimizer, keras.optimizers.LossScaleOptimizer)
                self.assertEqual(scaled, dtype == "mixed_float16")
                self.assertTrue(math.isfinite(t.fit(*data(), epochs=1).final_loss))
                self.assert_policy_unchanged()


class SideBySideTest(SharedStateCase):
    def test_interleaved_trainers_of_different_precisions(self):
        x, y = data(16 * BATCH)
        trainers = {}
        for p in PRECISIONS:  # each leaves the global policy as it was, made and used
            trainers[p] = Trainer(builder(), config(p))
            self.assert_policy_unchanged()
        start = {p: t.evaluate(x, y) for p, t in trainers.items()}
        losses: dict[str, list[float]] = {p: [] for p in PRECISIONS}
        for _ in range(4):
            for p, t in trainers.items():
                losses[p] += t.fit(x, y, epochs=1).losses
                t.train_batch(x[:BATCH], y[:BATCH])
        for p, t in trainers.items():
            with self.subTest(p):
                self.assertEqual(t.precision, p)
                compute = "float32" if p == "float32" else p.removeprefix("mixed_")
                self.assertEqual(t.model.get_layer("hidden").compute_dtype, compute)
                self.assertEqual(t.model.get_layer("hidden").variable_dtype, "float32")
                self.assertTrue(all(math.isfinite(v) for v in losses[p]))
                self.assertLess(losses[p][-1], losses[p][0])
                self.assertLess(t.evaluate(x, y), start[p])
                self.assertEqual(t.predict(x[:3]).shape, (3, CLASSES))
        self.assert_policy_unchanged()
