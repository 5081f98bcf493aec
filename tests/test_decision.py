"""Tests for gometal_keras.planning.decision: `Candidate`, `Decision`, `choose` and friends.

Hypothesis generates lists of timed candidates (several plans per precision: XLA on and
off, fused and per-step loops; random positive step times, some of them non-finite, zero,
negative or with a non-finite loss) and `choose` is checked against an oracle written here
in plain Python over the timings. No test branches on a measured time: every time is made up.
"""

from __future__ import annotations

import json
import math
import statistics

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.jsondata import json_safe
from gometal_keras.core.plan import Loop, LossScaling, Precision, RunPlan
from gometal_keras.planning.candidates import candidates, rejected
from gometal_keras.planning.decision import (
    MIN_GAIN,
    Candidate,
    Decision,
    choose,
    fastest,
    kept,
    sole_candidate,
)

SETTINGS = settings(max_examples=60, deadline=None, database=None)

FP32, FP16, BF16 = Precision.FLOAT32, Precision.MIXED_FLOAT16, Precision.MIXED_BFLOAT16
GPU = DeviceInfo("jax", "cuda", "Fake GPU", True, True, True, compute_capability=(9, 0))

DEVICES = st.builds(
    DeviceInfo,
    backend=st.sampled_from(["tensorflow", "jax", "torch"]),
    kind=st.sampled_from(["cpu", "cuda", "metal"]),
    name=st.just("Fake device"),
    xla=st.booleans(),
    fp16_fast=st.booleans(),
    bf16_fast=st.booleans(),
)


@st.composite
def plans(draw: st.DrawFn) -> RunPlan:
    p = draw(st.sampled_from(Precision))
    scaling = LossScaling(2.0**15, 2000) if p is FP16 and draw(st.booleans()) else None
    return RunPlan(p, draw(st.booleans()), draw(st.sampled_from(Loop)), loss_scaling=scaling)


#: Step times as a timer could report them: mostly positive, some unusable.
GOOD_SECONDS = st.floats(min_value=1e-6, max_value=10.0, allow_nan=False, allow_subnormal=False)
BAD_SECONDS = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1e-3])
SECONDS = st.one_of(GOOD_SECONDS, GOOD_SECONDS, GOOD_SECONDS, BAD_SECONDS)
FINITE = st.sampled_from([True, True, True, True, False])  # was every trial loss finite?


def candidate_lists(seconds=SECONDS, finite=FINITE, min_size=1):
    one = st.builds(Candidate, plans(), seconds, finite)
    return st.lists(one, min_size=min_size, max_size=12)


# --- The oracle: plain Python over the timings. ---


def usable(c: Candidate) -> bool:
    return c.finite and 0 < c.seconds < math.inf  # NaN fails both comparisons


def oracle(timed: list[Candidate]) -> tuple[float, set[RunPlan]] | None:
    """The step time the chosen plan must have, and every plan that may be chosen."""
    ok = [c for c in timed if usable(c)]
    if not ok:
        return None
    f32 = [c.seconds for c in ok if c.plan.precision is FP32]
    mixed = [c.seconds for c in ok if c.plan.precision is not FP32]
    mixed_wins = bool(mixed) and (not f32 or min(mixed) <= min(f32) * (1 - MIN_GAIN))
    pool = [c for c in ok if (c.plan.precision is not FP32) == mixed_wins]
    target = min(c.seconds for c in pool)
    return target, {c.plan for c in pool if c.seconds == target}


def timed_seconds(timed: list[Candidate], plan: RunPlan) -> float:
    """The best usable time measured for `plan`."""
    return min(c.seconds for c in timed if c.plan == plan and usable(c))


def same_candidates(a: tuple[Candidate, ...], b: tuple[Candidate, ...]) -> bool:
    """Equal, where NaN seconds count as equal to NaN."""

    def key(c: Candidate) -> tuple:
        return (c.plan, c.finite, "nan" if math.isnan(c.seconds) else c.seconds)

    return [key(c) for c in a] == [key(c) for c in b]


# --- choose ---


