"""Timing noise: a measurement's median and spread, and when a difference is real.

Two identical programs timed one after the other can differ by 1.3x on a loaded CPU, so a
single time (or the best of a few) says little. Here a measurement is a set of repeats: a
`Spread` gives its median and range, `clearly_faster` says whether one set beats another by
a margin with confidence, and `Ratios` summarises paired, interleaved rounds (A and B timed
in turn, so drift and load hit both alike) as a speedup with its range. What is inside the
noise is called so; nothing here times anything.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Spread:
    """The repeats of one measurement: median, lowest and highest.

    Attributes:
        samples: The usable repeats (finite and positive), in the order measured.

    Example:
        >>> s = Spread.of([1.0, 3.0, 2.0, float("nan")])
        >>> s.median, s.low, s.high, round(s.relative, 2)
        (2.0, 1.0, 3.0, 1.0)
    """

    samples: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """The spread of `values`, leaving out NaN, infinite, zero and negative ones."""
        return cls(tuple(float(v) for v in values if math.isfinite(v) and v > 0))

    @property
    def median(self) -> float:
        """The median repeat (NaN when there is none)."""
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def low(self) -> float:
        """The lowest repeat (NaN when there is none)."""
        return min(self.samples, default=math.nan)

    @property
    def high(self) -> float:
        """The highest repeat (NaN when there is none)."""
        return max(self.samples, default=math.nan)

    @property
    def relative(self) -> float:
        """``(high - low) / median``: the range as a fraction of the median."""
        return (self.high - self.low) / self.median if self.samples else math.nan


def clearly_faster(
    fast: Sequence[float], slow: Sequence[float], margin: float = 0.0, share: float = 0.8
) -> bool:
    """Whether `fast` beats `slow` by more than `margin`, with confidence.

    Repeats of the two timed in turn (as many of each: interleaved rounds) are compared
    round by round, so drift and load hit both alike; otherwise each repeat of `fast` is
    compared with the median of `slow`. `fast` wins when the median round has it quicker
    by at least `margin` and `fast` was quicker in at least `share` of the
    comparisons (all of them below five rounds): one round disturbed by a hiccup does not
    decide, and a difference that changes sign from round to round is inside the noise.
    (The median round is judged by ``fast - slow * (1 - margin) <= 0``, exact at the edge.)

    Args:
        fast: Times of the candidate said to be faster.
        slow: Times of the other candidate.
        margin: The fraction `fast` must be quicker by, e.g. 0.03.
        share: The fraction of comparisons `fast` must win.

    Returns:
        True when both have usable repeats and `fast` wins as above.

    Example:
        >>> clearly_faster([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], margin=0.05)
        True
        >>> clearly_faster([1.0, 2.2, 0.9], [2.0, 2.1, 1.9], margin=0.05)  # one round of 3 lost
        False
        >>> clearly_faster([1, 1, 1, 5, 1, 1, 1, 1, 1], [2] * 9, margin=0.05)  # one hiccup of 9
        True
        >>> clearly_faster([1.0, 1.2, 0.9, 1.1, 1.0], [1.1, 1.0, 1.0, 1.0, 1.05])  # mixed signs
        False
    """
    a, b = Spread.of(fast), Spread.of(slow)
    if not (a.samples and b.samples):
        return False
    if len(a.samples) == len(b.samples):
        pairs = list(zip(a.samples, b.samples, strict=True))
    else:
        pairs = [(f, b.median) for f in a.samples]
    needed = len(pairs) if len(pairs) < 5 else math.ceil(share * len(pairs))
    wins = sum(f < s for f, s in pairs)
    return statistics.median(f - s * (1.0 - margin) for f, s in pairs) <= 0 and wins >= needed


@dataclasses.dataclass(frozen=True)
class Ratios:
    """Paired rounds of a baseline and a candidate: the speedup and its range.

    Attributes:
        baseline: The baseline's time in each round.
        candidate: The candidate's time in the same rounds.
        margin: A speedup (or slowdown) smaller than this fraction is not called real.

    Example:
        >>> r = Ratios((2.0, 2.2, 2.1), (1.0, 1.0, 1.1))
        >>> round(r.speedup_percent), r.measurable
        (100, True)
        >>> Ratios((1.0, 1.1, 0.9), (1.05, 1.0, 0.95)).measurable
        False
    """

    baseline: tuple[float, ...]
    candidate: tuple[float, ...]
    margin: float = 0.02

    @property
    def ratios(self) -> Spread:
        """``baseline / candidate`` of each round whose two times are usable."""
        pairs = zip(self.baseline, self.candidate, strict=True)
        return Spread.of([b / c for b, c in pairs if b > 0 and c > 0])

    @property
    def medians(self) -> tuple[float, float]:
        """The baseline's and the candidate's median time over the rounds both could use.

        Example:
            >>> Ratios((2.0, 2.2, 2.1), (1.0, 1.0, 1.1)).medians
            (2.1, 1.0)
        """
        pairs = [(b, c) for b, c in zip(self.baseline, self.candidate, strict=True)
                 if b > 0 and c > 0]
        if not pairs:
            return math.nan, math.nan
        return statistics.median(b for b, _ in pairs), statistics.median(c for _, c in pairs)

    @property
    def speedup_percent(self) -> float:
        """The median round's speedup: ``(median ratio - 1) * 100``."""
        return (self.ratios.median - 1.0) * 100.0

    @property
    def range_percent(self) -> tuple[float, float]:
        """The lowest and highest round's speedup in percent."""
        spread = self.ratios
        return (spread.low - 1.0) * 100.0, (spread.high - 1.0) * 100.0

    @property
    def measurable(self) -> bool:
        """Whether every round (at least three) puts the difference beyond `margin`, one way."""
        spread = self.ratios
        if len(spread.samples) < 3:
            return False
        return spread.low >= 1.0 + self.margin or spread.high <= 1.0 / (1.0 + self.margin)
