"""Trials: the timed `Candidate` records, and the interleaved rounds that time them.

Each candidate's throw-away program is built and warmed up (traced, compiled) first
(`gometal_keras.planning.trial_runner`); then the timed calls of every candidate run in rounds,
ABBA (A B, then B A, ...), so that drift and load hit all alike, and each `Candidate`
keeps the per-step time of every round (`Candidate.spread`). Rounds stop early once one
candidate is clearly ahead of all others (`noise.clearly_faster` by the decision's margin,
round by round, after `MIN_ROUNDS`), else at `MAX_ROUNDS` or when each candidate has had
`TRIAL_BUDGET` seconds. The clock is a
parameter, so the stopping rule is tested with a fake one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from gometal_keras.core.noise import Spread, clearly_faster
from gometal_keras.core.plan import RunPlan

#: Timed rounds: at least MIN_ROUNDS, at most MAX_ROUNDS; stop once a winner is clear or
#: each candidate has been timed for TRIAL_BUDGET seconds. Each call runs TRIAL_STEPS steps.
MIN_ROUNDS, MAX_ROUNDS, TRIAL_BUDGET, TRIAL_STEPS = 3, 9, 0.5, 8


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One timed way of training: its plan, its measured step time, whether it was sound.

    Attributes:
        plan: What was timed.
        seconds: Median measured seconds per step (NaN when its program failed).
        finite: Whether every trial step's loss was finite (a candidate is only kept if so).
        error: Why its program failed (it raised, did not finish in time, or computed
            losses that disagree with the CPU), or None.
        samples: Seconds per step of each timed round (empty: `seconds` is the only one).

    Example:
        >>> from gometal_keras.core.plan import Precision
        >>> plan = RunPlan(Precision.FLOAT32, xla=False)
        >>> Candidate(plan, math.nan, error="RuntimeError: no kernel").sound
        False
        >>> Candidate(plan, 2.0, samples=(1.0, 2.0, 4.0)).spread.high
        4.0
    """

    plan: RunPlan
    seconds: float
    finite: bool = True
    error: str | None = None
    samples: tuple[float, ...] = ()

    @property
    def sound(self) -> bool:
        """No error, a finite loss and a usable time."""
        ok = self.error is None and self.finite
        return ok and math.isfinite(self.seconds) and self.seconds > 0

    @property
    def spread(self) -> Spread:
        """The timed rounds' `Spread` (of `seconds` alone when no rounds were kept)."""
        return Spread.of(self.samples or (self.seconds,))

    def shown(self) -> str:
        """``"<label>: <error>"`` for a failed candidate, else its label."""
        return f"{self.plan.label()}: {self.error}" if self.error else self.plan.label()


def clear_winner(samples: Sequence[Sequence[float]], margin: float) -> int | None:
    """The index of the candidate that is `clearly_faster` than every other, or None.

    Example:
        >>> clear_winner([[2.0, 2.1, 2.0], [1.0, 1.1, 1.0]], margin=0.05)
        1
        >>> clear_winner([[1.0, 1.1, 1.0], [1.05, 0.95, 1.0]], margin=0.05) is None
        True
    """
    for i, mine in enumerate(samples):
        others = [s for j, s in enumerate(samples) if j != i]
        if others and all(clearly_faster(mine, s, margin) for s in others):
            return i
    return None


@dataclasses.dataclass
class Rounds:
    """Interleaved rounds as they happen: filled in place, so a caller that stopped
    waiting (a hung candidate) still reads every round that finished.

    Attributes:
        times: Per call, its round times in seconds.
        values: Per call, its last return value.
        errors: Per call, the error that dropped it, or None.
        running: The call in progress (None between calls).
    """

    times: list[list[float]]
    values: list[Any]
    errors: list[BaseException | None]
    running: int | None = None

    @classmethod
    def empty(cls, n: int) -> Rounds:
        """No round yet, for `n` calls."""
        return cls([[] for _ in range(n)], [None] * n, [None] * n)


def interleave(
    calls: Sequence[Callable[[], Any]],
    margin: float,
    clock: Callable[[], float] = time.perf_counter,
    rounds: Rounds | None = None,
) -> tuple[list[list[float]], list[Any], list[BaseException | None]]:
    """Time `calls` in ABBA rounds until a clear winner, the budget, or `MAX_ROUNDS`.

    Args:
        calls: One warmed-up call per candidate; each returns its last values.
        margin: The fraction a winner must be clearly faster by (`noise.clearly_faster`)
            to stop early.
        clock: Seconds, monotonic (`time.perf_counter`; a fake one in tests).
        rounds: Where to record the rounds as they finish (default: a new `Rounds`).

    Returns:
        Per call: its round times, its last return value, and the error that dropped it
        (a call that raises is left out of later rounds).

    Example:
        >>> times, _, errors = interleave([lambda: 1, lambda: 2], margin=0.05)
        >>> len(times[0]) == len(times[1]) >= MIN_ROUNDS, errors
        (True, [None, None])
    """
    rounds = rounds or Rounds.empty(len(calls))
    times, values, errors = rounds.times, rounds.values, rounds.errors
    for index in range(MAX_ROUNDS):
        order = range(len(calls)) if index % 2 == 0 else reversed(range(len(calls)))
        for i in order:
            if errors[i] is None:
                rounds.running, start = i, clock()
                try:
                    values[i] = calls[i]()
                except Exception as error:  # the candidate is dropped, its error kept
                    errors[i] = error
                    continue
                finally:
                    rounds.running = None
                times[i].append(clock() - start)
        alive = [t for t, e in zip(times, errors, strict=True) if e is None]
        if index + 1 >= MIN_ROUNDS and (
            len(alive) < 2
            or clear_winner(alive, margin) is not None
            or all(sum(t) >= TRIAL_BUDGET for t in alive)
        ):
            break
    return times, values, errors


def per_step(times: Sequence[float]) -> tuple[float, tuple[float, ...]]:
    """The median and the rounds of `times` (seconds per call of TRIAL_STEPS), per step.

    Example:
        >>> per_step([0.8, 1.6, 0.8])
        (0.1, (0.1, 0.2, 0.1))
    """
    samples = tuple(t / TRIAL_STEPS for t in times)
    return Spread.of(samples).median, samples