@SETTINGS
@given(DEVICES, candidate_lists())
def test_choose_agrees_with_the_oracle(device, timed):
    expected = oracle(timed)
    if expected is None:
        with pytest.raises(RuntimeError, match="non-finite"):
            choose(device, timed)
        return
    decision = choose(device, timed)
    seconds, allowed = expected
    chosen = decision.chosen
    assert chosen in allowed
    assert decision.precision is chosen.precision
    assert timed_seconds(timed, chosen) == seconds
    # The chosen plan was timed and sound.
    assert any(c.plan == chosen and c.sound for c in timed)
    # It is the fastest of its precision's sound candidates.
    same = [c.seconds for c in timed if usable(c) and c.plan.precision is chosen.precision]
    assert seconds == min(same)
    # Mixed precision only with a clear gain over float32's best sound plan.
    f32 = [c.seconds for c in timed if usable(c) and c.plan.precision is FP32]
    if chosen.precision.mixed and f32:
        assert seconds <= min(f32) * (1 - MIN_GAIN)
    # Every timed candidate is recorded, in order; the rejected precisions with reasons.
    assert decision.candidates == tuple(timed)
    assert decision.skipped == rejected(device)


@SETTINGS
@given(
    DEVICES,
    st.lists(st.floats(1e-4, 1.0), min_size=5, max_size=9),
    st.floats(0.5, 0.9),
    st.floats(0.1, 0.45),
    st.booleans(),
)
def test_a_noisy_faster_median_does_not_hide_a_clear_winner(device, f32, gain, fast, flip):
    # One mixed precision wins every round by a clear margin; the other has the lower
    # median but loses about half of the rounds (inside the noise): the clear one is kept.
    sure = [t * gain for t in f32]
    noisy = [t * (fast * gain if i % 2 == 0 else 2.0) for i, t in enumerate(f32)]
    clear_p, noisy_p = (BF16, FP16) if flip else (FP16, BF16)
    timed = [
        Candidate(RunPlan(FP32, True), statistics.median(f32), samples=tuple(f32)),
        Candidate(RunPlan(noisy_p, True), statistics.median(noisy), samples=tuple(noisy)),
        Candidate(RunPlan(clear_p, True), statistics.median(sure), samples=tuple(sure)),
    ]
    assume(statistics.median(noisy) < statistics.median(sure))
    assert choose(device, timed).precision is clear_p


@SETTINGS
@given(DEVICES, candidate_lists(seconds=GOOD_SECONDS, finite=st.just(True)))
def test_float32_kept_unless_a_mixed_plan_wins_by_min_gain(device, timed):
    f32 = [c.seconds for c in timed if c.plan.precision is FP32]
    mixed = [c.seconds for c in timed if c.plan.precision.mixed]
    assume(f32)
    decision = choose(device, timed)
    if not mixed or min(mixed) > min(f32) * (1 - MIN_GAIN):
        assert decision.precision is FP32
        assert timed_seconds(timed, decision.chosen) == min(f32)
    else:
        assert decision.precision.mixed
        assert timed_seconds(timed, decision.chosen) == min(mixed)


@SETTINGS
@given(DEVICES, candidate_lists())
def test_reason_names_the_chosen_precision(device, timed):
    assume(oracle(timed) is not None)
    decision = choose(device, timed)
    assert decision.precision.value in decision.reason
    if decision.precision is FP32:
        assert "float32 kept" in decision.reason
    else:
        assert f"{decision.precision.value} chosen" in decision.reason


@SETTINGS
@given(DEVICES, candidate_lists())
def test_reason_never_prints_nan(device, timed):
    assume(oracle(timed) is not None)
    # The reason compares with float32; see test_reason_without_a_sound_float32 for the case
    # where float32 has no sound plan.
    assume(any(usable(c) and c.plan.precision is FP32 for c in timed))
    reason = choose(device, timed).reason
    assert "nan" not in reason.lower()


def test_reason_without_a_sound_float32():
    timed = [
        Candidate(RunPlan(FP32, True), 1.0, finite=False),
        Candidate(RunPlan(BF16, True), 0.5),
    ]
    reason = choose(GPU, timed).reason
    assert "mixed_bfloat16 chosen" in reason
    assert "nan" not in reason


