"""Tests for gometal_keras.training.timing.EpochTimer against deliberately slow steps."""

from __future__ import annotations

import math
import time
from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from helpers import classification_data

from gometal_keras import engines
from gometal_keras.core.config import TrainerConfig
from gometal_keras.training.timing import EpochTimer
from gometal_keras.training.trainer import Trainer

SLEEP = 0.2
FEATURES, BATCH = 8, 8


def data(steps: int = 2):
    return classification_data(steps * BATCH, FEATURES, classes=3)


def tiny_model(slow: float = 0.0) -> keras.Model:
    """A small classifier; with `slow`, every forward pass sleeps that long on the host."""
    layers = [keras.Input((FEATURES,)), keras.layers.Dense(8, activation="relu")]
    if slow:
        layers.append(SlowLayer(slow))
    layers.append(keras.layers.Dense(3))
    model = keras.Sequential(layers)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class SlowLayer(keras.layers.Layer):
    """Identity that sleeps on every call, also inside a compiled `tf.function`."""

    def __init__(self, seconds: float, **kwargs):
        super().__init__(**kwargs)
        self.seconds = seconds

    def call(self, x):
        def nap():
            time.sleep(self.seconds)
            return np.float32(0.0)

        done = tf.reshape(tf.py_function(nap, [], tf.float32), [])
        return x + tf.cast(done, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


class Sleeper:
    """A sync function that takes SLEEP seconds, standing for queued device work."""

    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        time.sleep(SLEEP)


class KerasFitTest(tf.test.TestCase):
    def test_waits_for_sync_before_each_reading(self):
        sync = Sleeper()
        timer = EpochTimer(sync=sync, time_steps=True)
        x, y = data(steps=2)
        tiny_model().fit(x, y, batch_size=BATCH, epochs=2, callbacks=[timer], verbose=0)
        self.assertLen(timer.epoch_seconds, 2)
        self.assertLen(timer.step_seconds, 4)
        # Per epoch: one wait before the clock starts (not counted), one after each step
        # and one at the end (both counted).
        self.assertEqual(sync.calls, 2 * (1 + 2 + 1))
        for seconds in timer.epoch_seconds:
            self.assertGreaterEqual(seconds, 3 * SLEEP)
            self.assertLess(seconds, 3 * SLEEP + 5.0)
        for seconds in timer.step_seconds:
            self.assertGreaterEqual(seconds, SLEEP)

    def test_without_step_timing(self):
        sync = Sleeper()
        timer = EpochTimer(sync=sync, time_steps=False)
        x, y = data(steps=3)
        tiny_model().fit(x, y, batch_size=BATCH, epochs=2, callbacks=[timer], verbose=0)
        self.assertEqual(timer.step_seconds, [])
        self.assertEqual(sync.calls, 2 * 2)
        for seconds in timer.epoch_seconds:
            self.assertGreaterEqual(seconds, SLEEP)
            self.assertLess(seconds, 2 * SLEEP + 5.0)  # the pre-epoch wait is not counted

    def test_slow_model_steps_are_counted(self):
        nap = 0.05
        x, y = data(steps=4)
        timer = EpochTimer(sync=lambda: None, time_steps=True)
        model = tiny_model(slow=nap)
        model.fit(x, y, batch_size=BATCH, epochs=2, callbacks=[timer], verbose=0)
        self.assertLen(timer.step_seconds, 8)
        for seconds in timer.epoch_seconds:
            self.assertGreaterEqual(seconds, 4 * nap)
        for seconds in timer.step_seconds:
            self.assertGreaterEqual(seconds, nap)
        self.assertGreaterEqual(sum(timer.step_seconds), 8 * nap)
        self.assertLessEqual(sum(timer.step_seconds), sum(timer.epoch_seconds) + 1e-6)

    def test_default_sync_uses_the_engine(self):
        timer = EpochTimer()
        self.assertTrue(timer.time_steps)
        x, y = data(steps=2)
        model = tiny_model()
        engine = engines.current()
        with mock.patch.object(engine, "sync") as sync:
            model.fit(x, y, batch_size=BATCH, epochs=1, callbacks=[timer], verbose=0)
        self.assertEqual(sync.call_count, 1 + 2 + 1)
        for call in sync.call_args_list:
            self.assertIs(call.args[0], model)

    def test_state_resets_on_each_fit(self):
        timer = EpochTimer(sync=lambda: None)
        x, y = data(steps=2)
        model = tiny_model()
        model.fit(x, y, batch_size=BATCH, epochs=3, callbacks=[timer], verbose=0)
        self.assertLen(timer.epoch_seconds, 3)
        self.assertLen(timer.step_seconds, 6)
        model.fit(x, y, batch_size=BATCH, epochs=1, callbacks=[timer], verbose=0)
        self.assertLen(timer.epoch_seconds, 1)
        self.assertLen(timer.step_seconds, 2)


class TrainerFitTest(tf.test.TestCase):
    def trainer(self, model: keras.Model | None = None) -> Trainer:
        cfg = TrainerConfig(batch_size=BATCH, precision="float32", jit_compile=False, seed=1)
        return Trainer(model if model is not None else tiny_model(), cfg)

    def test_engine_sync_is_waited_for(self):
        trainer = self.trainer()
        x, y = data(steps=2)
        engine = engines.current()
        with mock.patch.object(engine, "sync", side_effect=lambda model=None: time.sleep(SLEEP)):
            run = trainer.fit(x, y, epochs=2)
        self.assertLen(run.epoch_seconds, 2)
        for seconds in run.epoch_seconds:
            self.assertGreaterEqual(seconds, SLEEP)

    def test_slow_callback_is_inside_the_epoch(self):
        class SlowStart(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                time.sleep(SLEEP)

        trainer = self.trainer()
        x, y = data(steps=2)
        run = trainer.fit(x, y, epochs=2, callbacks=[SlowStart()])
        for seconds in run.epoch_seconds:
            self.assertGreaterEqual(seconds, SLEEP)
        self.assertGreaterEqual(run.total_seconds, 2 * SLEEP)
        self.assertGreaterEqual(run.steady_seconds, SLEEP)

    def test_slow_model_epochs(self):
        nap = 0.05
        trainer = self.trainer(tiny_model(slow=nap))
        x, y = data(steps=4)
        run = trainer.fit(x, y, epochs=2)
        self.assertTrue(all(math.isfinite(v) for v in run.losses))
        for seconds in run.epoch_seconds:
            self.assertGreaterEqual(seconds, 4 * nap)  # every step's sleep is counted


class SteadyTest(tf.test.TestCase):
    def test_steady_epoch_seconds(self):
        timer = EpochTimer(sync=lambda: None)
        self.assertTrue(math.isnan(timer.steady_epoch_seconds))
        timer.epoch_seconds = [4.0]
        self.assertEqual(timer.steady_epoch_seconds, 4.0)
        timer.epoch_seconds = [5.0, 1.0, 3.0]
        self.assertEqual(timer.steady_epoch_seconds, 2.0)

    def test_steady_after_fit(self):
        timer = EpochTimer(sync=lambda: None, time_steps=False)
        x, y = data(steps=2)
        tiny_model().fit(x, y, batch_size=BATCH, epochs=3, callbacks=[timer], verbose=0)
        self.assertAllClose(timer.steady_epoch_seconds, np.mean(timer.epoch_seconds[1:]))
        self.assertTrue(all(s > 0 for s in timer.epoch_seconds))
