"""The step-commit rule (`engines.commit.StepCommit`): one definition, checked against numpy.

Hypothesis draws steps: a loss, gradients, what the update wrote and the forward pass's new
state, each finite or holding a NaN or an infinity (float32 or float16 values, integer
ones and missing gradients among them), the epoch still going or stopped (a Python
boolean or a tensor of the backend in use), under the guard, loss scaling or neither.
The oracle is the rule as `docs/guarantees.md` states it, case by case, in numpy. The
optimistic call is checked the same way: over a drawn call of steps whose written values
stay non-finite once they are (as an optimizer's do), it commits exactly when the steps
checked one by one would each have kept everything it kept. Last, no engine module writes
the rule again: they call it.
"""

from __future__ import annotations

import io
import itertools
import pathlib
import tokenize

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.core.plan import LossScaling, Precision, RunPlan
from gometal_keras.engines import commit, guard
from gometal_keras.engines.commit import StepCommit

#: Guarded, loss-scaled, unguarded.
ALL_RULES = (
    StepCommit(guarded=True, scaled=False),
    StepCommit(False, True),
    StepCommit(False, False),
)
RULES = st.sampled_from(ALL_RULES)
BAD = (np.nan, np.inf, -np.inf)


@st.composite
def tensors(draw, finite: bool | None = None) -> np.ndarray:
    """A float32/float16 array (scalar to 2-D), finite or holding one NaN or infinity."""
    shape = draw(st.sampled_from([(), (3,), (2, 2)]))
    dtype = draw(st.sampled_from(["float32", "float16"]))
    out = np.asarray(draw(st.floats(-2, 2, width=16)) + np.zeros(shape), dtype=dtype)
    if finite is None:
        finite = draw(st.booleans())
    if not finite:
        out.reshape(-1)[draw(st.integers(0, out.size - 1))] = draw(st.sampled_from(BAD))
    return out


INTS = st.just(np.array(7, "int64"))  # an iteration count: never checked
PARTS = ("loss", "grads", "written", "forward")


@st.composite
def group(draw, bad: bool, gaps: bool = False) -> list:
    """Values of one part of a step: finite ones, integers (and Nones where `gaps`), and
    one value that is not finite where `bad`."""
    fillers = [tensors(finite=True), INTS, *([st.none()] if gaps else [])]
    out = draw(st.lists(st.one_of(*fillers), max_size=2))
    if bad:
        out.insert(draw(st.integers(0, len(out))), draw(tensors(finite=False)))
    return out


@st.composite
def steps(draw, metrics: int | None = None) -> dict:
    """One step: loss and metrics, gradients (None: no gradient), written, forward; the
    parts that hold a value that is not finite drawn first (none, one, or several)."""
    bad = draw(st.sets(st.sampled_from(PARTS), max_size=3))
    loss = draw(st.sampled_from(BAD)) if "loss" in bad else 0.25
    size = draw(st.integers(0, 2)) if metrics is None else metrics
    metrics = draw(st.lists(st.floats(-1, 1, width=32), min_size=size, max_size=size))
    return {
        "values": np.array([loss, *metrics], "float32"),
        "grads": draw(group("grads" in bad, gaps=True)),
        "written": draw(group("written" in bad)),
        "forward": draw(group("forward" in bad)),
    }


def finite(values) -> bool:
    arrays = [np.asarray(v) for v in values if v is not None]
    return all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f")


def oracle(rule: StepCommit, going: bool, step: dict) -> tuple[tuple[bool, bool, bool], float]:
    """(update kept, forward kept, going after), and the loss reported: the documented rule."""
    loss = float(step["values"][0])
    loss_ok, grads_ok = bool(np.isfinite(loss)), finite(step["grads"])
    written_ok, forward_ok = finite(step["written"]), finite(step["forward"])
    if rule.guarded:  # a transaction: everything finite, or nothing kept and NaN
        ok = going and loss_ok and grads_ok and written_ok and forward_ok
        return (ok, ok, ok), (loss if ok else np.nan)
    if not rule.scaled:  # the update always; the forward state only from a sound step
        return (True, loss_ok and grads_ok, going), loss
    if not going:  # an earlier step diverged
        flags = (False, False, False)
    elif loss_ok and grads_ok:  # committed, or a divergence when the update is not finite
        flags = (written_ok, written_ok, written_ok)
    elif not grads_ok:  # the loss scaler skipped it: its update only backs off the scale
        flags = (True, False, True)
    else:  # a finite gradient with a loss that is not: skipped, nothing of it kept
        flags = (False, False, True)
    return flags, (loss if flags[2] else guard.DIVERGED)


