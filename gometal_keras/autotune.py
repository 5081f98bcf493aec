"""The measured choice of a `RunPlan` (precision, XLA, loop) for one model on one device.

`precision.py` says which precisions a device could run fast; this module times a few
steps of the user's own model under each candidate plan on synthetic data of the right
shapes, as typed `Candidate` records, and `decision.choose` keeps the fastest sound one.
Trials run on throw-away copies: the user's model and global state are untouched.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras.builder import ModelBuilder
from gometal_keras.config import TrainerConfig
from gometal_keras.data import synthetic_batches
from gometal_keras.decision import Candidate, Decision, choose, fastest, kept, sole_candidate
from gometal_keras.engines import Engine, Placement
from gometal_keras.objectives import make_objective, make_optimizer
from gometal_keras.plan import AUTO, PRECISION_NAMES, Loop, Precision, RunPlan
from gometal_keras.precision import DeviceInfo, candidates, policy_of

#: A trial warms up with one call of TRIAL_STEPS steps, then times calls until
#: TRIAL_BUDGET seconds or TRIAL_REPEATS calls have passed, and keeps the fastest call.
TRIAL_STEPS, TRIAL_REPEATS, TRIAL_BUDGET = 8, 5, 0.5

ModelFactory = Callable[[Precision], keras.Model]


@dataclasses.dataclass(frozen=True)
class Selection:
    """What to train: the plan, why it was chosen, and the model to train.

    Attributes:
        plan: The plan to run (as the trial program ran it, where one was timed).
        decision: How it was chosen (None when nothing was chosen).
        model: The model to train: the user's own, or a new one built under the plan.
    """

    plan: RunPlan
    decision: Decision | None
    model: keras.Model


def plans(
    config: TrainerConfig, engine: Engine, device: DeviceInfo, precision: Precision
) -> list[RunPlan]:
    """The plans for `precision` worth timing, the default first.

    XLA settings come from the engine (or `config.jit_compile`). Loops: `config.loop`
    when set; else the fused epoch, plus one step per call on a CPU that must use XLA:
    XLA's compiled loops run convolutions there up to 10-30x slower than single steps.

    Example:
        >>> from gometal_keras import engines
        >>> engine = engines.current()
        >>> config = TrainerConfig(jit_compile=False, loop="step")
        >>> plans(config, engine, engine.describe_device(), Precision.FLOAT32)[0].label()
        'float32 (no XLA, step)'
    """
    jits = (
        (config.jit_compile,)
        if config.jit_compile is not None
        else engine.jit_options(device, precision)
    )
    xla_only = False not in jits
    scaling = config.loss_scaling_for(precision)
    found = []
    for jit in jits:
        if config.loop != "auto":
            loops: tuple[Loop, ...] = (Loop(config.loop),)
        elif jit and xla_only and device.kind == "cpu":
            loops = (Loop.FUSED, Loop.STEP)
        else:
            loops = (Loop.FUSED,)
        found += [RunPlan(precision, jit, loop, scaling) for loop in loops]
    return found


def select(
    source: ModelBuilder | keras.Model,
    config: TrainerConfig,
    engine: Engine,
    seed: int,
    placement: Placement | None = None,
) -> Selection:
    """Choose the plan for `source` as `config` asks, measuring where it must.

    Args:
        source: A `ModelBuilder` (built under the chosen policy) or a built `keras.Model`
            (trained under its own policy).
        config: The training configuration (`precision`, `jit_compile`, `loop`).
        engine: The backend engine.
        seed: Seed for models and trial data.
        placement: Where models live (call inside ``placement.scope()``); None = one device.

    Returns:
        A `Selection`.

    Example:
        >>> from gometal_keras import engines
        >>> b = ModelBuilder([8, 4]).add_dense(2)
        >>> config = TrainerConfig(batch_size=8, precision="float32", jit_compile=False)
        >>> select(b, config, engines.current(), seed=0).plan.label()
        'float32 (no XLA, fused)'
    """
    device = engine.describe_device()
    names, factory, given = _precisions(source, config, seed, device)
    options = [plan for name in names for plan in plans(config, engine, device, name)]
    auto = config.resolved_precision == AUTO
    if len(options) == 1:
        only = options[0]
        decision = None
        if auto:
            decision = sole_candidate(device, only) if given is None else kept(only)
        return Selection(only, decision, given or factory(only.precision))
    timed = [_trial(factory, plan, config, engine, seed, placement) for plan in options]
    if given is None and (len(names) > 1 or auto):
        decision = choose(device, timed)
    else:
        best = fastest(timed)
        plan = best.plan if best else timed[0].plan
        if given is not None:
            decision = kept(plan, timed)
        else:
            why = "XLA setting and loop chosen by measurement."
            if best is None:
                why = "No trial gave a finite loss; the default XLA setting and loop are kept."
            decision = Decision(plan, why, tuple(timed))
    return Selection(decision.chosen, decision, given or factory(decision.precision))


def _precisions(
    source: Any, config: TrainerConfig, seed: int, device: DeviceInfo
) -> tuple[list[Precision], ModelFactory, keras.Model | None]:
    asked = config.resolved_precision
    if isinstance(source, ModelBuilder):
        names = list(candidates(device)) if asked == AUTO else [Precision(asked)]
        return names, lambda p: source.compile(p.value, seed=seed), None
    if isinstance(source, keras.Model):
        if not source.built or not source.inputs:
            raise ValueError(
                "The keras.Model is not built; expected a model with a known input shape."
            )
        own = policy_of(source)
        if own not in PRECISION_NAMES or own == AUTO:
            raise ValueError(
                f"The keras.Model was built under the dtype policy {own!r}; expected one of "
                f"{', '.join(p.value for p in Precision)}."
            )
        explicit = config.precision not in (None, AUTO) or config.use_mixed_precision
        if explicit and asked != own:
            raise ValueError(
                f"The keras.Model was built under {own!r} but the config asks for {asked!r}; "
                "build the model under that policy or pass a ModelBuilder."
            )
        return [Precision(own)], lambda _: _clone(source), source
    raise TypeError(
        f"model_or_builder is a {type(source).__name__}; expected a ModelBuilder or a keras.Model."
    )


def _trial(
    factory: ModelFactory,
    plan: RunPlan,
    config: TrainerConfig,
    engine: Engine,
    seed: int,
    placement: Placement | None,
) -> Candidate:
    """Time a throw-away model under `plan`: seconds per step, and whether its loss is finite."""
    placement = placement or Placement(engine)
    model = factory(plan.precision)
    objective = make_objective(config, model)
    optimizer = make_optimizer(config, plan.loss_scaling)
    program = engine.program(model, objective, optimizer, plan, placement)
    xs, ys = synthetic_batches(model, config, TRIAL_STEPS, seed)
    to_host = keras.ops.convert_to_numpy
    if plan.loop is Loop.FUSED:
        xs, ys = placement.put(xs, batch_axis=1), placement.put(ys, batch_axis=1)

        def run() -> np.ndarray:
            return to_host(program.epoch(xs, ys))
    else:
        batches = [(placement.put(x, 0), placement.put(y, 0)) for x, y in zip(xs, ys, strict=True)]

        def run() -> np.ndarray:
            return np.stack([to_host(program.step(x, y)) for x, y in batches])

    values = run()  # trace, compile and warm up
    times: list[float] = []
    while len(times) < TRIAL_REPEATS and (len(times) < 2 or sum(times) < TRIAL_BUDGET):
        start = time.perf_counter()
        values = run()
        times.append(time.perf_counter() - start)
    finite = bool(np.isfinite(values[:, 0]).all())
    return Candidate(program.plan, min(times) / TRIAL_STEPS, finite)


def _clone(model: keras.Model) -> keras.Model:
    state = random.getstate()  # clone_model draws unseeded initializers from `random`
    try:
        copy = keras.models.clone_model(model)
    finally:
        random.setstate(state)
    copy.set_weights(model.get_weights())
    return copy
