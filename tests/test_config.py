"""Tests for gometal_keras.core.config.TrainerConfig: Go-Metal's defaults and its validation.

The name tables (`OPTIMIZERS`, `LOSSES`, ..., and `PRECISIONS`) are
the source of truth and are not re-asserted here: the tests draw values inside and outside
them (with hypothesis) and check what the config does with each.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.core.config import (
    CLASSIFICATION_LOSSES,
    DECISION_CACHES,
    DISTRIBUTIONS,
    LOOPS,
    LOSSES,
    LR_MODES,
    LR_SCHEDULES,
    LR_THRESHOLD_MODES,
    OPTIMIZERS,
    PRECISIONS,
    PROBLEM_TYPES,
    REGRESSION_LOSSES,
    TrainerConfig,
)
from gometal_keras.core.seeds import SEED_MAX

PROPERTY = settings(max_examples=300, deadline=None)
FIELDS = {f.name for f in dataclasses.fields(TrainerConfig)}
#: Name fields: the valid names, and whether None is accepted too.
CHOICES = {
    "optimizer": (OPTIMIZERS, False),
    "problem_type": (PROBLEM_TYPES, False),
    "loss": (LOSSES, False),
    "precision": (PRECISIONS, True),
    "loop": (LOOPS, False),
    "lr_schedule": (LR_SCHEDULES, True),
    "lr_mode": (LR_MODES, False),
    "lr_threshold_mode": (LR_THRESHOLD_MODES, False),
    "distribution": (DISTRIBUTIONS, True),
    "decision_cache": (DECISION_CACHES, False),
}
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])
NOT_A_NUMBER = st.one_of(
    st.text(max_size=5), st.none(), st.booleans(), st.lists(st.integers(), max_size=2)
)
HUGE = 10**400  # an int no float can hold


def _bad(values: st.SearchStrategy, error: type[Exception]) -> st.SearchStrategy:
    return values.map(lambda value: (value, error))


def _positive_int(optional: bool = False) -> tuple[st.SearchStrategy, st.SearchStrategy]:
    valid = st.integers(1, 10**6)
    wrong_type = st.one_of(st.floats(), NOT_A_NUMBER.filter(lambda v: v is not None))
    invalid = [_bad(st.integers(max_value=0), ValueError), _bad(wrong_type, TypeError)]
    if optional:
        valid = st.none() | valid
    else:
        invalid.append(_bad(st.none(), TypeError))
    return valid, st.one_of(invalid)


#: float32's normal range: a real setting is checked as the float32 the device holds.
F32_TINY, F32_MAX = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)


def _positive_real() -> tuple[st.SearchStrategy, st.SearchStrategy]:
    valid = st.floats(F32_TINY, F32_MAX, width=32) | st.integers(1, 9)
    too_small = st.floats(max_value=0.0) | st.integers(max_value=0) | NON_FINITE
    too_small |= st.floats(0.0, 1e-38, exclude_min=True) | st.floats(min_value=3.41e38)
    too_small |= st.integers(min_value=2**128)
    return valid, _bad(too_small, ValueError) | _bad(NOT_A_NUMBER, TypeError)


def _held(value: float) -> float:
    """A setting as the device holds it: float32, with subnormals flushed to zero."""
    return 0.0 if abs(value) < F32_TINY else float(np.float32(value))


def _in_range(low: float, high: float, high_open: bool) -> tuple[st.SearchStrategy, ...]:
    top = high if math.isfinite(high) else None
    valid = st.floats(low, top or F32_MAX, exclude_max=high_open and top is not None, width=32)
    outside = st.one_of(
        # Below `low` as the device holds it (-1e-234 is a float32 0: in range, accepted).
        st.floats(max_value=low, exclude_max=True).filter(lambda v: _held(v) < low),
        st.integers(max_value=math.ceil(low) - 1),
        NON_FINITE,
        st.floats(min_value=3.41e38),  # finite in Python, infinite in float32
    )
    if top is not None:
        above = st.floats(min_value=top, exclude_min=not high_open)
        outside |= above.filter(lambda v: _held(v) >= top if high_open else _held(v) > top)
        outside |= st.integers(min_value=math.floor(top) + 1)
    return valid, _bad(outside, ValueError) | _bad(NOT_A_NUMBER, TypeError)


def _flag(optional: bool = False) -> tuple[st.SearchStrategy, st.SearchStrategy]:
    wrong = st.one_of(st.integers(), st.floats(), st.text(max_size=5))
    if not optional:
        wrong = wrong | st.none()
    return (st.none() | st.booleans()) if optional else st.booleans(), _bad(wrong, TypeError)


def _choice(valid_names: tuple[str, ...], optional: bool) -> tuple[st.SearchStrategy, ...]:
    near = [v.upper() for v in valid_names] + [f" {v}" for v in valid_names]
    unknown = st.text(max_size=20) | st.sampled_from(near)
    wrong_type = st.one_of(st.integers(), st.floats(), st.booleans())
    if not optional:
        wrong_type = wrong_type | st.none()
    invalid = st.one_of(
        _bad(unknown.filter(lambda v: v not in valid_names), ValueError),
        _bad(wrong_type, (ValueError, TypeError)),
    )
    valid = st.sampled_from(valid_names)
    return (st.none() | valid) if optional else valid, invalid


def _seed() -> tuple[st.SearchStrategy, st.SearchStrategy]:
    wrong = st.one_of(st.floats(), st.text(max_size=5), st.booleans())
    outside = st.integers(max_value=-1) | st.integers(min_value=SEED_MAX + 1)
    return st.none() | st.integers(0, SEED_MAX), _bad(wrong, TypeError) | _bad(outside, ValueError)


#: Field -> (strategy of valid values, strategy of (invalid value, expected error)).
STRATEGIES = {
    "batch_size": _positive_int(),
    "learning_rate": _positive_real(),
    "beta1": _in_range(0.0, 1.0, True),
    "beta2": _in_range(0.0, 1.0, True),
    "epsilon": _positive_real(),
    "weight_decay": _in_range(0.0, math.inf, False),
    "momentum": _in_range(0.0, 1.0, True),
    "alpha": _in_range(0.0, 1.0, True),
    "centered": _flag(),
    "use_mixed_precision": _flag(),
    "initial_loss_scale": _positive_real(),
    "loss_scale_growth_interval": _positive_int(),
    "seed": _seed(),
    "jit_compile": _flag(optional=True),
    "lr_step_size": _positive_int(),
    "lr_gamma": _in_range(0.0, 1.0, False),
    "lr_t_max": _positive_int(),
    "lr_eta_min": _in_range(0.0, math.inf, False),
    "lr_patience": _positive_int(),
    "lr_factor": _in_range(0.0, 1.0, True),
    "lr_min": _in_range(0.0, math.inf, False),
    "devices": _positive_int(optional=True),
    "agreement_every": _positive_int(optional=True),
    "lr_threshold": _in_range(0.0, math.inf, False),
    "lr_monitor": (
        st.sampled_from(["loss", "val_loss", "accuracy", "mae", "my metric"]),
        _bad(st.one_of(st.integers(), st.none(), st.lists(st.text(), max_size=1)), TypeError)
        | _bad(st.sampled_from(["", " ", "\t"]), ValueError),
    ),
    **{field: _choice(names, optional) for field, (names, optional) in CHOICES.items()},
}
PROBLEM_AND_LOSS = st.sampled_from(
    [("classification", loss) for loss in CLASSIFICATION_LOSSES]
    + [("regression", loss) for loss in REGRESSION_LOSSES]
)


@st.composite
def valid_configs(draw) -> dict:
    """Keyword arguments of a valid config: every field drawn, the loss fitting the problem."""
    fields = {name: draw(valid) for name, (valid, _) in STRATEGIES.items()}
    fields["problem_type"], fields["loss"] = draw(PROBLEM_AND_LOSS)
    if fields["precision"] == "float32":  # use_mixed_precision=True would contradict it
        fields["use_mixed_precision"] = False
    if fields["devices"] is not None and fields["distribution"] is None:
        fields["distribution"] = "data_parallel"  # devices without one would contradict it
    return fields


INVALID = st.sampled_from(sorted(STRATEGIES)).flatmap(
    lambda field: STRATEGIES[field][1].map(lambda bad: (field, *bad))
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
        self.assertEqual(TrainerConfig(seed=SEED_MAX).seed, SEED_MAX)


class ValidationTest(tf.test.TestCase):
    def test_every_field_has_valid_and_invalid_strategies(self):
        self.assertEqual(set(STRATEGIES), FIELDS)

    @PROPERTY
    @given(fields=valid_configs())
    def test_valid_values_construct_and_round_trip(self, fields):
        cfg = TrainerConfig(**fields)
        self.assertEqual(TrainerConfig(**cfg.to_dict()), cfg)
        self.assertEqual(cfg.replace(), cfg)

    @PROPERTY
    @given(fields=valid_configs(), case=INVALID)
    def test_every_invalid_value_is_rejected_naming_its_field(self, fields, case):
        field, value, error = case
        base = TrainerConfig(**fields)
        for how in ("new", "replace"):
            with self.assertRaises(error) as caught:
                if how == "new":
                    TrainerConfig(**{**fields, field: value})
                else:
                    base.replace(**{field: value})
            message = str(caught.exception)
            self.assertIn(f"TrainerConfig.{field} is {value!r}", message)
            if field in CHOICES and isinstance(value, str):
                for name in CHOICES[field][0]:
                    self.assertIn(name, message, f"{field} error must list {name!r}")
        self.assertEqual(base, TrainerConfig(**fields))  # the original is untouched

    def test_devices_without_a_distribution_is_refused_not_ignored(self):
        for devices in (1, 2, 8):
            with self.assertRaisesRegex(ValueError, "TrainerConfig.devices is .* distribution"):
                TrainerConfig(devices=devices)
            cfg = TrainerConfig(devices=devices, distribution="data_parallel")
            with self.assertRaisesRegex(ValueError, "TrainerConfig.devices"):
                cfg.replace(distribution=None)

    def test_huge_ints_out_of_range_are_value_errors(self):
        # math.isfinite() of an int beyond float range raises OverflowError, not ValueError.
        below = ("beta1", "beta2", "momentum", "alpha", "lr_gamma", "lr_factor", "weight_decay")
        cases = [(field, -HUGE) for field in below] + [(field, HUGE) for field in below[:-1]]
        for field, value in cases:
            with self.assertRaisesRegex(ValueError, f"TrainerConfig.{field}"):
                TrainerConfig(**{field: value})

    def test_loss_must_fit_problem_type(self):
        for problem, wrong, fitting in (
            ("classification", REGRESSION_LOSSES, CLASSIFICATION_LOSSES),
            ("regression", CLASSIFICATION_LOSSES, REGRESSION_LOSSES),
        ):
            for loss in wrong:
                with self.assertRaises(ValueError) as ctx:
                    TrainerConfig(problem_type=problem, loss=loss)
                message = str(ctx.exception)
                self.assertIn("does not fit", message)
                for name in fitting:
                    self.assertIn(name, message)


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
        with self.assertRaisesRegex(ValueError, "use_mixed_precision is True but precision"):
            TrainerConfig(use_mixed_precision=True, precision="float32")
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