def as_flag(going: bool, tensor: bool):
    return keras.ops.convert_to_tensor(going) if tensor else going


def check_step(rule: StepCommit, going: bool, tensor: bool, step: dict) -> None:
    """The rule's verdict, report and keep for `step` against the oracle's."""
    verdict = commit.decided(
        rule.verdict(
            as_flag(going, tensor), step["values"], step["grads"], step["written"], step["forward"]
        )
    )
    flags, loss = oracle(rule, going, step)
    assert tuple(verdict) == flags, (rule, going, step)
    assert all(isinstance(f, bool) for f in verdict)
    reported = np.asarray(keras.ops.convert_to_numpy(rule.report(step["values"], verdict.going)))
    np.testing.assert_array_equal(reported, [loss, *step["values"][1:]])
    kept = StepCommit.keep(verdict, ("new", "old"), ("new", "old"), lambda f, n, o: n if f else o)
    assert kept == tuple("new" if f else "old" for f in flags[:2])


@settings(max_examples=100, deadline=None)
@given(rule=RULES, going=st.booleans(), tensor=st.booleans(), step=steps())
def test_a_step_keeps_and_reports_what_the_rule_says(rule, going, tensor, step):
    check_step(rule, going, tensor, step)


@pytest.mark.parametrize("rule", ALL_RULES, ids=str)
def test_every_case_of_a_step(rule):
    """Each rule, going or not, with every subset of the parts not finite."""
    good, inf = np.ones(3, "float32"), np.array([1.0, np.inf], "float16")
    for going, tensor in itertools.product((True, False), repeat=2):
        for bad in itertools.product((False, True), repeat=len(PARTS)):
            part = dict(zip(PARTS, bad, strict=True))
            step = {
                "values": np.array([np.nan if part["loss"] else 0.5, 2.0], "float32"),
                **{name: [good, inf if part[name] else good] for name in PARTS[1:]},
            }
            check_step(rule, going, tensor, step)


@st.composite
def calls(draw) -> tuple[StepCommit, bool, list[dict]]:
    """An optimistic call: its rule, whether it starts going, and 1-4 steps whose written
    values, once not finite, stay so (under the guard a gradient that is not finite makes
    them not finite; a step the loss scaler skips writes only the scale)."""
    rule = draw(st.sampled_from([StepCommit(True, False), StepCommit(False, True)]))
    count, metrics = draw(st.integers(1, 4)), draw(st.integers(0, 2))
    overflow = draw(st.one_of(st.none(), st.integers(0, count - 1)))  # an update overflows
    written_ok, out = True, []
    for i in range(count):
        step = draw(steps(metrics))
        skipped = rule.scaled and not finite(step["grads"])
        if not skipped:
            written_ok = written_ok and i != overflow and (rule.scaled or finite(step["grads"]))
        step["written"] = [np.array([1.0, 2.0] if written_ok else [1.0, np.nan], "float32")]
        out.append(step)
    return rule, draw(st.booleans()), out


def host(flag) -> bool:
    """A flag of the rule, read on the host."""
    return flag if isinstance(flag, bool) else bool(keras.ops.convert_to_numpy(flag))


def check_call(rule: StepCommit, going: bool, tensor: bool, steps_: list[dict]) -> None:
    """An optimistic call over `steps_` against the steps checked one by one (the oracle)."""
    ok, forward = as_flag(True, tensor), []
    for step in steps_:
        verdict = rule.optimistic(ok, step["values"], step["grads"], step["forward"])
        assert verdict.update is True
        ok, forward = verdict.going, [*forward, host(verdict.forward)]
    committed = host(rule.call_verdict(as_flag(going, tensor), ok, steps_[-1]["written"]))
    alive, every = going, True
    for step, optimistic_forward in zip(steps_, forward, strict=True):
        (update, keep_forward, alive), _ = oracle(rule, alive, step)
        every = every and update and alive
        if every:  # a step the call keeps: its forward state as the step's own verdict
            assert optimistic_forward == keep_forward
    assert committed == every, (rule, going, steps_)
    # Its values carry the verdict: all or nothing.
    rows = np.stack([step["values"] for step in steps_])
    if not committed:
        rows = np.stack([keras.ops.convert_to_numpy(rule.report(row, False)) for row in rows])
    all_diverged = rule.scaled and bool((rows[:, 0] == guard.DIVERGED).all())
    assert rule.committed(rows) == (committed and not all_diverged)


