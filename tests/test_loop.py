"""Tests for gometal_keras.training.loop: the fused whole-epoch path against the per-step path."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import tensorflow as tf

from gometal_keras import engines
from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import Loop, Precision, RunPlan
from gometal_keras.data.synthetic import demo_dataset
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.training import loop as loop_module
from gometal_keras.training.loop import TrainingLoop
from gometal_keras.training.trainer import Trainer

FEATURES, BATCH, SAMPLES, EPOCHS = 24, 16, 16 * 8 + 5, 3


def builder() -> ModelBuilder:
    return (
        ModelBuilder([BATCH, FEATURES])
        .add_dense(32, name="d1")
        .add_batchnorm(name="bn")
        .add_relu(name="r1")
        .add_dropout(0.3, name="drop")
        .add_dense(10, name="out")
    )


def train(loop: str, jit: bool, epochs: int = EPOCHS, free: int | None = None):
    """Fit a fresh seeded trainer; return (run, trainer). `free` fakes the device's free bytes."""
    x, y = demo_dataset(samples=SAMPLES, features=FEATURES, seed=4)
    cfg = TrainerConfig(
        batch_size=BATCH,
        learning_rate=0.01,
        precision="float32",
        seed=21,
        jit_compile=jit,
        loop=loop,
    )
    trainer = Trainer(builder(), cfg)
    if free is None:
        return trainer.fit(x, y, epochs=epochs), trainer
    engine = engines.current()
    with mock.patch.object(engine, "free_memory_bytes", return_value=free):
        return trainer.fit(x, y, epochs=epochs), trainer


class FusedMatchesStepTest(tf.test.TestCase):
    def check(self, jit: bool):
        fused, t_fused = train("fused", jit)
        step, t_step = train("step", jit)
        self.assertEqual(fused.epochs_run, EPOCHS)
        self.assertTrue(all(math.isfinite(v) for v in fused.losses))
        self.assertAllClose(fused.losses, step.losses, rtol=1e-5, atol=0)
        self.assertLess(fused.losses[-1], fused.losses[0])
        for a, b in zip(t_fused.model.get_weights(), t_step.model.get_weights(), strict=True):
            self.assertAllClose(a, b, rtol=1e-4, atol=1e-5)
        # BatchNorm's moving statistics were updated the same way on both paths.
        bn_f = t_fused.model.get_layer("bn")
        bn_s = t_step.model.get_layer("bn")
        self.assertNotAllClose(bn_f.moving_mean.numpy(), np.zeros(32))
        self.assertAllClose(bn_f.moving_variance, bn_s.moving_variance, rtol=1e-4)
        xla = "XLA" if jit else "no XLA"
        self.assertIn("whole epoch per call", fused.loop)
        self.assertIn("one call per step", step.loop)
        for run in (fused, step):
            self.assertIn(f"({xla}", run.loop)
        return fused

    def test_without_xla(self):
        self.check(jit=False)

    def test_with_xla(self):
        self.check(jit=True)

    def test_auto_loop_is_fused_when_data_fits(self):
        auto, _ = train("auto", jit=False, epochs=2)
        fused, _ = train("fused", jit=False, epochs=2)
        self.assertIn("whole epoch per call", auto.loop)
        self.assertIn("device-resident", auto.loop)
        self.assertAllClose(auto.losses, fused.losses, rtol=1e-6)

    def test_dropout_is_active_in_training(self):
        # Same weights, same batch: two training-mode calls differ (dropout), inference does not.
        _, trainer = train("fused", jit=False, epochs=1)
        x = demo_dataset(samples=BATCH, features=FEATURES, seed=5)[0]
        a = trainer.model(x, training=True)
        b = trainer.model(x, training=True)
        self.assertNotAllClose(a, b)
        self.assertAllClose(trainer.model(x), trainer.model(x))