def test_reason_when_every_mixed_plan_was_unsound():
    timed = [
        Candidate(RunPlan(FP32, True), 1.0),
        Candidate(RunPlan(FP16, True), 0.5, finite=False),
        Candidate(RunPlan(BF16, True), math.nan),
    ]
    decision = choose(GPU, timed)  # an H200: nothing is rejected
    assert decision.precision is FP32
    assert "()" not in decision.reason


@pytest.mark.parametrize("base", [1e-6, 7.5e-5, 2e-3, 1.0, 37.5, 1e4])
def test_min_gain_edge_exactly(base):
    edge = base * (1 - MIN_GAIN)
    fp32 = Candidate(RunPlan(FP32, True), base)
    slow32 = Candidate(RunPlan(FP32, False), base * 10)  # only float32's best plan counts

    def chosen(mixed_seconds: float, precision: Precision = BF16) -> RunPlan:
        mixed = Candidate(RunPlan(precision, True, Loop.STEP), mixed_seconds)
        slow = Candidate(RunPlan(FP16 if precision is BF16 else BF16, True), base * 3)
        return choose(GPU, [slow32, mixed, fp32, slow]).chosen

    for precision in (FP16, BF16):
        assert chosen(edge, precision).precision is precision
        assert chosen(math.nextafter(edge, 0.0), precision).precision is precision
        above = chosen(math.nextafter(edge, math.inf), precision)
        assert above == fp32.plan
        assert chosen(base, precision) == fp32.plan  # as fast is no gain
        assert chosen(math.nextafter(base, 0.0), precision) == fp32.plan  # nor a hair faster
    kept_reason = choose(GPU, [fp32, Candidate(RunPlan(BF16, True), base)]).reason
    assert f"{MIN_GAIN:.0%}" in kept_reason


@SETTINGS
@given(plans(), SECONDS, FINITE)
def test_candidate_is_sound_with_a_finite_loss_and_a_usable_time(plan, seconds, finite):
    assert Candidate(plan, seconds, finite).sound == usable(Candidate(plan, seconds, finite))
    assert not Candidate(plan, seconds, finite=False).sound


def test_unsound_candidates_never_win():
    for bad in (
        dict(seconds=math.nan),
        dict(seconds=math.inf),
        dict(seconds=0.0),
        dict(seconds=-1.0),
        dict(seconds=1e-9, finite=False),
    ):
        timed = [Candidate(RunPlan(FP32, True), 1.0), Candidate(RunPlan(FP16, True), **bad)]
        assert not timed[1].sound, bad
        assert choose(GPU, timed).chosen == timed[0].plan, bad
        with pytest.raises(RuntimeError):
            choose(GPU, timed[1:])


def test_nothing_timed_raises():
    with pytest.raises(RuntimeError):
        choose(GPU, [])


# --- fastest, kept, sole_candidate ---


@SETTINGS
@given(candidate_lists(min_size=0))
def test_fastest(timed):
    best = fastest(timed)
    ok = [c for c in timed if usable(c)]
    if not ok:
        assert best is None
        return
    assert best in ok
    assert best.seconds == min(c.seconds for c in ok)


@SETTINGS
@given(plans(), candidate_lists(min_size=0))
def test_kept(plan, timed):
    decision = kept(plan, timed)
    assert decision.chosen == plan
    assert plan.policy in decision.reason
    assert ("measurement" in decision.reason) == bool(timed)
    assert decision.candidates == tuple(timed)
    assert decision.skipped == {}


@SETTINGS
@given(DEVICES)
def test_sole_candidate(device):
    plan = RunPlan(FP32, device.xla)
    if len(candidates(device)) > 1:
        with pytest.raises(ValueError, match="several candidate precisions"):
            sole_candidate(device, plan)
        return
    decision = sole_candidate(device, plan)
    assert decision.chosen == plan
    assert decision.candidates == ()
    assert decision.skipped == rejected(device)
    assert "float32 kept" in decision.reason
    assert "nan" not in decision.reason
    for precision, why in rejected(device).items():
        assert precision.value in decision.reason
        assert why in decision.reason


