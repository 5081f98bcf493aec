"""The one program builder: a model, its optimizer, its objective and its compiled program.

Trials and the trainer build their programs here, so a trial times exactly what the trainer
will run: the model made in the placement's scope, the optimizer the plan's loss scaling
asks for, the loss and metrics the config names, and the engine's program for the plan. The
program reports the plan it really runs (`Program.plan`, the plan as the placement adapts it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import RunPlan
from gometal_keras.engines.base import Engine, Objective, Placement, Program
from gometal_keras.engines.objectives import make_objective, make_optimizer


@dataclasses.dataclass(frozen=True)
class Built:
    """A compiled training program and what it trains.

    Attributes:
        model: The Keras model (its variables in the placement's scope).
        optimizer: Its Keras optimizer (a `LossScaleOptimizer` when the plan scales).
        objective: The loss and metrics.
        program: The compiled step and epoch; ``program.plan`` is the plan in force.
    """

    model: keras.Model
    optimizer: Any
    objective: Objective
    program: Program

    @property
    def plan(self) -> RunPlan:
        """The plan the program runs."""
        return self.program.plan


def build_program(
    make_model: Callable[[], keras.Model],
    config: TrainerConfig,
    plan: RunPlan,
    engine: Engine,
    placement: Placement,
) -> Built:
    """Build the model, optimizer, objective and program for `plan` under `placement`.

    Args:
        make_model: Returns the model to train, called in ``placement.scope()`` (a fresh
            model under ``plan.precision``, or the user's own).
        config: The training configuration (optimizer and loss settings).
        plan: What to run.
        engine: The backend engine.
        placement: Where the model lives.

    Returns:
        A `Built` whose ``plan`` is the plan the program really runs.

    Example:
        >>> from gometal_keras import engines
        >>> from gometal_keras.core.plan import Precision
        >>> from gometal_keras.model.builder import ModelBuilder
        >>> engine, builder = engines.current(), ModelBuilder([8, 4]).add_dense(2)
        >>> plan = RunPlan(Precision.FLOAT32, xla=False)
        >>> built = build_program(lambda: builder.compile("float32", seed=0),
        ...                       TrainerConfig(batch_size=8), plan, engine, Placement(engine))
        >>> built.plan.label()
        'float32 (no XLA, fused)'
    """
    with placement.scope():
        model = make_model()
        optimizer = make_optimizer(config, plan.loss_scaling)
        objective = make_objective(config, model)
        program = engine.program(model, objective, optimizer, plan, placement)
    return Built(model, optimizer, objective, program)
