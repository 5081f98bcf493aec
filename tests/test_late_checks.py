"""`LateChecks`: optimistic calls read one call late end exactly as guarded calls would.

The program here is a model of JAX's optimistic epoch (`engines/jax.py`) over a state
that is the list of steps applied: a call applies all its steps unchecked; it is
committed when it starts going and every step passes the cheap check, else its values
say "not committed", the flag the next call starts from is False, and the state it left
is junk; run again from the state it started from, each step is guarded: a good step
is applied, a "flaky" one (it fails the cheap check only: under loss scaling, a finite
gradient with a loss that is not) is skipped and the epoch goes on, a bad one stops it.
The driver reads each call's values after dispatching the next, as a streamed epoch
does, and stops reading at a stop. The oracle applies the same steps one by one,
guarded. Hypothesis draws the calls and their steps.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.engines.late_checks import LateCall, LateChecks

STEPS = st.lists(st.sampled_from(["ok"] * 6 + ["flaky", "bad"]), min_size=1, max_size=4)


class Program:
    def __init__(self):
        self.state: list[int] = []
        self.latch = True
        self.late = LateChecks(self.again, self.hold, lambda values: "stopped" not in values)
        self.counter = 0

    def hold(self, after: bool) -> None:
        self.latch = after

    def epoch(self, steps: list[tuple[int, str]]) -> list:
        going, first = self.latch, list(self.state)
        committed = going and all(kind == "ok" for _, kind in steps)
        self.state += [i if kind == "ok" else f"junk {i}" for i, kind in steps]
        values = [i for i, _ in steps] if committed else ["stopped"] * len(steps)
        self.hold(committed)
        self.late.add(LateCall(values, steps, None, going, first))
        return values

    def again(self, steps, ys, going, start):
        self.state[:] = start
        values, after = guarded(self.state, steps, going)
        return values, after, list(self.state)


def guarded(state: list[int], steps, going: bool) -> tuple[list, bool]:
    values = []
    for i, kind in steps:
        if going and kind == "ok":
            state.append(i)
            values.append(i)
        elif going and kind == "flaky":
            values.append("skipped")
        else:
            going = False
            values.append("stopped")
    return values, going


def numbered(calls: list[list[str]]) -> list[list[tuple[int, str]]]:
    count = iter(range(10**6))
    return [[(next(count), kind) for kind in call] for call in calls]


@settings(max_examples=300, deadline=None)
@given(st.lists(STEPS, min_size=1, max_size=6))
def test_calls_read_late_end_as_guarded_calls(kinds):
    calls = numbered(kinds)
    program, read, pending = Program(), [], None
    for call in calls:
        values = program.epoch(call)
        if pending is not None:
            read.append(program.late.confirm(pending))
            if "stopped" in read[-1]:
                break
        pending = values
    else:
        read.append(program.late.confirm(pending))
    program.late.settle()

    state, want, going = [], [], True
    for call in calls:
        values, going = guarded(state, call, going)
        want.append(values)
        if not going:
            break
    assert program.state == state
    assert read == want


def test_a_call_that_is_not_one_of_them_is_read_as_it_is():
    late = LateChecks(lambda *call: ("again", True, []), lambda after: None, lambda values: True)
    assert late.confirm("other values") == "other values"