# --- Decision: JSON and round trips. ---


@st.composite
def decisions(draw: st.DrawFn, seconds=SECONDS) -> Decision:
    """A decision as `choose`, `kept` or hand-made code may produce it."""
    timed = draw(candidate_lists(seconds=seconds, min_size=0))
    device = draw(DEVICES)
    how = draw(st.sampled_from(["choose", "kept", "manual"]))
    if how == "choose" and oracle(timed) is not None:
        return choose(device, timed)
    if how == "kept":
        return kept(draw(plans()), timed)
    reason = draw(st.text(max_size=30))
    skipped = draw(st.dictionaries(st.sampled_from([FP16, BF16]), st.text(max_size=10)))
    return Decision(draw(plans()), reason, tuple(timed), skipped)


@SETTINGS
@given(decisions())
def test_to_dict_is_strict_json_once_non_finite_numbers_are_replaced(decision):
    data = decision.to_dict()
    text = json.dumps(json_safe(data), allow_nan=False)
    back = json.loads(text)
    assert back["precision"] == decision.chosen.policy
    assert back["chosen"] == decision.chosen.label()
    assert back["reason"] == decision.reason
    assert RunPlan.from_dict(back["plan"]) == decision.chosen
    assert set(back["candidates"]) == {c.plan.label() for c in decision.candidates}
    assert len(back["timed"]) == len(decision.candidates)
    assert back["skipped"] == {p.value: why for p, why in decision.skipped.items()}


@SETTINGS
@given(decisions())
def test_to_dict_marks_unsound_losses_as_nan(decision):
    shown = decision.to_dict()["candidates"]
    labels = [c.plan.label() for c in decision.candidates]
    for c in decision.candidates:
        if labels.count(c.plan.label()) > 1:
            continue  # a plan timed twice is shown once; "timed" keeps both
        value = shown[c.plan.label()]
        if c.finite:
            assert value == c.seconds or (math.isnan(value) and math.isnan(c.seconds))
        else:
            assert math.isnan(value)


@SETTINGS
@given(decisions(seconds=GOOD_SECONDS))
def test_round_trip_with_finite_seconds(decision):
    assert Decision.from_dict(decision.to_dict()) == decision
    text = json.dumps(json_safe(decision.to_dict()), allow_nan=False)
    assert Decision.from_dict(json.loads(text)) == decision


@SETTINGS
@given(decisions())
def test_round_trip_with_any_seconds(decision):
    # As a checkpoint stores it: Python's json, NaN and infinities written as such.
    for data in (decision.to_dict(), json.loads(json.dumps(decision.to_dict()))):
        back = Decision.from_dict(data)
        assert back.chosen == decision.chosen
        assert back.reason == decision.reason
        assert back.skipped == decision.skipped
        assert same_candidates(back.candidates, decision.candidates)


@settings(max_examples=40, deadline=None)
@given(base=st.lists(st.floats(0.5, 2.0), min_size=5, max_size=9), data=st.data())
def test_a_mixed_plan_faster_by_the_medians_but_not_round_by_round_is_explained(base, data):
    # The mixed plan wins its median round by far but loses too many rounds to be kept.
    n = len(base)
    needed = math.ceil(0.8 * n)
    lost = data.draw(st.integers(n - needed + 1, (n - 1) // 2))
    lose = set(data.draw(st.permutations(range(n)))[:lost])
    mixed = [b * (1.5 if i in lose else 0.5) for i, b in enumerate(base)]
    assume(statistics.median(mixed) < statistics.median(base) * 0.9)  # faster by the medians
    fp32, bf16 = RunPlan(Precision.FLOAT32, True), RunPlan(Precision.MIXED_BFLOAT16, True)
    timed = [Candidate(fp32, statistics.median(base), samples=tuple(base)),
             Candidate(bf16, statistics.median(mixed), samples=tuple(mixed))]
    decision = choose(DeviceInfo("jax", "cuda", "GPU", True, True, True), timed)
    assert decision.chosen.precision is Precision.FLOAT32
    assert f"in only {n - lost} of {n} interleaved rounds" in decision.reason, decision.reason
    assert "not clearly faster" in decision.reason