class ChunkedTest(tf.test.TestCase):
    def test_chunked_matches_resident(self):
        steps = SAMPLES // BATCH
        per_batch = BATCH * FEATURES * 4 + BATCH * 4  # float32 features, int32 labels
        # A device share holding 3 batches: 8 steps -> calls of 3, 3 and 2 batches.
        free = int(3.5 * per_batch / loop_module.DEVICE_SHARE)
        chunked, t_chunked = train("fused", jit=False, free=free)
        resident, t_resident = train("fused", jit=False)
        self.assertIn("chunks", chunked.loop)
        self.assertIn(f"{-(-steps // 3)} calls per epoch", chunked.loop)
        self.assertNotIn("chunks", resident.loop)
        self.assertAllClose(chunked.losses, resident.losses, rtol=1e-5, atol=0)
        for a, b in zip(t_chunked.model.get_weights(), t_resident.model.get_weights(), strict=True):
            self.assertAllClose(a, b, rtol=1e-4, atol=1e-5)
        step, _ = train("step", jit=False)
        self.assertAllClose(chunked.losses, step.losses, rtol=1e-5, atol=0)

    def test_chunked_by_device_share(self):
        with mock.patch.object(loop_module, "DEVICE_SHARE", 1e-12):
            chunked, _ = train("fused", jit=False, epochs=2, free=10**9)
        resident, _ = train("fused", jit=False, epochs=2)
        steps = SAMPLES // BATCH
        self.assertIn(f"{steps} calls per epoch", chunked.loop)  # one batch per call
        self.assertIn("chunks", chunked.loop)
        self.assertAllClose(chunked.losses, resident.losses, rtol=1e-5, atol=0)


class FakeEngine:
    """Host 'device': to_device copies; free memory as given."""

    def __init__(self, free):
        self.free, self.placed = free, 0

    def to_device(self, array):
        self.placed += 1
        return np.array(array, copy=True)

    def free_memory_bytes(self):
        return self.free


class FakeProgram:
    """Returns each batch's first feature as its 'loss' (a 1-wide row) and records calls."""

    def __init__(self, loop: str = "fused", xla: bool = False):
        self.epoch_shapes, self.steps = [], 0
        self.plan = RunPlan(Precision.FLOAT32, xla=xla, loop=Loop(loop))

    def epoch(self, xs, ys):
        self.epoch_shapes.append(xs.shape)
        return xs[:, 0, :1]

    def step(self, x, y):
        self.steps += 1
        return x[0, :1]


