"""Tests for gometal_keras.config.TrainerConfig: Go-Metal's defaults and every validation."""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from gometal_keras.config import (
    CLASSIFICATION_LOSSES,
    LOOPS,
    LOSSES,
    OPTIMIZERS,
    PRECISIONS,
    PROBLEM_TYPES,
    REGRESSION_LOSSES,
    TrainerConfig,
)


class DefaultsTest(tf.test.TestCase):
    def test_go_metal_defaults(self):
        cfg = TrainerConfig()
        self.assertEqual(cfg.beta1, 0.9)
        self.assertEqual(cfg.beta2, 0.999)
        self.assertEqual(cfg.epsilon, 1e-8)
        self.assertEqual(cfg.weight_decay, 0.0)
        self.assertEqual(cfg.alpha, 0.99)
        self.assertEqual(cfg.momentum, 0.0)
        self.assertFalse(cfg.centered)
        self.assertEqual(cfg.initial_loss_scale, 65536.0)
        self.assertEqual(cfg.loss_scale_growth_interval, 2000)
        self.assertFalse(cfg.use_mixed_precision)
        self.assertIsNone(cfg.precision)
        self.assertIsNone(cfg.seed)
        self.assertEqual(cfg.problem_type, "classification")
        self.assertEqual(cfg.loss, "sparse_categorical_crossentropy")
        self.assertEqual(cfg.optimizer, "adam")
        self.assertGreater(cfg.batch_size, 0)
        self.assertGreater(cfg.learning_rate, 0)

    def test_name_tables(self):
        self.assertEqual(
            set(OPTIMIZERS), {"adam", "sgd", "rmsprop", "adagrad", "adadelta", "nadam", "adamw"}
        )
        self.assertEqual(set(PROBLEM_TYPES), {"classification", "regression"})
        self.assertEqual(
            set(CLASSIFICATION_LOSSES),
            {
                "sparse_categorical_crossentropy",
                "categorical_crossentropy",
                "binary_crossentropy",
                "bce_with_logits",
            },
        )
        self.assertEqual(set(REGRESSION_LOSSES), {"mse", "mae", "huber"})
        self.assertEqual(set(LOSSES), set(CLASSIFICATION_LOSSES) | set(REGRESSION_LOSSES))
        self.assertTrue({"float32", "mixed_float16", "mixed_bfloat16"} <= set(PRECISIONS))

    def test_frozen(self):
        cfg = TrainerConfig()
        with self.assertRaises(dataclasses.FrozenInstanceError):
            cfg.batch_size = 3

    def test_every_valid_combination_constructs(self):
        for opt in OPTIMIZERS:
            self.assertEqual(TrainerConfig(optimizer=opt).optimizer, opt)
        for loss in CLASSIFICATION_LOSSES:
            self.assertEqual(TrainerConfig(problem_type="classification", loss=loss).loss, loss)
        for loss in REGRESSION_LOSSES:
            self.assertEqual(TrainerConfig(problem_type="regression", loss=loss).loss, loss)
        for p in PRECISIONS:
            self.assertEqual(TrainerConfig(precision=p).precision, p)
        for loop in LOOPS:
            self.assertEqual(TrainerConfig(loop=loop).loop, loop)
        for jit in (None, True, False):
            self.assertEqual(TrainerConfig(jit_compile=jit).jit_compile, jit)

    def test_edge_values_accepted(self):
        cfg = TrainerConfig(
            batch_size=1,
            learning_rate=1,  # an int learning rate is a number
            beta1=0.0,
            beta2=0.0,
            momentum=0.0,
            alpha=0.0,
            weight_decay=0.0,
            seed=0,
        )
        self.assertEqual(cfg.batch_size, 1)
        self.assertEqual(TrainerConfig(weight_decay=10.0).weight_decay, 10.0)
        self.assertEqual(TrainerConfig(beta2=0.999999).beta2, 0.999999)
        self.assertEqual(TrainerConfig(seed=-5).seed, -5)


