"""The precision decision as typed records: each timed `Candidate`, and the `Decision`.

`gometal_keras.autotune` times the user's model under each `RunPlan` worth trying and
hands the results here as `Candidate` records; `choose` keeps the fastest sound one, with
mixed precision kept only when it beats float32 by `MIN_GAIN`. Labels and JSON are made
from these records only when shown or written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from gometal_keras.plan import Precision, RunPlan
from gometal_keras.precision import DeviceInfo, candidates, rejected

#: A mixed candidate must beat float32 by this fraction to be chosen: timing noise alone
#: must never trade float32's accuracy for nothing.
MIN_GAIN = 0.05


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One timed way of training: its plan, its measured step time, whether it was sound.

    Attributes:
        plan: What was timed.
        seconds: Measured seconds per step.
        finite: Whether every trial step's loss was finite (a candidate is only kept if so).
    """

    plan: RunPlan
    seconds: float
    finite: bool = True

    @property
    def sound(self) -> bool:
        """Finite loss and a usable time."""
        return self.finite and math.isfinite(self.seconds) and self.seconds > 0


@dataclasses.dataclass(frozen=True)
class Decision:
    """How the plan was chosen: the candidates timed, the one kept, and why.

    Attributes:
        chosen: The plan kept.
        reason: One sentence a report can print.
        candidates: Every timed candidate, in the order timed (empty when nothing was timed).
        skipped: Precisions not timed, each with the reason.

    Example:
        >>> plan = RunPlan(Precision.FLOAT32, xla=False)
        >>> Decision(plan, "only one candidate").precision
        <Precision.FLOAT32: 'float32'>
    """

    chosen: RunPlan
    reason: str
    candidates: tuple[Candidate, ...] = ()
    skipped: Mapping[Precision, str] = dataclasses.field(default_factory=dict)

    @property
    def precision(self) -> Precision:
        """The precision kept."""
        return self.chosen.precision

    def to_dict(self) -> dict[str, Any]:
        """Return the decision as JSON-ready data: labels, step times (NaN if unsound).

        Example:
            >>> plan = RunPlan(Precision.FLOAT32, xla=True)
            >>> Decision(plan, "why", (Candidate(plan, 0.002),)).to_dict()["candidates"]
            {'float32 (XLA, fused)': 0.002}
        """
        return {
            "chosen": self.chosen.label(),
            "precision": self.chosen.policy,
            "plan": self.chosen.to_dict(),
            "reason": self.reason,
            "candidates": {
                c.plan.label(): c.seconds if c.finite else math.nan for c in self.candidates
            },
            "timed": [
                {"plan": c.plan.to_dict(), "seconds": c.seconds, "finite": c.finite}
                for c in self.candidates
            ],
            "skipped": {p.value: why for p, why in self.skipped.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Inverse of `to_dict` (as read back from a checkpoint).

        Example:
            >>> plan = RunPlan(Precision.FLOAT32, xla=True)
            >>> d = Decision(plan, "why", (Candidate(plan, 0.002),))
            >>> Decision.from_dict(d.to_dict()) == d
            True
        """
        timed = tuple(
            Candidate(RunPlan.from_dict(c["plan"]), float(c["seconds"]), bool(c["finite"]))
            for c in data.get("timed", ())
        )
        skipped = {Precision(p): str(why) for p, why in data.get("skipped", {}).items()}
        return cls(RunPlan.from_dict(data["plan"]), str(data["reason"]), timed, skipped)


def choose(device: DeviceInfo, timed: Sequence[Candidate]) -> Decision:
    """Keep the fastest sound candidate; mixed precision only when it clearly wins.

    Args:
        device: The device the model will train on.
        timed: The measured candidates (several plans of one precision may be among them).

    Returns:
        A `Decision`. A mixed precision wins only when it is at least `MIN_GAIN` faster
        than float32's best plan; otherwise float32's best plan is kept, and the reason
        says so.

    Raises:
        RuntimeError: No candidate was sound.

    Example:
        >>> dev = DeviceInfo("jax", "cuda", "GPU", True, True, True)
        >>> fp32, fp16 = Precision.FLOAT32, Precision.MIXED_BFLOAT16
        >>> timed = [Candidate(RunPlan(fp32, True), 2.0), Candidate(RunPlan(fp16, True), 1.0)]
        >>> choose(dev, timed).chosen.label()
        'mixed_bfloat16 (XLA, fused)'
    """
    sound = [c for c in timed if c.sound]
    if not sound:
        raise RuntimeError("Every candidate plan gave a non-finite loss on its trial steps.")
    best: dict[Precision, Candidate] = {}
    for c in sound:
        if c.plan.precision not in best or c.seconds < best[c.plan.precision].seconds:
            best[c.plan.precision] = c
    winner = min(best.values(), key=lambda c: c.seconds)
    base = best.get(Precision.FLOAT32)
    if winner.plan.precision.mixed and base and winner.seconds > base.seconds * (1 - MIN_GAIN):
        winner = base
    skipped = rejected(device)
    reason = _reason(winner.plan.precision, best, device, skipped)
    return Decision(winner.plan, reason, tuple(timed), skipped)


def sole_candidate(device: DeviceInfo, plan: RunPlan) -> Decision:
    """The decision where `device` leaves float32 as the only candidate: nothing to time.

    Example:
        >>> cpu = DeviceInfo("torch", "cpu", "CPU", False, False, False)
        >>> sole_candidate(cpu, RunPlan(Precision.FLOAT32, xla=False)).reason[:24]
        'float32 kept on cpu: no '
    """
    skipped = rejected(device)
    if len(candidates(device)) != 1:
        raise ValueError(f"{device.describe()} has several candidate precisions; time them.")
    if plan.precision is not Precision.FLOAT32:
        raise ValueError(f"The sole candidate is float32; got a plan under {plan.policy}.")
    return Decision(plan, f"float32 kept on {device.kind}: {_none_fast(skipped)}.", (), skipped)


def kept(plan: RunPlan, timed: Sequence[Candidate] = ()) -> Decision:
    """The decision for a user's own keras.Model: its policy is kept; XLA and loop measured.

    Example:
        >>> kept(RunPlan(Precision.FLOAT32, xla=True)).reason.split(" (")[0]
        "The keras.Model's own policy float32 is kept"
    """
    reason = f"The keras.Model's own policy {plan.policy} is kept (pass a ModelBuilder to choose)."
    if timed:
        reason += " XLA setting and loop chosen by measurement."
    return Decision(plan, reason, tuple(timed))


def fastest(timed: Sequence[Candidate]) -> Candidate | None:
    """The fastest sound candidate, or None.

    Example:
        >>> p = RunPlan(Precision.FLOAT32, xla=True)
        >>> fastest([Candidate(p, 2.0), Candidate(p.replace(xla=False), 1.0)]).plan.xla
        False
    """
    sound = [c for c in timed if c.sound]
    return min(sound, key=lambda c: c.seconds) if sound else None


def _none_fast(skipped: Mapping[Precision, str]) -> str:
    if not skipped:
        return "every mixed plan timed gave a non-finite loss"
    listed = "; ".join(f"{p.value}: {why}" for p, why in skipped.items())
    return f"no mixed precision runs fast here ({listed})"


def _reason(
    chosen: Precision,
    best: Mapping[Precision, Candidate],
    device: DeviceInfo,
    skipped: Mapping[Precision, str],
) -> str:
    ordered = sorted(best.values(), key=lambda c: c.seconds)
    ms = ", ".join(f"{c.plan.policy} {c.seconds * 1e3:.3g} ms" for c in ordered)
    if chosen is Precision.FLOAT32:
        why = f"no mixed precision was at least {MIN_GAIN:.0%} faster"
        if len(best) == 1:
            why = _none_fast(skipped)
        return f"float32 kept on {device.kind}: {why} (per step: {ms})."
    base = best.get(Precision.FLOAT32)
    if base is None:
        return (
            f"{chosen.value} chosen on {device.kind}: the fastest sound plan, float32 gave no "
            f"finite loss (per step: {ms})."
        )
    gain = base.seconds / best[chosen].seconds
    return (
        f"{chosen.value} chosen on {device.kind}: {gain:.2f}x float32's step speed "
        f"(per step: {ms})."
    )