class ArrangeTest(tf.test.TestCase):
    def data(self, n: int, features: int = 3):
        x = np.arange(n * features, dtype=np.float32).reshape(n, features)
        return x, np.arange(n, dtype=np.int32)

    def test_drops_remainder_and_keeps_order(self):
        x, y = self.data(11)
        loop = TrainingLoop(FakeEngine(None), FakeProgram(), 4)
        data = loop.arrange(x, y)
        self.assertEqual(data.steps, 2)
        self.assertEqual(data.chunk, 2)
        self.assertTrue(data.resident)
        self.assertAllEqual(np.asarray(data.xs), x[:8].reshape(2, 4, 3))
        self.assertAllEqual(np.asarray(data.ys), y[:8].reshape(2, 4))
        self.assertIn("whole epoch per call", data.describe())

    def test_no_full_batch_raises(self):
        for n in (1, 3):
            x, y = self.data(n)
            for mode in ("fused", "step"):
                loop = TrainingLoop(FakeEngine(None), FakeProgram(mode), 4)
                with self.assertRaisesRegex(ValueError, "full batch"):
                    loop.arrange(x, y)
        x, y = self.data(4)  # exactly one batch is enough
        self.assertEqual(
            TrainingLoop(FakeEngine(None), FakeProgram(), 4).arrange(x, y).steps,
            1,
        )

    def test_chunks_cover_every_step_in_order(self):
        x, y = self.data(4 * 7 + 2)
        per_batch = 4 * 3 * 4 + 4 * 4
        program = FakeProgram(xla=True)
        loop = TrainingLoop(FakeEngine(2 * per_batch / loop_module.DEVICE_SHARE), program, 4)
        data = loop.arrange(x, y)
        self.assertFalse(data.resident)
        self.assertEqual(data.chunk, 2)
        self.assertIn("4 calls per epoch", data.describe())
        self.assertIn("XLA", data.describe())
        losses = loop.run_epoch(data)
        self.assertEqual([s[0] for s in program.epoch_shapes], [2, 2, 2, 1])
        self.assertAllEqual(np.ravel(losses), x[: 4 * 7 : 4, 0])

    def test_tiny_budget_still_runs_one_batch_per_call(self):
        x, y = self.data(12)
        program = FakeProgram()
        loop = TrainingLoop(FakeEngine(1), program, 4)
        data = loop.arrange(x, y)
        self.assertEqual(data.chunk, 1)
        loop.run_epoch(data)
        self.assertEqual(len(program.epoch_shapes), 3)

    def test_step_mode(self):
        x, y = self.data(13)
        program = FakeProgram("step")
        engine = FakeEngine(None)
        loop = TrainingLoop(engine, program, 4)
        data = loop.arrange(x, y)
        self.assertTrue(data.resident)
        self.assertIn("one call per step", data.describe())
        losses = loop.run_epoch(data)
        self.assertEqual(program.steps, 3)
        self.assertEqual(program.epoch_shapes, [])
        self.assertAllEqual(np.ravel(losses), x[:12:4, 0])
        # Too large for the device: steps copy their batch one at a time.
        engine = FakeEngine(1)
        loop = TrainingLoop(engine, FakeProgram("step"), 4)
        data = loop.arrange(x, y)
        self.assertFalse(data.resident)
        self.assertIn("copied per step", data.describe())
        self.assertAllEqual(np.ravel(loop.run_epoch(data)), x[:12:4, 0])


# Ctrl-C once a JAX epoch's updates are in: `fit` puts back the values the epoch started
# from, which it held instead of copying them (JAX arrays are immutable, nothing donated).
JAX_INTERRUPT = """
import json
from unittest import mock
import keras, numpy as np
from gometal_keras import ModelBuilder, Trainer, TrainerConfig
from gometal_keras.training.loop import TrainingLoop
b = ModelBuilder([8, 4]).add_dense(8).add_dropout(0.2).add_dense(3)
t = Trainer(b, TrainerConfig(batch_size=8, precision="float32", loop="fused", seed=1))
rng = np.random.default_rng(0)
x, y = rng.random((32, 4), dtype=np.float32), rng.integers(0, 3, 32)
t.fit(x, y, epochs=1)
variables = t.model.variables + t.optimizer.variables
before = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
real = TrainingLoop.run_epoch
def interrupted(loop, data, *epoch):
    real(loop, data, *epoch)  # the updates are in
    raise KeyboardInterrupt
copies = mock.MagicMock(side_effect=keras.ops.copy)
with mock.patch.object(TrainingLoop, "run_epoch", interrupted), \\
        mock.patch.object(keras.ops, "copy", copies):
    try:
        t.fit(x, y, epochs=3)
        interrupted_ = False
    except KeyboardInterrupt:
        interrupted_ = True
kept = all(np.array_equal(a, keras.ops.convert_to_numpy(v)) for a, v in zip(before, variables))
epoch, run = t.epoch, t.fit(x, y, epochs=1)
print("RESULT " + json.dumps([interrupted_, epoch, kept, copies.call_count, run.epochs_run]))
"""


def test_a_jax_fit_epoch_interrupted_goes_back_without_a_copy():
    from helpers import require_backend, run_script

    require_backend("jax")
    interrupted, epoch, kept, copies, trained_on = run_script(JAX_INTERRUPT, backend="jax")
    assert interrupted and epoch == 1
    assert kept  # every variable as the interrupted epoch found it
    assert copies == 0  # the values were held, not copied
    assert trained_on == 1
