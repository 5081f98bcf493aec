"""`RunPlan`: what a training program really runs, as one frozen, typed object.

Everything that decides how a step is computed lives here: the precision (its policy and
its compute and variable dtypes), loss scaling, the non-finite guard, XLA, the loop layout
and the placement. The engine builds a program for a plan and reports the plan it actually
runs (a `tf.distribute` strategy, for one, runs without XLA and without the guard); the
trainer, the loop, the run record, the report and the JSON read that one object. Labels
and JSON are made from it only when shown or written.

Example:
    >>> plan = RunPlan(Precision.MIXED_FLOAT16, xla=True, loop=Loop.FUSED,
    ...                loss_scaling=LossScaling(65536.0, 2000))
    >>> plan.label(), plan.compute_dtype, plan.guard
    ('mixed_float16 (XLA, fused)', 'float16', False)
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any


class Precision(str, enum.Enum):
    """A dtype policy we train under; its value is the Keras policy name.

    Example:
        >>> Precision("mixed_bfloat16").compute_dtype, Precision.FLOAT32.label
        ('bfloat16', 'FP32')
    """

    FLOAT32 = "float32"
    MIXED_FLOAT16 = "mixed_float16"
    MIXED_BFLOAT16 = "mixed_bfloat16"

    def __str__(self) -> str:
        return self.value

    @property
    def compute_dtype(self) -> str:
        """The dtype layers compute in (``float16``, ``bfloat16`` or ``float32``)."""
        return self.value.removeprefix("mixed_")

    @property
    def variable_dtype(self) -> str:
        """The dtype weights are stored in: float32 under every policy here."""
        return "float32"

    @property
    def mixed(self) -> bool:
        """Whether compute runs in a 16-bit type."""
        return self is not Precision.FLOAT32

    @property
    def needs_loss_scaling(self) -> bool:
        """float16's narrow range needs a scaled loss; bfloat16's does not."""
        return self is Precision.MIXED_FLOAT16

    @property
    def label(self) -> str:
        """Short display label: ``FP32``, ``FP16`` or ``BF16``."""
        return {"float32": "FP32", "float16": "FP16", "bfloat16": "BF16"}[self.compute_dtype]


#: The placement description of a plan that runs on the host CPU of a machine whose default
#: device is an accelerator (a fallback, or a timed candidate on Apple GPUs).
HOST = "CPU"



class Loop(str, enum.Enum):
    """How batches reach the compiled step: a whole epoch per device call, or one step."""

    FUSED = "fused"
    STEP = "step"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class LossScaling:
    """Dynamic loss scaling in force (float16 only): Keras' `LossScaleOptimizer` settings.

    Attributes:
        initial_scale: The scale of the first step.
        growth_interval: Finite steps before the scale doubles (it halves on overflow).
    """

    initial_scale: float
    growth_interval: int


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What one training program runs. Frozen: a changed setting is a new plan.

    Attributes:
        precision: The dtype policy.
        xla: Whether the step and epoch are compiled with XLA.
        loop: `Loop.FUSED` (a whole epoch per device call) or `Loop.STEP`.
        loss_scaling: The loss scaler in force, or None.
        guard: Whether a step with a non-finite loss leaves every variable as it was (and
            stops the rest of its device call). Off where a loss scaler skips such steps
            itself, and where the engine cannot run it (a `tf.distribute` strategy).
        replicas: Devices the model is replicated over (1 = one device).
        placement: How the model is placed, for display (e.g. ``"one device"``, or `HOST`
            for the host CPU of an accelerator machine).
    """

    precision: Precision
    xla: bool
    loop: Loop = Loop.FUSED
    loss_scaling: LossScaling | None = None
    guard: bool | None = None
    replicas: int = 1
    placement: str = "one device"

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision(self.precision))
        object.__setattr__(self, "loop", Loop(self.loop))
        if self.guard is None:  # the default: guarded unless a loss scaler skips steps
            object.__setattr__(self, "guard", self.loss_scaling is None)
        if self.loss_scaling is not None and not self.precision.needs_loss_scaling:
            raise ValueError(
                f"RunPlan for {self.precision.value} has loss_scaling={self.loss_scaling!r}; "
                "expected loss scaling under mixed_float16 only."
            )

    @property
    def policy(self) -> str:
        """The Keras dtype-policy name."""
        return self.precision.value

    @property
    def compute_dtype(self) -> str:
        """The dtype layers compute in."""
        return self.precision.compute_dtype

    @property
    def variable_dtype(self) -> str:
        """The dtype weights are stored in."""
        return self.precision.variable_dtype

    @property
    def on_host(self) -> bool:
        """Whether the plan runs on the host CPU instead of the machine's accelerator."""
        return self.placement == HOST

    def replace(self, **changes: Any) -> RunPlan:
        """Return a plan with `changes` applied (and checked).

        Example:
            >>> RunPlan(Precision.FLOAT32, xla=True).replace(xla=False).xla
            False
        """
        return dataclasses.replace(self, **changes)

    def label(self) -> str:
        """Display label, e.g. ``"float32 (XLA, fused)"``; a `HOST` plan ends ``" on the CPU"``.

        Example:
            >>> RunPlan(Precision.FLOAT32, xla=False, placement=HOST).label()
            'float32 (no XLA, fused) on the CPU'
        """
        where = " on the CPU" if self.on_host else ""
        return f"{self.policy} ({'XLA' if self.xla else 'no XLA'}, {self.loop.value}){where}"

    def to_dict(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data (names as strings).

        Example:
            >>> RunPlan(Precision.FLOAT32, xla=False).to_dict()["loop"]
            'fused'
        """
        scaling = self.loss_scaling
        return {
            "precision": self.policy,
            "compute_dtype": self.compute_dtype,
            "variable_dtype": self.variable_dtype,
            "loss_scaling": dataclasses.asdict(scaling) if scaling else None,
            "guard": self.guard,
            "xla": self.xla,
            "loop": self.loop.value,
            "replicas": self.replicas,
            "placement": self.placement,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPlan:
        """Inverse of `to_dict` (derived fields are ignored).

        Example:
            >>> plan = RunPlan(Precision.MIXED_FLOAT16, True, loss_scaling=LossScaling(8.0, 5))
            >>> RunPlan.from_dict(plan.to_dict()) == plan
            True
        """
        scaling = data.get("loss_scaling")
        return cls(
            precision=Precision(data["precision"]),
            xla=bool(data["xla"]),
            loop=Loop(data["loop"]),
            loss_scaling=LossScaling(**scaling) if scaling else None,
            guard=bool(data["guard"]),
            replicas=int(data.get("replicas", 1)),
            placement=str(data.get("placement", "one device")),
        )
