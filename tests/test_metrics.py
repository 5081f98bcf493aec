"""Per-epoch metrics in the run history, checked against numpy on the same predictions.

A learning rate of 1e-12 leaves the weights as they were (to float precision), so every
step's metric is the metric of the initial model on its batch, and the epoch's value must
equal what numpy computes from `Trainer.predict` on the full batches.
"""

import numpy as np
import tensorflow as tf

from gometal_keras import ModelBuilder, Trainer, TrainerConfig, demo_dataset


def _still(builder, **config) -> Trainer:
    return Trainer(builder, TrainerConfig(learning_rate=1e-12, seed=0, jit_compile=False, **config))


class ClassificationMetricsTest(tf.test.TestCase):
    def test_sparse_accuracy(self):
        x, y = demo_dataset(100, 12, seed=3)  # 3 full batches of 32, 4 samples left over
        trainer = _still(ModelBuilder([32, 12]).add_dense(10), batch_size=32)
        run = trainer.fit(x, y, epochs=2)
        expected = np.mean(np.argmax(trainer.predict(x[:96]), axis=1) == y[:96])
        self.assertAllClose(run.metrics["accuracy"], [expected, expected], atol=1e-6)

    def test_binary_accuracy_from_logits(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 5)).astype("float32")
        y = (rng.random(64) > 0.5).astype("float32")
        trainer = _still(ModelBuilder([32, 5]).add_dense(1), batch_size=32, loss="bce_with_logits")
        run = trainer.fit(x, y, epochs=1)
        expected = np.mean((trainer.predict(x)[:, 0] > 0) == (y > 0.5))
        self.assertAllClose(run.metrics["accuracy"], [expected], atol=1e-6)


class RegressionMetricsTest(tf.test.TestCase):
    def test_mae_and_rmse(self):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(64, 4)).astype("float32")
        y = rng.normal(size=(64, 1)).astype("float32")
        trainer = _still(
            ModelBuilder([16, 4]).add_dense(1),
            batch_size=16,
            problem_type="regression",
            loss="mse",
        )
        run = trainer.fit(x, y, epochs=1)
        err = trainer.predict(x) - y
        self.assertAllClose(run.metrics["mae"], [np.mean(np.abs(err))], rtol=1e-5)
        # RMSE of the epoch: root of the mean of the batches' MSE (equal-size batches).
        self.assertAllClose(run.metrics["rmse"], [np.sqrt(np.mean(err**2))], rtol=1e-5)
        self.assertNotIn("accuracy", run.metrics)
