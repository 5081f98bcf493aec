"""`TrainerState`: everything a `Trainer` needs to resume, as plain typed data.

`Trainer.get_state()` returns one and `Trainer.set_state()` takes one back; the checkpoint
file format (`gometal_keras.training.checkpoint`) only stores and restores it. The metadata part is
JSON-ready through `metadata()` / `from_metadata()`; the variable values are numpy arrays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import RunPlan
from gometal_keras.planning.decision import Decision


@dataclasses.dataclass(frozen=True)
class TrainerState:
    """A trainer's full state.

    Attributes:
        config: The configuration the trainer was made with.
        plan: The plan its program ran.
        seed: The seed in force (drawn when the config gave None).
        epoch: Epochs completed.
        decision: How the plan was chosen, or None.
        schedule: The learning-rate schedule's state, or None.
        model_variables: Every model variable's value, in ``model.variables`` order
            (random-generator states included, so a resumed run continues exactly).
        optimizer_variables: Every optimizer variable's value (the loss scale included).

    Example:
        >>> from gometal_keras.core.plan import Precision
        >>> s = TrainerState(TrainerConfig(), RunPlan(Precision.FLOAT32, True), 1, 3)
        >>> TrainerState.from_metadata(s.metadata(), (), ()) == s
        True
    """

    config: TrainerConfig
    plan: RunPlan
    seed: int
    epoch: int
    decision: Decision | None = None
    schedule: dict[str, Any] | None = None
    model_variables: tuple[np.ndarray, ...] = ()
    optimizer_variables: tuple[np.ndarray, ...] = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrainerState):
            return NotImplemented
        arrays = ("model_variables", "optimizer_variables")
        same_meta = self.metadata() == other.metadata()
        return same_meta and all(
            len(getattr(self, a)) == len(getattr(other, a))
            and all(
                np.array_equal(x, y)
                for x, y in zip(getattr(self, a), getattr(other, a), strict=True)
            )
            for a in arrays
        )

    __hash__ = None  # type: ignore[assignment]

    def resume_config(self) -> TrainerConfig:
        """The configuration that rebuilds this state's plan without measuring again.

        Example:
            >>> from gometal_keras.core.plan import Precision
            >>> plan = RunPlan(Precision.FLOAT32, xla=False, loop="step")
            >>> TrainerState(TrainerConfig(precision="auto"), plan, 7, 0).resume_config().loop.loop
            <Loop.STEP: 'step'>
        """
        return self.config.replace(
            precision=self.plan.policy,
            jit_compile=self.plan.xla,
            loop=self.plan.loop.value,
            seed=self.seed,
        )

    def check_fits(
        self, plan: RunPlan, model_variables: Sequence[Any], optimizer_variables: Sequence[Any]
    ) -> None:
        """Raise ValueError unless this state fits a trainer running `plan` with these variables.

        Example:
            >>> from gometal_keras.core.plan import Precision
            >>> s = TrainerState(TrainerConfig(), RunPlan(Precision.FLOAT32, True), 1, 0)
            >>> s.check_fits(RunPlan(Precision.MIXED_BFLOAT16, True), [], [])
            Traceback (most recent call last):
            ValueError: the state was saved under float32, not mixed_bfloat16.
        """
        if plan.precision != self.plan.precision:
            raise ValueError(
                f"the state was saved under {self.plan.policy}, not {plan.policy}."
            )
        for what, values, variables in (
            ("model", self.model_variables, model_variables),
            ("optimizer", self.optimizer_variables, optimizer_variables),
        ):
            shapes = [tuple(v.shape) for v in variables]
            if [tuple(np.shape(a)) for a in values] != shapes:
                raise ValueError(
                    f"its {what} state holds {len(values)} values that do not match the "
                    f"{len(shapes)} {what} variables by shape."
                )

    def metadata(self) -> dict[str, Any]:
        """The JSON-ready part: everything but the variable values."""
        return {
            "config": self.config.to_dict(),
            "plan": self.plan.to_dict(),
            "seed": self.seed,
            "epoch": self.epoch,
            "decision": self.decision.to_dict() if self.decision else None,
            "schedule": self.schedule,
        }

    @classmethod
    def from_metadata(
        cls,
        meta: dict[str, Any],
        model_variables: Sequence[np.ndarray],
        optimizer_variables: Sequence[np.ndarray],
    ) -> TrainerState:
        """Inverse of `metadata`, with the variable values given apart."""
        decision = meta.get("decision")
        return cls(
            config=TrainerConfig(**meta["config"]),
            plan=RunPlan.from_dict(meta["plan"]),
            seed=int(meta["seed"]),
            epoch=int(meta["epoch"]),
            decision=Decision.from_dict(decision) if decision else None,
            schedule=meta.get("schedule"),
            model_variables=tuple(model_variables),
            optimizer_variables=tuple(optimizer_variables),
        )