class ValidationTest(tf.test.TestCase):
    def assert_error(self, exc, pattern, **kwargs):
        with self.assertRaisesRegex(exc, pattern):
            TrainerConfig(**kwargs)

    def test_batch_size(self):
        for bad in (0, -1):
            self.assert_error(ValueError, "batch_size.*positive", batch_size=bad)
        for bad in (32.0, "32", True, None):
            self.assert_error(TypeError, "batch_size", batch_size=bad)

    def test_learning_rate(self):
        for bad in (0.0, -0.1, math.inf, math.nan):
            self.assert_error(ValueError, "learning_rate", learning_rate=bad)
        for bad in ("0.1", True, None):
            self.assert_error(TypeError, "learning_rate", learning_rate=bad)

    def test_epsilon_and_loss_scale(self):
        self.assert_error(ValueError, "epsilon", epsilon=0.0)
        self.assert_error(ValueError, "epsilon", epsilon=-1e-8)
        for bad in (0.0, -1.0, math.inf, math.nan):
            self.assert_error(ValueError, "initial_loss_scale", initial_loss_scale=bad)
        self.assert_error(TypeError, "initial_loss_scale", initial_loss_scale="65536")
        for bad in (0, -2000):
            self.assert_error(
                ValueError, "loss_scale_growth_interval", loss_scale_growth_interval=bad
            )
        for bad in (2000.0, True):
            self.assert_error(
                TypeError, "loss_scale_growth_interval", loss_scale_growth_interval=bad
            )

    def test_unknown_names_list_the_valid_ones(self):
        cases = {
            "optimizer": ("lbfgs", OPTIMIZERS),
            "problem_type": ("ranking", PROBLEM_TYPES),
            "loss": ("hinge", LOSSES),
            "precision": ("float16", PRECISIONS),
            "loop": ("graph", LOOPS),
        }
        for field, (bad, valid) in cases.items():
            with self.assertRaises(ValueError) as ctx:
                TrainerConfig(**{field: bad})
            message = str(ctx.exception)
            self.assertIn(field, message)
            self.assertIn(repr(bad), message)
            for name in valid:
                self.assertIn(name, message, f"{field} error must list {name!r}")

    def test_names_are_case_sensitive_and_must_be_str(self):
        self.assert_error(ValueError, "optimizer", optimizer="Adam")
        self.assert_error(ValueError, "optimizer", optimizer=None)
        self.assert_error(ValueError, "loss", loss=3)
        self.assert_error(ValueError, "loop", loop=None)

    def test_loss_must_fit_problem_type(self):
        for loss in REGRESSION_LOSSES:
            with self.assertRaises(ValueError) as ctx:
                TrainerConfig(problem_type="classification", loss=loss)
            message = str(ctx.exception)
            self.assertIn("does not fit", message)
            for name in CLASSIFICATION_LOSSES:
                self.assertIn(name, message)
        for loss in CLASSIFICATION_LOSSES:
            with self.assertRaises(ValueError) as ctx:
                TrainerConfig(problem_type="regression", loss=loss)
            message = str(ctx.exception)
            self.assertIn("does not fit", message)
            for name in REGRESSION_LOSSES:
                self.assertIn(name, message)

    def test_ranges(self):
        for field in ("beta1", "beta2", "momentum", "alpha"):
            for bad in (1.0, 1.5, -0.01, math.nan, math.inf):
                self.assert_error(ValueError, field, **{field: bad})
            for bad in ("0.9", True, None):
                self.assert_error(TypeError, field, **{field: bad})
        for bad in (-0.1, math.nan, math.inf):
            self.assert_error(ValueError, "weight_decay", weight_decay=bad)
        self.assert_error(TypeError, "weight_decay", weight_decay="0")

    def test_bool_fields(self):
        for field in ("centered", "use_mixed_precision"):
            for bad in (1, 0, "yes", None):
                self.assert_error(TypeError, field, **{field: bad})

    def test_seed_and_jit_compile_types(self):
        for bad in (1.0, "1", True):
            self.assert_error(TypeError, "seed", seed=bad)
        for bad in (1, 0, "true"):
            self.assert_error(TypeError, "jit_compile", jit_compile=bad)


class ResolvedPrecisionTest(tf.test.TestCase):
    def test_rules(self):
        self.assertEqual(TrainerConfig().resolved_precision, "float32")
        self.assertEqual(
            TrainerConfig(use_mixed_precision=True).resolved_precision, "mixed_float16"
        )
        self.assertEqual(
            TrainerConfig(use_mixed_precision=True, precision="mixed_bfloat16").resolved_precision,
            "mixed_bfloat16",
        )
        self.assertEqual(
            TrainerConfig(use_mixed_precision=True, precision="float32").resolved_precision,
            "float32",
        )
        self.assertEqual(TrainerConfig(precision="auto").resolved_precision, "auto")


class ReplaceAndDictTest(tf.test.TestCase):
    def test_replace_returns_validated_copy(self):
        cfg = TrainerConfig(batch_size=16, seed=1)
        other = cfg.replace(batch_size=128, precision="mixed_bfloat16")
        self.assertEqual(other.batch_size, 128)
        self.assertEqual(other.precision, "mixed_bfloat16")
        self.assertEqual(other.seed, 1)
        self.assertEqual(cfg.batch_size, 16)  # the original is untouched
        self.assertIsNone(cfg.precision)
        with self.assertRaisesRegex(ValueError, "batch_size"):
            cfg.replace(batch_size=0)
        with self.assertRaisesRegex(ValueError, "does not fit"):
            cfg.replace(problem_type="regression")
        with self.assertRaisesRegex(ValueError, "precision"):
            cfg.replace(precision="fp8")
        with self.assertRaises(TypeError):
            cfg.replace(no_such_field=1)

    def test_to_dict(self):
        data = TrainerConfig(batch_size=8, seed=3).to_dict()
        self.assertEqual(data["batch_size"], 8)
        self.assertEqual(data["seed"], 3)
        self.assertEqual(data["initial_loss_scale"], 65536.0)
        self.assertEqual(set(data), {f.name for f in dataclasses.fields(TrainerConfig)})
