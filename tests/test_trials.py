"""Trials with a fake timer: interleaved rounds, the confidence rule, early stopping.

A fake clock advances by a scripted time on each call, so nothing here depends on how fast
this machine is. The drift of a loaded machine is modelled as a factor per round that hits
every candidate of that round alike (plus a small jitter of each call): the interleaved
rounds, read with `noise.clearly_faster`, must then keep float32 when mixed precision is
within the noise, and keep a clear winner after fewer timed calls than the trials before
this change made (`OLD_REPEATS` timed calls per candidate).
"""

from __future__ import annotations

import math

import pytest
from helpers import oracle_clearly_faster
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.plan import Precision, RunPlan
from gometal_keras.planning import trials
from gometal_keras.planning.decision import MIN_GAIN, choose
from gometal_keras.planning.trials import Candidate, clear_winner, interleave, per_step

SETTINGS = settings(max_examples=25, deadline=None, database=None)
GPU = DeviceInfo("jax", "cuda", "Fake GPU", True, True, True, compute_capability=(9, 0))
FP32, BF16 = RunPlan(Precision.FLOAT32, True), RunPlan(Precision.MIXED_BFLOAT16, True)
#: Timed calls per candidate before this change (TRIAL_REPEATS of the old autotune).
OLD_REPEATS = 5


class FakeClock:
    """A clock that only moves when a fake call runs."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[int] = []

    def __call__(self) -> float:
        return self.now


def fake_calls(clock: FakeClock, seconds: list[float], drift: list[float], jitter: list[float]):
    """Call i takes ``seconds[i] * drift[round] * jitter[...]`` on `clock`."""
    counts = [0] * len(seconds)

    def make(i: int):
        def call():
            r = counts[i]
            clock.now += seconds[i] * drift[r % len(drift)] * jitter[(r + i) % len(jitter)]
            counts[i] += 1
            clock.calls.append(i)
            return i

        return call

    return [make(i) for i in range(len(seconds))], counts


DRIFT = st.lists(st.floats(0.7, 1.4), min_size=trials.MAX_ROUNDS, max_size=trials.MAX_ROUNDS)
JITTER = st.lists(st.floats(0.995, 1.005), min_size=4, max_size=4)


def candidates_of(times: list[list[float]]) -> list[Candidate]:
    return [Candidate(plan, *per_step(t)[:1], samples=per_step(t)[1]) for plan, t in
            zip((FP32, BF16), times, strict=True)]  # fmt: skip


@SETTINGS
@given(DRIFT, JITTER, st.floats(-0.02, 0.02), st.floats(1e-4, 1.0))  # inside the 3 % margin
def test_within_noise_keeps_float32(drift, jitter, gain, base):
    clock = FakeClock()
    calls, _ = fake_calls(clock, [base, base * (1 - gain)], drift, jitter)
    times, _, errors = interleave(calls, MIN_GAIN, clock)
    assert errors == [None, None]
    decision = choose(GPU, candidates_of(times))
    assert decision.precision is Precision.FLOAT32
    assert "no measurable difference" in decision.reason


@SETTINGS
@given(DRIFT, JITTER, st.floats(0.3, 0.6), st.floats(1e-4, 0.01))
def test_clear_winner_is_kept_after_fewer_calls_than_before(drift, jitter, ratio, base):
    # Drift within a round hits both alike, so even a 2x drift between rounds cannot hide a
    # mixed plan that takes at most 60% of float32's time in every round. Budget not reached.
    drift = [1.0 + (d - 1.0) * 0.25 for d in drift]  # at most +-10% between rounds
    clock = FakeClock()
    calls, counts = fake_calls(clock, [base, base * ratio], drift, jitter)
    times, _, _ = interleave(calls, MIN_GAIN, clock)
    assert counts == [trials.MIN_ROUNDS] * 2
    assert max(counts) < OLD_REPEATS
    decision = choose(GPU, candidates_of(times))
    assert decision.precision is Precision.MIXED_BFLOAT16
    assert decision.chosen == BF16


def test_rounds_alternate_their_order():
    clock = FakeClock()
    calls, _ = fake_calls(clock, [1e-3, 1e-3, 1e-3], [1.0], [1.0])
    interleave(calls, MIN_GAIN, clock)
    assert clock.calls[:9] == [0, 1, 2, 2, 1, 0, 0, 1, 2]


def test_unclear_rounds_stop_at_the_budget_or_the_cap():
    clock = FakeClock()
    calls, counts = fake_calls(clock, [1.0, 1.0], [1.0, 1.1], [1.0])  # 1 s a call
    interleave(calls, MIN_GAIN, clock)
    assert counts == [trials.MIN_ROUNDS] * 2  # budget (0.5 s each) spent: the minimum
    clock = FakeClock()
    calls, counts = fake_calls(clock, [1e-6, 1e-6], [1.0, 1.1], [1.0])  # never clear
    interleave(calls, MIN_GAIN, clock)
    assert counts == [trials.MAX_ROUNDS] * 2


def test_a_call_that_raises_is_dropped_and_the_rest_go_on():
    clock = FakeClock()
    calls, _ = fake_calls(clock, [1e-3, 2e-3], [1.0], [1.0])

    def broken():
        raise RuntimeError("no kernel")

    times, values, errors = interleave([broken, *calls], MIN_GAIN, clock)
    assert isinstance(errors[0], RuntimeError) and times[0] == []
    assert errors[1:] == [None, None] and values[1:] == [0, 1]
    assert len(times[1]) == len(times[2]) == trials.MIN_ROUNDS  # 2x: clear at once


@SETTINGS
@given(st.lists(st.lists(st.floats(1e-4, 1.0), min_size=1, max_size=6), min_size=1, max_size=4),
       st.floats(0.0, 0.2))  # fmt: skip
def test_clear_winner_agrees_with_a_plain_oracle(samples, margin):
    def oracle_clear(i):
        others = [s for j, s in enumerate(samples) if j != i]
        return bool(others) and all(oracle_clearly_faster(samples[i], s, margin) for s in others)

    found = clear_winner(samples, margin)
    expected = [i for i in range(len(samples)) if oracle_clear(i)]
    assert (found is None) == (not expected)
    if found is not None:
        assert found == expected[0]


def test_per_step_divides_by_the_steps_of_a_call():
    median, samples = per_step([trials.TRIAL_STEPS * 0.5, trials.TRIAL_STEPS * 0.25])
    assert samples == (0.5, 0.25) and math.isclose(median, 0.375)


@pytest.mark.parametrize("seconds", [math.nan, 0.0, -1.0])
def test_unusable_times_leave_no_spread(seconds):
    assert Candidate(FP32, seconds).spread.samples == ()
