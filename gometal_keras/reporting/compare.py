"""Compare two training runs: speedup, loss difference and the demo's verdicts.

The comparison only reads `TrainingRun` records; it never trains. It keeps the Go-Metal
demo's thresholds (speedup above 50 % is "Excellent", above 20 % "Good"; a loss difference
below 0.05 is "well preserved", below 0.1 a "minor difference") but is honest about the
rest: a speedup of zero or less is "No speedup", and a non-finite loss is "diverged".

Timing: by default the first epoch, which holds one-off tracing and compilation, is left
out (``timing="steady"``); ``timing="total"`` counts every epoch. When the two runs ran a
different number of epochs (early stop), comparing sums would reward the run that stopped
first, so the mean time per epoch is compared instead; `Comparison.basis` says which.

Noise: one run after the other, drift and load can make identical programs differ by 30 %.
Given ``rounds`` (the two precisions' epochs timed in turn, see the demo), the speedup is
the ratio of the two precisions' median round times (the medians a report shows beside it),
with the range of the rounds' own ratios, and a difference that not every round shows
beyond `noise.Ratios.margin` is "No measurable difference", never a verdict.

One truth: a `Comparison` holds the one figure (`speedup_percent`), its range, its verdict
and its sign (`outcome`), and says them in words (`headline`, `summary`); the console
report, the notes, the plot title and the JSON all read these, never the phases' own times.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence
from typing import Any

from gometal_keras.core.jsondata import json_safe
from gometal_keras.core.noise import Ratios, Spread
from gometal_keras.training.record import TrainingRun

#: Speedup (percent) above which the verdict is "Excellent".
SPEEDUP_EXCELLENT_PERCENT = 50.0
#: Speedup (percent) above which the verdict is "Good".
SPEEDUP_GOOD_PERCENT = 20.0
#: Speedup (percent) above which the verdict is "Modest"; at or below it is "No speedup".
SPEEDUP_MODEST_PERCENT = 0.0
#: Final-loss difference below which convergence is "well preserved".
LOSS_WELL_PRESERVED = 0.05
#: Final-loss difference below which convergence shows a "minor difference".
LOSS_MINOR_DIFFERENCE = 0.1

#: Valid values of ``timing``.
TIMINGS = ("steady", "total")
#: `Comparison.basis` when both runs ran the same number of epochs: summed epoch times.
BASIS_TOTAL = "total time"
#: `Comparison.basis` when the epoch counts differ: mean seconds per epoch.
BASIS_PER_EPOCH = "time per epoch"


class SpeedupVerdict(str, enum.Enum):
    """How much faster the candidate was than the baseline."""

    EXCELLENT = "Excellent"
    GOOD = "Good"
    MODEST = "Modest"
    NO_SPEEDUP = "No speedup"
    NO_DIFFERENCE = "No measurable difference"

    def __str__(self) -> str:
        return self.value


class Outcome(str, enum.Enum):
    """The sign of a comparison, as every report says it."""

    FASTER = "faster"
    SLOWER = "slower"
    SAME = "no measurable difference"
    UNKNOWN = "not comparable"

    def __str__(self) -> str:
        return self.value


class ConvergenceVerdict(str, enum.Enum):
    """How close the candidate's final loss is to the baseline's."""

    WELL_PRESERVED = "well preserved"
    MINOR = "minor difference"
    SIGNIFICANT = "significant difference"
    DIVERGED = "diverged"


def speedup_verdict(speedup_percent: float) -> SpeedupVerdict:
    """Classify a speedup with the demo's thresholds.

    Args:
        speedup_percent: ``(t_baseline / t_candidate - 1) * 100``.

    Returns:
        EXCELLENT above 50, GOOD above 20, MODEST above 0, otherwise (NaN included)
        NO_SPEEDUP.

    Example:
        >>> speedup_verdict(70.4).value
        'Excellent'
    """
    if speedup_percent > SPEEDUP_EXCELLENT_PERCENT:
        return SpeedupVerdict.EXCELLENT
    if speedup_percent > SPEEDUP_GOOD_PERCENT:
        return SpeedupVerdict.GOOD
    if speedup_percent > SPEEDUP_MODEST_PERCENT:
        return SpeedupVerdict.MODEST
    return SpeedupVerdict.NO_SPEEDUP


def convergence_verdict(loss_difference: float) -> ConvergenceVerdict:
    """Classify a final-loss difference with the demo's thresholds.

    Args:
        loss_difference: ``|final_loss_baseline - final_loss_candidate|``.

    Returns:
        WELL_PRESERVED below 0.05, MINOR below 0.1, SIGNIFICANT otherwise, and DIVERGED
        when the difference is not finite (a NaN or infinite loss in either run).

    Example:
        >>> convergence_verdict(0.002).value
        'well preserved'
    """
    if not math.isfinite(loss_difference):
        return ConvergenceVerdict.DIVERGED
    if loss_difference < LOSS_WELL_PRESERVED:
        return ConvergenceVerdict.WELL_PRESERVED
    if loss_difference < LOSS_MINOR_DIFFERENCE:
        return ConvergenceVerdict.MINOR
    return ConvergenceVerdict.SIGNIFICANT


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The outcome of `compare_runs`.

    Attributes:
        baseline: The reference run (usually FP32).
        candidate: The run being judged (usually mixed precision).
        timing: ``"steady"`` (first epoch left out) or ``"total"``.
        basis: ``"total time"`` (summed epochs) or ``"time per epoch"`` (mean, used when the
            runs ran different numbers of epochs).
        baseline_seconds: Baseline time the speedup uses (per `timing` and `basis`).
        candidate_seconds: Candidate time the speedup uses.
        baseline_total_seconds: Baseline wall time of all epochs, compilation included.
        candidate_total_seconds: Candidate wall time of all epochs, compilation included.
        baseline_steady_seconds: Baseline wall time of epochs 2..n.
        candidate_steady_seconds: Candidate wall time of epochs 2..n.
        speedup_percent: ``(baseline_seconds / candidate_seconds - 1) * 100``; NaN when a
            time is missing or not positive.
        loss_difference: ``|baseline.final_loss - candidate.final_loss|``.
        speedup_verdict: Verdict on `speedup_percent`.
        convergence_verdict: Verdict on `loss_difference`.
        baseline_rounds: Baseline epoch times of the interleaved rounds (empty: none ran;
            then `speedup_percent` compares the phases' times).
        candidate_rounds: Candidate epoch times of the same rounds.
        speedup_low_percent: The slowest round's speedup (NaN without rounds).
        speedup_high_percent: The fastest round's speedup (NaN without rounds).
        measurable: False when the rounds put the difference inside the noise.

    Example:
        >>> a = TrainingRun("float32", [0.42], [0.9])
        >>> b = TrainingRun("mixed_float16", [0.43], [0.5])
        >>> round(compare_runs(a, b).speedup_percent, 1)
        80.0
    """

    baseline: TrainingRun
    candidate: TrainingRun
    timing: str
    basis: str
    baseline_seconds: float
    candidate_seconds: float
    baseline_total_seconds: float
    candidate_total_seconds: float
    baseline_steady_seconds: float
    candidate_steady_seconds: float
    speedup_percent: float
    loss_difference: float
    speedup_verdict: SpeedupVerdict
    convergence_verdict: ConvergenceVerdict
    baseline_rounds: tuple[float, ...] = ()
    candidate_rounds: tuple[float, ...] = ()
    speedup_low_percent: float = float("nan")
    speedup_high_percent: float = float("nan")
    measurable: bool = True

    @property
    def rounds(self) -> int:
        """How many interleaved rounds were timed."""
        return len(self.baseline_rounds)

    @property
    def outcome(self) -> Outcome:
        """Whether the candidate was faster, slower, neither measurably, or not comparable.

        Example:
            >>> a, b = TrainingRun("float32", [0.4], [1.0]), TrainingRun("float32", [0.4], [2.0])
            >>> str(compare_runs(a, b).outcome)
            'slower'
        """
        if not math.isfinite(self.speedup_percent):
            return Outcome.UNKNOWN
        if self.speedup_verdict is SpeedupVerdict.NO_DIFFERENCE or self.speedup_percent == 0:
            return Outcome.SAME
        return Outcome.FASTER if self.speedup_percent > 0 else Outcome.SLOWER

    @property
    def source(self) -> str:
        """Where the figure comes from, in words (the same in every report)."""
        if self.rounds:
            return f"median of {self.rounds} interleaved rounds"
        scope = "steady state" if self.timing == "steady" else "total"
        return f"{scope}, {self.basis}, phases run one after the other"

    def headline(self, verdict: bool = True) -> str:
        """The figure as every report prints it, e.g. ``"+12.3% (rounds +8.0% to +15.1%)"``.

        Args:
            verdict: Whether to end with ``": no measurable difference"`` where that is the
                outcome (False: the figure alone, for a sentence that says it in words).

        Example:
            >>> a = TrainingRun("float32", [0.4], [1.0])
            >>> compare_runs(a, a, rounds=([1.0, 1.0, 1.0], [1.0, 1.01, 0.99])).headline()
            '+0.0% (rounds -1.0% to +1.0%): no measurable difference'
        """
        if self.outcome is Outcome.UNKNOWN:
            return "n/a (timing unavailable)"
        text = f"{self.speedup_percent:+.1f}%"
        if self.rounds:
            low, high = self.speedup_low_percent, self.speedup_high_percent
            text += f" (rounds {low:+.1f}% to {high:+.1f}%)"
        if verdict and self.outcome is Outcome.SAME:
            text += ": no measurable difference"
        return text

    def summary(self, who: str = "mixed precision", baseline: str = "FP32") -> str:
        """The verdict in one sentence, from the same figure as `headline`.

        Example:
            >>> a, b = TrainingRun("float32", [0.4], [1.0]), TrainingRun("float32", [0.4], [2.0])
            >>> compare_runs(a, b).summary("BF16")
            'No speedup: BF16 was slower than FP32 here (-50.0%).'
        """
        verdict, figure = self.speedup_verdict, self.headline(verdict=False)
        if self.outcome is Outcome.UNKNOWN:
            return "No speedup: the run times could not be compared."
        if self.outcome is Outcome.SAME:
            return f"No measurable difference: {figure}, inside the timing noise."
        if self.outcome is Outcome.SLOWER:
            return f"No speedup: {who} was slower than {baseline} here ({figure})."
        if verdict is SpeedupVerdict.EXCELLENT:
            return f"Excellent speedup achieved: {figure}."
        if verdict is SpeedupVerdict.GOOD:
            return f"Good speedup achieved: {figure}."
        return f"Modest speedup: {figure}."

    def round_spreads(self) -> tuple[Spread, Spread]:
        """The `Spread` of the baseline's and the candidate's round times."""
        return Spread.of(self.baseline_rounds), Spread.of(self.candidate_rounds)

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison as strict-JSON-ready data.

        Returns:
            A dict of plain values; runs are nested via `TrainingRun.to_dict`, verdicts are
            their string values and non-finite numbers become ``None``.

        Example:
            >>> import json
            >>> run = TrainingRun("float32", [0.5], [1.0])
            >>> _ = json.dumps(compare_runs(run, run).to_dict(), allow_nan=False)
        """
        data: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, TrainingRun):
                value = value.to_dict()
            elif isinstance(value, enum.Enum):
                value = value.value
            data[field.name] = value
        data["outcome"] = self.outcome.value
        data["headline"] = self.headline()
        return json_safe(data)


def _per_epoch(run: TrainingRun, timing: str) -> float:
    """Mean seconds per epoch: epochs 2..n for "steady", all epochs for "total"."""
    if timing == "steady":
        return run.steady_epoch_seconds
    count = len(run.epoch_seconds)
    return run.total_seconds / count if count else float("nan")


def _speedup(baseline_seconds: float, candidate_seconds: float) -> float:
    """``(t_baseline / t_candidate - 1) * 100``, NaN when either time is unusable."""
    times = (baseline_seconds, candidate_seconds)
    if not all(math.isfinite(t) and t > 0 for t in times):
        return float("nan")
    return (baseline_seconds / candidate_seconds - 1.0) * 100.0


def compare_runs(
    baseline: TrainingRun,
    candidate: TrainingRun,
    timing: str = "steady",
    rounds: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Comparison:
    """Compare a candidate run with a baseline run.

    Args:
        baseline: The reference run (usually FP32).
        candidate: The run being judged (usually mixed precision).
        timing: ``"steady"`` to leave out the first (compiling) epoch, or ``"total"``.
        rounds: The baseline's and the candidate's epoch times from interleaved rounds
            (each round times one epoch of each, in turn); the speedup is then theirs.

    Returns:
        A `Comparison`. With equal epoch counts the summed times are compared
        (``basis="total time"``); otherwise the mean time per epoch
        (``basis="time per epoch"``).

    Raises:
        ValueError: If `timing` is not one of `TIMINGS`.

    Example:
        >>> a = TrainingRun("float32", [2.3, 0.42], [1.0, 0.8])
        >>> b = TrainingRun("mixed_float16", [2.3, 0.43], [2.0, 0.5])
        >>> cmp = compare_runs(a, b)
        >>> round(cmp.speedup_percent, 1), cmp.speedup_verdict.value
        (60.0, 'Excellent')
        >>> cmp = compare_runs(a, b, rounds=([1.0, 1.1, 0.9], [1.0, 1.0, 0.95]))
        >>> cmp.speedup_verdict.value, cmp.measurable
        ('No measurable difference', False)
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {', '.join(map(repr, TIMINGS))}; got {timing!r}")
    if baseline.epochs_run == candidate.epochs_run:
        basis = BASIS_TOTAL
        if timing == "steady":
            t_base, t_cand = baseline.steady_seconds, candidate.steady_seconds
        else:
            t_base, t_cand = baseline.total_seconds, candidate.total_seconds
    else:
        basis = BASIS_PER_EPOCH
        t_base, t_cand = _per_epoch(baseline, timing), _per_epoch(candidate, timing)
    speedup = _speedup(t_base, t_cand)
    extra: dict[str, Any] = {}
    verdict = speedup_verdict(speedup)
    if rounds is not None:
        ratios = Ratios(tuple(map(float, rounds[0])), tuple(map(float, rounds[1])))
        low, high = ratios.range_percent
        speedup = _speedup(*ratios.medians)  # the medians the reports print beside it
        verdict = speedup_verdict(speedup)
        if not ratios.measurable:
            verdict = SpeedupVerdict.NO_DIFFERENCE
        extra = dict(baseline_rounds=ratios.baseline, candidate_rounds=ratios.candidate,
                     speedup_low_percent=low, speedup_high_percent=high,
                     measurable=ratios.measurable)
    difference = abs(baseline.final_loss - candidate.final_loss)
    return Comparison(
        baseline=baseline,
        candidate=candidate,
        timing=timing,
        basis=basis,
        baseline_seconds=t_base,
        candidate_seconds=t_cand,
        baseline_total_seconds=baseline.total_seconds,
        candidate_total_seconds=candidate.total_seconds,
        baseline_steady_seconds=baseline.steady_seconds,
        candidate_steady_seconds=candidate.steady_seconds,
        speedup_percent=speedup,
        loss_difference=difference,
        speedup_verdict=verdict,
        convergence_verdict=convergence_verdict(difference),
        **extra,
    )
