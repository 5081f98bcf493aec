"""The measured choice of precision and XLA for one model on one device.

`precision.py` says which precisions a device could run fast; this module times a few
steps of the user's own model under each candidate (and each XLA setting worth trying)
on synthetic data of the right shapes, and keeps the fastest whose loss stays finite.
Trials run on throw-away copies: the user's model and global state are untouched.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras import precision as prec
from gometal_keras.builder import ModelBuilder
from gometal_keras.config import TrainerConfig
from gometal_keras.engines import Engine, Placement
from gometal_keras.objectives import make_objective, make_optimizer
from gometal_keras.trial import synthetic_batches

#: A trial times TRIAL_REPEATS calls of TRIAL_STEPS steps and keeps the fastest call.
TRIAL_STEPS, TRIAL_REPEATS = 16, 5

ModelFactory = Callable[[str], keras.Model]


@dataclasses.dataclass(frozen=True)
class Selection:
    """What to train: the precision, whether to use XLA, why, and the model to train.

    Attributes:
        precision: The dtype-policy name chosen.
        jit: Whether to compile with XLA.
        decision: JSON-ready record of the choice (None when nothing was chosen).
        model: The model to train: the user's own, or a new one built under `precision`.
    """

    precision: str
    jit: bool
    decision: dict[str, Any] | None
    model: keras.Model


def select(
    source: ModelBuilder | keras.Model,
    config: TrainerConfig,
    engine: Engine,
    seed: int,
    placement: Placement | None = None,
) -> Selection:
    """Choose precision and XLA for `source` as `config` asks, measuring where it must.

    Args:
        source: A `ModelBuilder` (built under the chosen policy) or a built `keras.Model`
            (trained under its own policy).
        config: The training configuration (`precision`, `jit_compile`).
        engine: The backend engine.
        seed: Seed for models and trial data.
        placement: Where models live (call inside ``placement.scope()``); None = one device.

    Returns:
        A `Selection`.

    Example:
        >>> # select(builder, TrainerConfig(precision="auto"), engines.current(), 0).precision
    """
    device = engine.describe_device()
    names, factory, given = _plan(source, config, seed, device)
    options = {
        n: (config.jit_compile,)
        if config.jit_compile is not None
        else engine.jit_options(device, n)
        for n in names
    }
    auto = config.resolved_precision == "auto"
    if len(names) == 1 and len(options[names[0]]) == 1:
        jit = options[names[0]][0]
        decision = _record(prec.sole_candidate(device), jit, {}) if auto else None
        return Selection(names[0], jit, decision, given or factory(names[0]))
    timings: dict[str, float] = {}
    best_jit: dict[str, bool] = {}

    def measure(name: str) -> float:
        for jit in options[name]:
            timings[_label(name, jit)] = _trial(factory, name, jit, config, engine, seed, placement)
        sound = {j: timings[_label(name, j)] for j in options[name]}
        sound = {j: t for j, t in sound.items() if math.isfinite(t)}
        if not sound:
            return math.nan
        best_jit[name] = min(sound, key=sound.__getitem__)
        return sound[best_jit[name]]

    if len(names) > 1 or auto:
        choice = prec.choose(device, measure, names)
    else:
        measure(names[0])
        choice = prec.Decision(names[0], {}, "XLA on or off chosen by measurement.")
    jit = best_jit.get(choice.chosen, options[choice.chosen][0])
    model = given or factory(choice.chosen)
    return Selection(choice.chosen, jit, _record(choice, jit, timings), model)


def _plan(
    source: Any, config: TrainerConfig, seed: int, device: prec.DeviceInfo
) -> tuple[list[str], ModelFactory, keras.Model | None]:
    asked = config.resolved_precision
    if isinstance(source, ModelBuilder):
        names = list(prec.candidates(device)) if asked == "auto" else [asked]
        return names, lambda p: source.compile(p, seed=seed), None
    if isinstance(source, keras.Model):
        if not source.built or not source.inputs:
            raise ValueError(
                "The keras.Model is not built; expected a model with a known input shape."
            )
        own = prec.policy_of(source)
        explicit = config.precision not in (None, "auto") or config.use_mixed_precision
        if explicit and asked != own:
            raise ValueError(
                f"The keras.Model was built under {own!r} but the config asks for {asked!r}; "
                "build the model under that policy or pass a ModelBuilder."
            )
        return [own], lambda _: _clone(source), source
    raise TypeError(
        f"model_or_builder is a {type(source).__name__}; expected a ModelBuilder or a keras.Model."
    )


def _trial(
    factory: ModelFactory,
    name: str,
    jit: bool,
    config: TrainerConfig,
    engine: Engine,
    seed: int,
    placement: Placement | None,
) -> float:
    """Seconds per step of a throw-away model under `name` (NaN if its loss is not finite)."""
    placement = placement or Placement(engine)
    model = factory(name)
    objective = make_objective(config, model, name)
    program = engine.program(model, objective, make_optimizer(config, name), jit, placement)
    xs, ys = synthetic_batches(model, config, TRIAL_STEPS, seed)
    xs, ys = placement.put(xs, batch_axis=1), placement.put(ys, batch_axis=1)
    values = np.asarray(program.epoch(xs, ys))  # trace, compile and warm up
    times = []
    for _ in range(TRIAL_REPEATS):
        start = time.perf_counter()
        values = np.asarray(program.epoch(xs, ys))
        times.append(time.perf_counter() - start)
    if not np.isfinite(values[:, 0]).all():
        return math.nan
    return min(times) / TRIAL_STEPS


def _record(choice: prec.Decision, jit: bool, timings: dict[str, float]) -> dict[str, Any]:
    """The run record's view of a choice: timings keyed by precision and XLA setting."""
    return choice.to_dict() | {
        "chosen": _label(choice.chosen, jit),
        "precision": choice.chosen,
        "jit": jit,
        "candidates": timings,
    }


def _label(precision: str, jit: bool) -> str:
    return f"{precision} ({'XLA' if jit else 'no XLA'})"


def _clone(model: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
