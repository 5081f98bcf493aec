"""The precision decision as typed records: each timed `Candidate`, and the `Decision`.

`gometal_keras.planning.autotune` times the user's model under each `RunPlan` worth trying and
hands the results here as `Candidate` records (`gometal_keras.planning.trials`); `choose` keeps the
fastest sound one, with mixed precision kept only when it beats float32 by `MIN_GAIN` with
confidence, round by round (`noise.clearly_faster`; inside the noise: float32, and the
reason says so). A failed candidate carries its `error` and is never chosen;
`check_failures` raises when every one did. Labels and JSON are made from these records
only when shown or written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.noise import clearly_faster
from gometal_keras.core.plan import Precision, RunPlan
from gometal_keras.planning.candidates import candidates, preferred, rejected
from gometal_keras.planning.trials import Candidate

#: A mixed candidate must beat float32 by this fraction to be chosen (noise never trades accuracy).
MIN_GAIN = 0.03


@dataclasses.dataclass(frozen=True)
class Decision:
    """How the plan was chosen: the candidates timed, the one kept, and why.

    Attributes:
        chosen: The plan kept.
        reason: One sentence a report can print.
        candidates: Every timed candidate, in the order timed (empty when nothing was timed).
        skipped: Precisions not timed, each with the reason.
        origin: ``"trials"`` (timed in this process), ``"cache"`` (read from the decision
            cache: nothing timed) or ``"rule"`` (by device facts alone: nothing timed).
        trial_seconds: Wall time this process spent on trials to make it.

    Example:
        >>> plan = RunPlan(Precision.FLOAT32, xla=False)
        >>> Decision(plan, "only one candidate").precision
        <Precision.FLOAT32: 'float32'>
    """

    chosen: RunPlan
    reason: str
    candidates: tuple[Candidate, ...] = ()
    skipped: Mapping[Precision, str] = dataclasses.field(default_factory=dict)
    origin: str = "trials"
    trial_seconds: float = 0.0

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
                | {"samples": list(c.samples), "low": c.spread.low, "high": c.spread.high}
                | ({"error": c.error} if c.error else {})
                for c in self.candidates
            ],
            "origin": self.origin,
            "trial_seconds": self.trial_seconds,
            "failed": {c.plan.label(): c.error for c in self.candidates if c.error},
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
            Candidate(
                RunPlan.from_dict(c["plan"]),
                math.nan if c["seconds"] is None else float(c["seconds"]),  # JSON null: NaN
                bool(c["finite"]),
                c.get("error"),
                tuple(float(x) for x in c.get("samples", ())),
            )
            for c in data.get("timed", ())
        )
        skipped = {Precision(p): str(why) for p, why in data.get("skipped", {}).items()}
        plan, reason = RunPlan.from_dict(data["plan"]), str(data["reason"])
        origin, spent = str(data.get("origin", "trials")), float(data.get("trial_seconds", 0.0))
        return cls(plan, reason, timed, skipped, origin, spent)


def choose(device: DeviceInfo, timed: Sequence[Candidate]) -> Decision:
    """Keep the fastest sound candidate; mixed precision only when it clearly wins.

    Args:
        device: The device the model will train on.
        timed: The measured candidates (several plans of one precision may be among them).

    Returns:
        A `Decision`: the fastest mixed precision whose best plan beats float32's by
        `MIN_GAIN` in the median round and in 80 % of the rounds (`noise.clearly_faster`),
        else float32's best plan, the reason saying so ("no measurable difference" when
        the medians are within it).

    Raises:
        RuntimeError: Every candidate failed, or none gave a finite loss.

    Example:
        >>> dev = DeviceInfo("jax", "cuda", "GPU", True, True, True)
        >>> fp32, fp16 = Precision.FLOAT32, Precision.MIXED_BFLOAT16
        >>> timed = [Candidate(RunPlan(fp32, True), 2.0), Candidate(RunPlan(fp16, True), 1.0)]
        >>> choose(dev, timed).chosen.label()
        'mixed_bfloat16 (XLA, fused)'
    """
    check_failures(timed)
    sound = [c for c in timed if c.sound]
    if not sound:
        raise RuntimeError("Every candidate plan gave a non-finite loss on its trial steps.")
    best: dict[Precision, Candidate] = {}
    for c in sound:
        if c.plan.precision not in best or c.seconds < best[c.plan.precision].seconds:
            best[c.plan.precision] = c
    base, by_time = best.get(Precision.FLOAT32), (lambda c: c.seconds)
    winner = min(best.values(), key=by_time)  # without a sound float32: the fastest
    if f32 := base and base.spread.samples:  # else the fastest mixed one that clearly wins
        clear = [c for c in best.values() if clearly_faster(c.spread.samples, f32, MIN_GAIN)]
        winner = min([c for c in clear if c.plan.precision.mixed] or [base], key=by_time)
    skipped = rejected(device)
    where = f"the CPU of this {device.kind}" if winner.plan.on_host else device.kind
    reason = _reason(winner.plan.precision, best, where, skipped)
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


def by_rule(device: DeviceInfo, plan: RunPlan) -> Decision:
    """The decision by device facts alone (``decision_cache="never"``) for `plan`, the default
    plan under `precision.preferred(device)`: nothing timed.

    Example:
        >>> cpu = DeviceInfo("jax", "cpu", "CPU", True, False, True)
        >>> by_rule(cpu, RunPlan(Precision.FLOAT32, xla=True)).reason[:31]
        'float32 by rule on cpu (no tria'
    """
    expected = preferred(device)
    if plan.precision is not expected:
        raise ValueError(f"The rule's precision is {expected.value}; got {plan.policy}.")
    why = "tensor cores" if expected.mixed else "mixed precision pays reliably on CUDA GPUs only"
    reason = f"{expected.value} by rule on {device.kind} (no trials): {why}."
    return Decision(plan, reason, (), rejected(device), origin="rule")


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


def check_failures(timed: Sequence[Candidate]) -> None:
    """Raise RuntimeError, one sentence listing each, when every candidate's program failed.

    Example:
        >>> plan = RunPlan(Precision.FLOAT32, xla=False)
        >>> check_failures([Candidate(plan, math.nan, error="OOM")])
        Traceback (most recent call last):
        RuntimeError: Every candidate plan failed: float32 (no XLA, fused): OOM.
    """
    if timed and all(c.error for c in timed):
        listed = "; ".join(c.shown() for c in timed)
        raise RuntimeError(f"Every candidate plan failed: {listed}.")


def decide(device: DeviceInfo, timed: Sequence[Candidate], compare: bool, own: bool) -> Decision:
    """The decision over trials that ran; failed candidates are named in its reason.

    Args:
        device: The device the model will train on.
        timed: The candidates, failed ones among them.
        compare: Whether precisions were compared (`choose`); else the fastest sound plan
            of the one precision is kept.
        own: Whether that precision is a user's own keras.Model's (`kept`).

    Returns:
        The `Decision`, its reason ending with the failed candidates and their errors.

    Raises:
        RuntimeError: Every candidate failed (one sentence listing each).

    Example:
        >>> p = RunPlan(Precision.FLOAT32, xla=False)
        >>> timed = [Candidate(p, math.nan, error="OOM"), Candidate(p.replace(loop="step"), 1.0)]
        >>> dev = DeviceInfo("tensorflow", "metal", "GPU", False, True, False)
        >>> decide(dev, timed, compare=False, own=False).reason.split(". ")[1]
        'Failed: float32 (no XLA, fused): OOM; running float32 (no XLA, step) instead.'
    """
    check_failures(timed)
    if compare:
        decision = choose(device, timed)
    else:
        best = fastest(timed)
        plan = best.plan if best else next(c.plan for c in timed if not c.error)
        why = "XLA setting and loop chosen by measurement."
        if best is None:
            why = "No trial gave a finite loss; the default XLA setting and loop are kept."
        decision = kept(plan, timed) if own else Decision(plan, why, tuple(timed))
    failed = "; ".join(c.shown() for c in timed if c.error)
    if failed:
        why = f"{decision.reason} Failed: {failed}; running {decision.chosen.label()} instead."
        decision = dataclasses.replace(decision, reason=why)
    return decision


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
    where: str,
    skipped: Mapping[Precision, str],
) -> str:
    ordered = sorted(best.values(), key=lambda c: c.seconds)
    ms = ", ".join(
        f"{c.plan.policy}{' on the CPU' if c.plan.on_host else ''} {c.seconds * 1e3:.3g} ms"
        for c in ordered
    )
    if chosen is Precision.FLOAT32:
        why = f"no mixed precision was clearly {MIN_GAIN:.0%} faster, round by round"
        near = [c for c in ordered if abs(c.seconds / best[chosen].seconds - 1) < MIN_GAIN]
        if len(near) > 1:
            why = f"no measurable difference ({MIN_GAIN:.0%} margin) -> float32"
        faster = [c for c in ordered if c.plan.precision.mixed and c not in near
                  and c.seconds < best[chosen].seconds]
        if faster and len(near) == 1:  # faster by the medians, yet not in enough rounds
            c, base = faster[0], best[chosen]
            pairs = list(zip(c.samples, base.samples, strict=False))
            wins = sum(f < b * (1 - MIN_GAIN) for f, b in pairs)
            why = (f"{c.plan.policy}'s median step was {base.seconds / c.seconds:.2f}x "
                   f"float32's, but it was {MIN_GAIN:.0%} faster in only {wins} of "
                   f"{len(pairs)} interleaved rounds: not clearly faster, so float32")
        if len(best) == 1:
            why = _none_fast(skipped)
        return f"float32 kept on {where}: {why} (per step: {ms})."
    base = best.get(Precision.FLOAT32)
    if base is None:
        return (
            f"{chosen.value} chosen on {where}: the fastest sound plan, float32 gave no "
            f"finite loss (per step: {ms})."
        )
    gain = base.seconds / best[chosen].seconds
    return f"{chosen.value} chosen on {where}: {gain:.2f}x float32's step speed (per step: {ms})."