@settings(max_examples=80, deadline=None)
@given(call=calls(), tensor=st.booleans())
def test_an_optimistic_call_commits_exactly_when_every_step_would(call, tensor):
    check_call(*call[:2], tensor, call[2])


@pytest.mark.parametrize("rule", ALL_RULES[:2], ids=str)
def test_every_case_of_a_one_step_optimistic_call(rule):
    """Each rule, going or not, its update overflowing or not, every subset of the step's
    loss, gradients and forward state not finite."""
    good, nan = np.ones(2, "float32"), np.array([np.nan, 1.0], "float32")
    for going, overflow in itertools.product((True, False), repeat=2):
        for bad in itertools.product((False, True), repeat=3):
            loss_bad, grads_bad, forward_bad = bad
            # Under the guard a gradient that is not finite spreads to what the update
            # writes; under loss scaling such a step is skipped: it writes only the scale.
            skipped = grads_bad and rule.scaled
            written_bad = (overflow and not skipped) or (grads_bad and rule.guarded)
            step = {
                "values": np.array([np.inf if loss_bad else 0.5], "float32"),
                "grads": [good, nan if grads_bad else good],
                "written": [nan if written_bad else good],
                "forward": [nan if forward_bad else good],
            }
            check_call(rule, going, False, [step])


def test_the_plan_picks_the_rule():
    plan = RunPlan(Precision.FLOAT32, xla=False)
    assert StepCommit.of(plan) == StepCommit(guarded=True, scaled=False)
    assert StepCommit.of(plan.replace(guard=False)) == StepCommit(False, False)
    fp16 = RunPlan(Precision.MIXED_FLOAT16, xla=True, loss_scaling=LossScaling(8.0, 5))
    assert StepCommit.of(fp16) == StepCommit(guarded=False, scaled=True)
    assert StepCommit.of(fp16.replace(guard=True)) == StepCommit(guarded=True, scaled=False)


def test_the_select_picks_new_or_old_values():
    new, old = ([np.ones(2, "float32")], [np.zeros(1, "int32")]), ([np.zeros(2, "float32")], [7])
    for flag in (True, False):
        got = commit.select(keras.ops.convert_to_tensor(flag), new, old)
        want = new if flag else old
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a[0]), b[0])


ENGINES = pathlib.Path(commit.__file__).parent
#: Names that spell the rule out: a finiteness test, the stopped losses, the old pieces.
RULE_NAMES = {
    "isfinite",
    "is_finite",
    "isnan",
    "all_finite",
    "logical_or",
    "logical_not",
    "DIVERGED",
    "nan",
    "scaled_verdict",
    "scaled_reported",
    "reported",
    "call_committed",
}


def names(path: pathlib.Path) -> set[str]:
    """The identifiers of a module's code (not its comments or strings)."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return {t.string for t in tokens if t.type == tokenize.NAME}


@pytest.mark.parametrize("module", ["tensorflow.py", "torch.py", "jax/program.py"])
def test_no_engine_writes_the_rule_again(module):
    used = names(ENGINES / module)
    assert not used & RULE_NAMES, f"{module} spells the step commit out: {used & RULE_NAMES}"
    assert {"verdict", "report", "keep"} <= used, f"{module} does not call the rule"


def test_the_rule_has_one_home():
    for module in ("guard.py", "late_checks.py", "base.py"):
        found = names(ENGINES / module) & (RULE_NAMES - {"isfinite", "all_finite", "DIVERGED"})
        assert not found, f"{module}: {found}"
    assert not names(ENGINES / "late_checks.py") & RULE_NAMES  # it reads calls, not steps
    for module in ("torch.py", "jax/program.py"):  # the optimistic call: the same rule
        assert {"optimistic", "call_verdict"} <= names(ENGINES / module), module
