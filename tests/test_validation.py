"""Input validation before any step: clear one-sentence errors, nothing changed.

Every bad call of `train_batch`, `fit`, `evaluate` and `predict` raises
`ValueError` or `TypeError` with one sentence, and the model's variables and the optimizer's
variables are bit-identical afterwards.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import tensorflow as tf
from helpers import BATCH, CLASSES, FEATURES, classification_data, tiny_builder
from helpers import variable_values as values

from gometal_keras.core.config import TrainerConfig
from gometal_keras.training.trainer import Trainer

WITH_Y = ("train_batch", "fit", "evaluate")
ALL = (*WITH_Y, "predict")


def snapshot(trainer: Trainer) -> list[np.ndarray]:
    return values([*trainer.model.variables, *trainer.optimizer.variables])


class ValidationCase(tf.test.TestCase):
    """A trained-one-step float32 trainer and the assertion every case makes."""

    precision = "float32"
    loss = "sparse_categorical_crossentropy"

    def make_trainer(self) -> Trainer:
        problem = "regression" if self.loss == "mse" else "classification"
        cfg = TrainerConfig(
            precision=self.precision,
            jit_compile=self.precision == "mixed_float16",
            # One plan: under XLA on a CPU, loop="auto" would time per-step against fused.
            loop="fused" if self.precision == "mixed_float16" else "auto",
            seed=5,
            batch_size=BATCH,
            loss=self.loss,
            problem_type=problem,
            learning_rate=0.01,
        )
        return Trainer(tiny_builder(), cfg)

    def good_y(self, y: np.ndarray) -> np.ndarray:
        if self.loss == "sparse_categorical_crossentropy":
            return y
        return np.eye(CLASSES, dtype=np.float32)[y]

    def setUp(self):
        super().setUp()
        self.trainer = self.make_trainer()
        x, y = classification_data()
        self.x, self.y = x, self.good_y(y)
        self.trainer.train_batch(self.x[:BATCH], self.y[:BATCH])  # optimizer slots non-zero

    def call(self, method: str, x, y=None):
        t = self.trainer
        if method == "predict":
            return t.predict(x)
        if method == "fit":
            return t.fit(x, y, epochs=1)
        return getattr(t, method)(x, y)

    def assert_rejected(self, method: str, x, y=None, errors=(ValueError, TypeError), words=()):
        """`method(x, y)` raises one of `errors` in one sentence and changes no variable."""
        before = snapshot(self.trainer)
        with self.assertRaises(errors) as caught:
            self.call(method, x, y)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        self.assertRegex(message, r"^[A-Z0-9'\"(a-z].*[.)]$")
        # One sentence: no sentence break ("<word>. <Capital>") inside the message.
        self.assertIsNone(re.search(r"[a-z)]\. [A-Z]", message), message)
        for word in words:
            self.assertIn(word, message)
        after = snapshot(self.trainer)
        self.assertEqual(len(before), len(after))
        for i, (a, b) in enumerate(zip(before, after, strict=True)):
            self.assertTrue(np.array_equal(a, b), f"variable {i} changed by a rejected {method}")
        return message


class SparseLabelValidationTest(ValidationCase):
    def test_length_mismatch(self):
        for method in WITH_Y:
            with self.subTest(method):
                self.assert_rejected(method, self.x, self.y[:-1], ValueError, ("32", "31"))

    def test_wrong_feature_shape_names_both_shapes(self):
        wrong = np.zeros((2 * BATCH, FEATURES - 3), np.float32)
        image = np.zeros((2 * BATCH, 2, 2, 2), np.float32)
        for method in ALL:
            for x in (wrong, image):
                with self.subTest(method, shape=x.shape):
                    self.assert_rejected(
                        method, x, self.y, ValueError, (f"({FEATURES},)", str(x.shape[1:]))
                    )

    def test_single_sample_without_batch_axis(self):
        for method in ALL:
            with self.subTest(method):
                self.assert_rejected(method, self.x[0], self.y[:1], ValueError)

    def test_labels_outside_range(self):
        for bad in (-1, CLASSES, 10**6):
            y = self.y.copy()
            y[3] = bad
            for method in WITH_Y:
                with self.subTest(method, label=bad):
                    self.assert_rejected(method, self.x, y, ValueError, (f"[0, {CLASSES})",))

    def test_labels_not_integers(self):
        y = self.y.astype(np.float32)
        y[1] = 1.5
        for method in WITH_Y:
            with self.subTest(method):
                self.assert_rejected(method, self.x, y, TypeError, ("integer",))

    def test_sparse_labels_with_wrong_rank(self):
        y = np.eye(CLASSES, dtype=np.int32)[self.y]  # one-hot given to a sparse loss
        for method in WITH_Y:
            with self.subTest(method):
                self.assert_rejected(method, self.x, y, ValueError)

    def test_non_finite_features(self):
        for bad in (np.nan, np.inf, -np.inf):
            x = self.x.copy()
            x[5, 2] = bad
            for method in ALL:
                with self.subTest(method, value=bad):
                    self.assert_rejected(method, x, self.y, ValueError, ("NaN or infinite",))

    def test_features_that_overflow_float32(self):
        x = self.x.astype(np.float64)
        x[0, 0] = 1e300  # finite in float64, inf once cast to float32
        for method in ALL:
            with self.subTest(method):
                self.assert_rejected(method, x, self.y, ValueError)

    def test_non_finite_labels(self):
        for bad in (np.nan, np.inf, -np.inf):
            y = self.y.astype(np.float64)
            y[0] = bad
            for method in WITH_Y:
                with self.subTest(method, value=bad):
                    self.assert_rejected(method, self.x, y, ValueError)

    def test_empty_arrays(self):
        empty_x = np.zeros((0, FEATURES), np.float32)
        empty_y = np.zeros((0,), np.int32)
        for method in ALL:
            with self.subTest(method, what="x"):
                self.assert_rejected(method, empty_x, empty_y, ValueError, ("empty",))
        for method in WITH_Y:
            with self.subTest(method, what="y"):
                self.assert_rejected(method, self.x, empty_y, ValueError)
        for method in ALL:
            with self.subTest(method, what="[]"):
                self.assert_rejected(method, [], [], ValueError)

    def test_string_and_object_arrays(self):
        strings = self.x.astype(str)
        objects = self.x.astype(object)
        ragged = [[1.0, 2.0], [3.0]]
        for method in ALL:
            for x in (strings, objects, ragged, None):
                with self.subTest(method, x=type(x).__name__):
                    self.assert_rejected(method, x, self.y, TypeError)
        for method in WITH_Y:
            for y in (self.y.astype(str), self.y.astype(object), None):
                with self.subTest(method, y=type(y).__name__):
                    self.assert_rejected(method, self.x, y, TypeError)

    def test_complex_arrays(self):
        for method in ALL:
            with self.subTest(method):
                self.assert_rejected(method, self.x.astype(np.complex64), self.y, TypeError)

    def test_fit_needs_one_full_batch(self):
        for n in (1, BATCH - 1):
            with self.subTest(samples=n):
                self.assert_rejected(
                    "fit", self.x[:n], self.y[:n], ValueError, (str(n), str(BATCH), "full batch")
                )

    def test_fit_rejects_bad_validation_data_before_training(self):
        x_val, y_val = classification_data(BATCH, seed=3)
        y_val[0] = CLASSES
        before = snapshot(self.trainer)
        with self.assertRaises(ValueError):
            self.trainer.fit(self.x, self.y, epochs=1, validation_data=(x_val, y_val))
        for a, b in zip(before, snapshot(self.trainer), strict=True):
            self.assertTrue(np.array_equal(a, b))
        self.assertEqual(self.trainer.epoch, 0)

    def test_fit_rejects_bad_epochs(self):
        for epochs in (0, -1, 1.5, True, "2"):
            with self.subTest(epochs=epochs):
                before = snapshot(self.trainer)
                with self.assertRaises(ValueError):
                    self.trainer.fit(self.x, self.y, epochs=epochs)
                for a, b in zip(before, snapshot(self.trainer), strict=True):
                    self.assertTrue(np.array_equal(a, b))

    def test_valid_inputs_still_accepted(self):
        # The checks are not over-eager: ints, bools, float64, lists and (n, 1) labels pass.
        t = self.trainer
        self.assertTrue(np.isfinite(t.train_batch(self.x.astype(np.float64), self.y).loss))
        self.assertTrue(np.isfinite(t.train_batch(self.x.tolist(), self.y.tolist()).loss))
        self.assertTrue(np.isfinite(t.train_batch(self.x > 0, self.y[:, None]).loss))
        self.assertTrue(np.isfinite(t.evaluate(self.x.astype(np.int64), self.y.astype(float))))
        self.assertEqual(t.predict(self.x[:3]).shape, (3, CLASSES))


class OneHotValidationTest(ValidationCase):
    loss = "categorical_crossentropy"

    def test_one_hot_width_differs_from_output_width(self):
        for width in (CLASSES - 1, CLASSES + 1):
            y = np.zeros((2 * BATCH, width), np.float32)
            y[:, 0] = 1
            for method in WITH_Y:
                with self.subTest(method, width=width):
                    self.assert_rejected(
                        method, self.x, y, ValueError, ("one-hot width", f"({width},)")
                    )

    def test_non_finite_one_hot(self):
        for bad in (np.nan, np.inf):
            y = self.y.copy()
            y[2, 1] = bad
            for method in WITH_Y:
                with self.subTest(method, value=bad):
                    self.assert_rejected(method, self.x, y, ValueError, ("NaN or infinite",))

    def test_length_mismatch(self):
        for method in WITH_Y:
            with self.subTest(method):
                self.assert_rejected(method, self.x[:-2], self.y, ValueError)


class MixedFloat16ValidationTest(ValidationCase):
    """The loss scale and its counter are optimizer state too: a rejected call keeps them."""

    precision = "mixed_float16"

    def test_rejections_keep_loss_scale_state(self):
        opt = self.trainer.optimizer
        self.assertIsInstance(opt, keras.optimizers.LossScaleOptimizer)
        y = self.y.copy()
        y[0] = -3
        x = self.x.copy()
        x[1, 1] = np.nan
        for method in WITH_Y:
            with self.subTest(method):
                self.assert_rejected(method, self.x, y, ValueError)
                self.assert_rejected(method, x, self.y, ValueError)
        self.assert_rejected("fit", self.x[: BATCH - 1], self.y[: BATCH - 1], ValueError)
