"""Tests for gometal_keras.core.plan: `RunPlan`, `Precision`, `Loop`, `LossScaling`.

The precisions are checked against Keras itself (each value must be a policy name
`keras.DTypePolicy` accepts, with the same compute and variable dtypes) and against the
dtypes' own ranges (`ml_dtypes.finfo`); plans are generated with hypothesis and checked for
the properties every reader of a plan relies on: frozen, validated on every change,
round-tripping through JSON, one label per (precision, XLA, loop).
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import keras
import ml_dtypes
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.core.config import PRECISIONS as PRECISION_NAMES
from gometal_keras.core.plan import Loop, LossScaling, Precision, RunPlan

SETTINGS = settings(max_examples=80, deadline=None, database=None)

SCALINGS = st.builds(
    LossScaling,
    initial_scale=st.floats(min_value=1.0, max_value=2.0**24, allow_nan=False),
    growth_interval=st.integers(min_value=1, max_value=10_000),
)
TRIPLES = st.tuples(st.sampled_from(Precision), st.booleans(), st.sampled_from(Loop))


@st.composite
def plans(draw: st.DrawFn) -> RunPlan:
    """Any valid plan: loss scaling only under float16, the guard defaulted or explicit."""
    precision, xla, loop = draw(TRIPLES)
    scaling = draw(st.none() | SCALINGS) if precision.needs_loss_scaling else None
    return RunPlan(
        precision,
        xla,
        loop,
        loss_scaling=scaling,
        guard=draw(st.none() | st.booleans()),
        replicas=draw(st.integers(min_value=1, max_value=8)),
        placement=draw(st.text(max_size=20)),
    )


FIELDS = [f.name for f in dataclasses.fields(RunPlan)]


# --- Precision and the policy names, against Keras. ---


class PrecisionAgainstKerasTest(tf.test.TestCase):
    def test_values_are_keras_policies_with_the_same_dtypes(self):
        for precision in Precision:
            policy = keras.DTypePolicy(precision.value)
            self.assertEqual(policy.name, precision.value)
            self.assertEqual(policy.compute_dtype, precision.compute_dtype, precision)
            self.assertEqual(policy.variable_dtype, precision.variable_dtype, precision)
            plan = RunPlan(precision, xla=False)
            self.assertEqual(keras.DTypePolicy(plan.policy).compute_dtype, plan.compute_dtype)
            self.assertEqual(keras.DTypePolicy(plan.policy).variable_dtype, plan.variable_dtype)

    def test_mixed_means_compute_differs_from_variables(self):
        for precision in Precision:
            policy = keras.DTypePolicy(precision.value)
            self.assertEqual(precision.mixed, policy.compute_dtype != policy.variable_dtype)

    def test_loss_scaling_needed_exactly_where_the_exponent_range_is_narrower(self):
        # float16 underflows small gradients (its exponent range is far narrower than
        # float32's); bfloat16 keeps float32's exponent range and needs no scaled loss.
        widest = ml_dtypes.finfo("float32").minexp
        for precision in Precision:
            narrower = ml_dtypes.finfo(precision.compute_dtype).minexp > widest
            self.assertEqual(precision.needs_loss_scaling, narrower, precision)


def test_precision_names_are_the_policies_plus_auto():
    assert len(PRECISION_NAMES) == len(set(PRECISION_NAMES))
    assert set(PRECISION_NAMES) == {p.value for p in Precision} | {"auto"}
    with pytest.raises(ValueError):
        Precision("auto")  # "auto" is a request to measure, not a precision


def test_precision_and_loop_parse_from_their_names():
    for member in [*Precision, *Loop]:
        assert type(member)(member.value) is member
        assert str(member) == member.value
    assert len({p.label for p in Precision}) == len(Precision)


# --- RunPlan. ---


@SETTINGS
@given(plans(), st.sampled_from(FIELDS))
def test_plan_is_frozen(plan, field):
    before = plan.to_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(plan, field, getattr(plan, field))
    assert plan.to_dict() == before


@SETTINGS
@given(plans())
def test_round_trips_through_dict_and_strict_json(plan):
    assert RunPlan.from_dict(plan.to_dict()) == plan
    text = json.dumps(plan.to_dict(), allow_nan=False)
    assert RunPlan.from_dict(json.loads(text)) == plan


@SETTINGS
@given(plans())
def test_to_dict_agrees_with_the_plan(plan):
    data = plan.to_dict()
    assert data["precision"] == plan.policy == plan.precision.value
    assert data["compute_dtype"] == plan.compute_dtype
    assert data["variable_dtype"] == plan.variable_dtype
    assert data["xla"] is plan.xla
    assert data["guard"] is plan.guard
    assert Loop(data["loop"]) is plan.loop
    assert (data["loss_scaling"] is None) == (plan.loss_scaling is None)


@SETTINGS
@given(TRIPLES, st.none() | SCALINGS)
def test_default_guard_is_on_exactly_without_loss_scaling(triple, scaling):
    precision, xla, loop = triple
    if scaling is not None and not precision.needs_loss_scaling:
        with pytest.raises(ValueError, match="loss scaling under mixed_float16 only"):
            RunPlan(precision, xla, loop, loss_scaling=scaling)
        return
    plan = RunPlan(precision, xla, loop, loss_scaling=scaling)
    assert plan.guard is (scaling is None)
    for guard in (False, True):  # an explicit guard is kept as given
        assert RunPlan(precision, xla, loop, loss_scaling=scaling, guard=guard).guard is guard


@SETTINGS
@given(plans(), SCALINGS)
def test_replace_validates(plan, scaling):
    for precision in Precision:
        if not precision.needs_loss_scaling:
            with pytest.raises(ValueError):
                plan.replace(precision=precision, loss_scaling=scaling)
            if plan.loss_scaling is not None:  # a scaled float16 plan cannot leave float16
                with pytest.raises(ValueError):
                    plan.replace(precision=precision)
    if not plan.precision.needs_loss_scaling:
        with pytest.raises(ValueError):
            plan.replace(loss_scaling=scaling)
    with pytest.raises(ValueError):
        plan.replace(precision="float64")
    with pytest.raises(ValueError):
        plan.replace(loop="sometimes")


@SETTINGS
@given(plans(), st.booleans(), st.sampled_from(Loop))
def test_replace_returns_a_new_plan_and_leaves_the_old_one(plan, xla, loop):
    before = plan.to_dict()
    changed = plan.replace(xla=xla, loop=loop.value)  # names are parsed like the constructor
    assert plan.to_dict() == before
    assert changed.xla is xla
    assert changed.loop is loop
    rest = {f: getattr(plan, f) for f in FIELDS if f not in ("xla", "loop")}
    assert {f: getattr(changed, f) for f in rest} == rest
    assert plan.replace() == plan


def test_every_precision_xla_loop_has_its_own_label():
    labels = {
        RunPlan(p, xla, loop).label()
        for p, xla, loop in itertools.product(Precision, (False, True), Loop)
    }
    assert len(labels) == len(Precision) * 2 * len(Loop)


@SETTINGS
@given(plans(), plans())
def test_label_is_equal_exactly_when_precision_xla_and_loop_are(a, b):
    same = (a.precision, a.xla, a.loop) == (b.precision, b.xla, b.loop)
    assert (a.label() == b.label()) == same
    assert a.policy in a.label()


def test_constructor_parses_names():
    plan = RunPlan("mixed_bfloat16", xla=True, loop="step")
    assert plan == RunPlan(Precision.MIXED_BFLOAT16, True, Loop.STEP)
    assert plan.precision is Precision.MIXED_BFLOAT16
    assert plan.loop is Loop.STEP
    with pytest.raises(ValueError):
        RunPlan("auto", xla=True)
