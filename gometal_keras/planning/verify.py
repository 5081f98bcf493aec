"""One verification of a plan, whatever its source: trials, the decision cache, a rule, or as given.

A plan reaches the trainer from one of four places, and each is checked here, the same way,
before any program of it is built for training:

1. **Admissible**: the plan is one the planner could have made for this model, device,
   configuration and placement (`Verifier.refusal`). That one test holds every rule of a
   plan: the precision is the one asked for (an explicit precision is never replaced; a
   `keras.Model` trains under its own policy; ``"auto"`` only among the device's
   candidates), float16 runs with this config's loss scaling and nothing else does, a step
   is guarded unless a loss scaler skips it, XLA only where the device has it and the
   config allows it, the loop the config asks for, the placement's replicas, and the host
   CPU only where it is offered. A decision-cache entry whose plan was edited (its key left
   alone) fails it and is dropped with a warning, and the plan is decided again.
2. **Runs soundly on a device with known faults** (`KNOWN_FAULTS`: Apple GPUs): the plan's
   program is built and warmed up, and the device's float32 losses are checked against the
   CPU's on the same weights and batches (`TrialRunner.check_device`), for a builder or a
   `keras.Model`, for an explicit precision or ``"auto"``, with the cache on or off. A plan
   that fails is dropped with a warning and the next one is tried (fused, per-step, then
   the host CPU, as for a failed trial).

Example:
    >>> from gometal_keras.core.plan import Precision, RunPlan
    >>> verifier = Verifier(frozenset({RunPlan(Precision.FLOAT32, xla=False)}))
    >>> verifier.refusal(RunPlan(Precision.FLOAT32, xla=False)) is None
    True
    >>> print(verifier.refusal(RunPlan(Precision.FLOAT32, xla=False, guard=False)))
    it runs float32 (no XLA, fused) with the non-finite guard off and no loss scaler
"""

from __future__ import annotations

from collections.abc import Collection

from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.plan import RunPlan

#: Device kinds with known failures and silently wrong float32 results in graph mode, each
#: with its report: a plan there is warmed up and the device's float32 losses must match the
#: CPU's (`trial_runner.CHECK_RTOL`) before it trains.
KNOWN_FAULTS = {"metal": "Apple developer forum thread 778640"}


class Verifier:
    """The plans the planner could have made for one trainer, and the test of a plan against them.

    Args:
        admissible: Every plan the planner could produce here, as the placements run them.
    """

    def __init__(self, admissible: Collection[RunPlan]):
        self.admissible = frozenset(admissible)

    def refusal(self, plan: RunPlan) -> str | None:
        """Why the planner could not have made `plan` here (one clause), or None if it could.

        Args:
            plan: A plan from any source, as its placement runs it.

        Returns:
            None for an admissible plan; else the first rule it breaks, in words.
        """
        if plan in self.admissible:
            return None
        label = plan.label()
        precisions = {p.precision for p in self.admissible}
        if plan.precision not in precisions:
            asked = ", ".join(sorted(p.value for p in precisions))
            return f"it runs {plan.policy}, and only {asked} may run here"
        same = [p for p in self.admissible if p.precision is plan.precision]
        if plan.loss_scaling not in {p.loss_scaling for p in same}:
            want = {p.loss_scaling for p in same}.pop()
            return (f"it runs {label} with loss scaling {plan.loss_scaling}, and this config's "
                    f"is {want}")
        if plan.guard not in {p.guard for p in same if p.loss_scaling == plan.loss_scaling}:
            if not plan.guard and plan.loss_scaling is None:
                return f"it runs {label} with the non-finite guard off and no loss scaler"
            return f"it runs {label} with the guard {'on' if plan.guard else 'off'}"
        if plan.xla not in {p.xla for p in same}:
            return f"it runs {label}, and XLA {'is not' if plan.xla else 'must be'} used here"
        if plan.loop not in {p.loop for p in same}:
            return f"it runs {label}, a loop this config does not allow"
        return f"it runs {label}, which this model, device and placement do not offer"


def device_failure(err: BaseException, device: DeviceInfo, plan: RunPlan, what: str,
                   epoch: int) -> str | None:
    """The sentence for a backend failure on a device with known faults after the plan's
    checks passed (a kernel only `fit`, validation or `predict` needs), or None.

    None off such a device, for a plan on its host CPU, and for the library's own refusals
    (ValueError, TypeError), which already say what was wrong.

    Args:
        err: What the call raised.
        device: The device the plan runs on.
        plan: The plan in force.
        what: What was running (``"epoch 3 of fit"``, ``"predict"``).
        epoch: The epochs the trainer has completed (its state is as after these).

    Returns:
        One sentence naming the device, the plan, the error and where the trainer stands.

    Example:
        >>> from gometal_keras.core.plan import Precision
        >>> gpu = DeviceInfo("tensorflow", "metal", "Apple M2 GPU", False, True, False)
        >>> err = RuntimeError("No registered 'TensorListReserve' OpKernel for 'GPU' devices")
        >>> device_failure(err, gpu, RunPlan(Precision.FLOAT32, False), "predict", 2)[:60]
        'Apple M2 GPU failed in predict under float32 (no XLA, fused)'
    """
    if (device.kind not in KNOWN_FAULTS or plan.on_host
            or isinstance(err, (ValueError, TypeError))):
        return None
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    cause = f"{type(err).__name__}: {lines[0][:300] if lines else 'no message'}"
    way_out = (
        "set PYTORCH_ENABLE_MPS_FALLBACK=1 before importing torch (an operation MPS lacks "
        "then runs on the CPU)" if device.backend == "torch" else
        "call tf.config.set_visible_devices([], 'GPU') before building (the model then "
        "trains on the CPU)"
    )
    return (
        f"{device.name} failed in {what} under {plan.label()} ({cause}), a failure its "
        f"checks could not foresee ({KNOWN_FAULTS[device.kind]}); the trainer is as after "
        f"epoch {epoch}, nothing of the failed call kept: expected a kernel for every "
        f"operation there, so {way_out}."
    )
