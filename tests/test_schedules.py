"""Learning-rate schedules: PyTorch's closed forms, stepped per epoch, through Trainer.fit."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import float32_config, tiny_builder
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras import Trainer, TrainerConfig, demo_dataset
from gometal_keras.training.schedules import LearningRateSchedule, scheduled_rate


def _trainer(**schedule) -> Trainer:
    config = float32_config(batch_size=32, learning_rate=0.1, optimizer="sgd", **schedule)
    return Trainer(tiny_builder(features=16, classes=10, batch=32), config)


class ClosedFormTest(tf.test.TestCase):
    def test_step(self):
        cfg = TrainerConfig(lr_schedule="step", lr_step_size=3, lr_gamma=0.1)
        rates = [scheduled_rate(cfg, 1.0, e) for e in range(7)]
        self.assertAllClose(rates, [1, 1, 1, 0.1, 0.1, 0.1, 0.01])

    def test_exponential(self):
        cfg = TrainerConfig(lr_schedule="exponential", lr_gamma=0.9)
        self.assertAllClose([scheduled_rate(cfg, 2.0, e) for e in range(3)], [2.0, 1.8, 1.62])

    def test_cosine_reaches_eta_min_at_t_max(self):
        cfg = TrainerConfig(lr_schedule="cosine", lr_t_max=10, lr_eta_min=0.01)
        self.assertAlmostEqual(scheduled_rate(cfg, 1.0, 0), 1.0)
        self.assertAlmostEqual(scheduled_rate(cfg, 1.0, 5), 0.01 + 0.99 * 0.5)
        self.assertAlmostEqual(scheduled_rate(cfg, 1.0, 10), 0.01)
        expected = 0.01 + 0.99 * (1 + math.cos(math.pi * 3 / 10)) / 2
        self.assertAlmostEqual(scheduled_rate(cfg, 1.0, 3), expected)

    def test_no_schedule_keeps_the_rate(self):
        self.assertEqual(scheduled_rate(TrainerConfig(), 0.5, 7), 0.5)


class PlateauTest(tf.test.TestCase):
    def test_reduces_after_patience_and_respects_the_minimum(self):
        cfg = TrainerConfig(
            learning_rate=1.0, lr_schedule="plateau", lr_patience=2, lr_factor=0.5, lr_min=0.3
        )

        class Opt:
            learning_rate = None

        optimizer = Opt()
        schedule = LearningRateSchedule(cfg, optimizer)
        losses = [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
        for epoch, loss in enumerate(losses):
            schedule.on_epoch_begin(epoch)
            schedule.on_epoch_end(epoch, {"loss": loss})
        # Epochs 1-3 without improvement: reduced after the 3rd (patience 2) -> 0.5 from
        # epoch 4; improvement at 4; epochs 5-7 flat -> 0.3 (clamped) from epoch 8.
        self.assertEqual(schedule.rates, [1.0] * 4 + [0.5] * 4 + [0.3] * 3)
        self.assertEqual(optimizer.learning_rate, 0.3)


class TrainerScheduleTest(tf.test.TestCase):
    def test_exponential_schedule_sets_the_optimizer_rate_each_epoch(self):
        x, y = demo_dataset(96, 16, seed=1)
        trainer = _trainer(lr_schedule="exponential", lr_gamma=0.5)
        run = trainer.fit(x, y, epochs=3)
        self.assertAllClose(run.metrics["learning_rate"], [0.1, 0.05, 0.025])
        self.assertAllClose(float(np.asarray(trainer.optimizer.learning_rate)), 0.025)
        # A second fit continues the epoch count, and so the schedule.
        run = trainer.fit(x, y, epochs=1)
        self.assertAllClose(run.metrics["learning_rate"], [0.0125])

    def test_the_rate_really_changes_the_update(self):
        x, y = demo_dataset(32, 16, seed=2)
        frozen = _trainer(lr_schedule="step", lr_step_size=1, lr_gamma=0.0)
        before = [w.copy() for w in frozen.model.get_weights()]
        frozen.fit(x, y, epochs=1)  # epoch 0 trains at 0.1
        after_one = [w.copy() for w in frozen.model.get_weights()]
        frozen.fit(x, y, epochs=1)  # epoch 1 at 0.1 * 0**1 = 0: nothing moves
        self.assertFalse(all(np.array_equal(a, b) for a, b in zip(before, after_one, strict=True)))
        for a, b in zip(after_one, frozen.model.get_weights(), strict=True):
            self.assertAllEqual(a, b)


@settings(max_examples=60, deadline=None)
@given(mode=st.sampled_from(["min", "max"]), threshold_mode=st.sampled_from(["rel", "abs"]),
       threshold=st.sampled_from([0.0, 1e-4, 0.01, 0.1]), patience=st.integers(1, 3),
       factor=st.sampled_from([0.1, 0.5, 0.9]), min_lr=st.sampled_from([0.0, 1e-3, 0.02]),
       values=st.lists(st.floats(-2.0, 2.0), min_size=1, max_size=25),
       monitor=st.sampled_from(["val_loss", "accuracy"]))
def test_plateau_matches_pytorchs_reduce_lr_on_plateau(mode, threshold_mode, threshold,
                                                       patience, factor, min_lr, values, monitor):
    torch = pytest.importorskip("torch")
    cfg = TrainerConfig(learning_rate=0.1, lr_schedule="plateau", lr_mode=mode,
                        lr_threshold=threshold, lr_threshold_mode=threshold_mode,
                        lr_patience=patience, lr_factor=factor, lr_min=min_lr, lr_monitor=monitor)
    ours = LearningRateSchedule(cfg, keras.optimizers.SGD(learning_rate=0.1))
    weight = torch.nn.Parameter(torch.zeros(1))
    sgd = torch.optim.SGD([weight], lr=0.1)
    oracle = torch.optim.lr_scheduler.ReduceLROnPlateau(
        sgd, mode=mode, factor=factor, patience=patience, threshold=threshold,
        threshold_mode=threshold_mode, min_lr=min_lr)
    for epoch, value in enumerate(values):
        ours.on_epoch_begin(epoch)
        assert ours.rates[-1] == pytest.approx(sgd.param_groups[0]["lr"], rel=1e-12), epoch
        ours.on_epoch_end(epoch, {"loss": 9.0, monitor: value})
        oracle.step(value)


def test_plateau_names_a_watched_value_the_logs_do_not_hold():
    cfg = TrainerConfig(lr_schedule="plateau", lr_monitor="val_loss")
    schedule = LearningRateSchedule(cfg, keras.optimizers.SGD())
    with pytest.raises(ValueError, match=r"lr_monitor is 'val_loss'.*hold accuracy, loss"):
        schedule.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})


def test_a_plateau_watching_accuracy_for_its_maximum_resumes_from_a_checkpoint(tmp_path):
    trainer = _trainer(lr_schedule="plateau", lr_monitor="accuracy", lr_mode="max",
                       lr_patience=1, lr_factor=0.5)
    x, y = demo_dataset(samples=64, features=16, classes=10, seed=0)
    trainer.fit(x, y, epochs=3)
    path = str(tmp_path / "run.gmk")
    trainer.save(path)
    back = Trainer.load(path)
    assert back.schedule.get_state() == trainer.schedule.get_state()
    assert back.schedule.best == max(trainer.schedule.best, -math.inf)
