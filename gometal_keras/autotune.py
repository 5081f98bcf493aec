"""The measured choice of precision, XLA and loop for one model on one device.

`precision.py` says which precisions a device could run fast; this module times a few
steps of the user's own model under each candidate (and each XLA setting worth trying)
on synthetic data of the right shapes, and keeps the fastest whose loss stays finite.
Trials run on throw-away copies: the user's model and global state are untouched.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras import precision as prec
from gometal_keras.builder import ModelBuilder
from gometal_keras.config import TrainerConfig
from gometal_keras.data import synthetic_batches
from gometal_keras.engines import Engine, Placement
from gometal_keras.objectives import make_objective, make_optimizer

#: A trial warms up with one call of TRIAL_STEPS steps, then times calls until
#: TRIAL_BUDGET seconds or TRIAL_REPEATS calls have passed, and keeps the fastest call.
TRIAL_STEPS, TRIAL_REPEATS, TRIAL_BUDGET = 8, 5, 0.5

ModelFactory = Callable[[str], keras.Model]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way to run a precision: with or without XLA, a whole epoch or a step per call."""

    jit: bool
    loop: str  # "fused" or "step"

    def label(self, precision: str) -> str:
        """E.g. ``"float32 (XLA, fused)"``."""
        return f"{precision} ({'XLA' if self.jit else 'no XLA'}, {self.loop})"

    @staticmethod
    def parse(label: str) -> tuple[str, Variant]:
        """Invert `label`: ``"float32 (XLA, fused)"`` -> ``("float32", Variant(True, "fused"))``."""
        precision, rest = label.split(" (", 1)
        xla, loop = rest.rstrip(")").split(", ")
        return precision, Variant(xla == "XLA", loop)


@dataclasses.dataclass(frozen=True)
class Selection:
    """What to train: the precision, how to run it, why, and the model to train.

    Attributes:
        precision: The dtype-policy name chosen.
        jit: Whether to compile with XLA.
        loop: ``"fused"`` (a whole epoch per device call) or ``"step"``.
        decision: JSON-ready record of the choice (None when nothing was chosen).
        model: The model to train: the user's own, or a new one built under `precision`.
    """

    precision: str
    jit: bool
    loop: str
    decision: dict[str, Any] | None
    model: keras.Model


def variants(
    config: TrainerConfig, engine: Engine, device: prec.DeviceInfo, precision: str
) -> list[Variant]:
    """The ways of running `precision` worth timing, the default first.

    XLA settings come from the engine (or `config.jit_compile`). Loops: `config.loop`
    when set; else the fused epoch, plus one step per call on a CPU that must use XLA:
    XLA's compiled loops run convolutions there up to 10-30x slower than single steps.
    """
    jits = (
        (config.jit_compile,)
        if config.jit_compile is not None
        else engine.jit_options(device, precision)
    )
    xla_only = False not in jits
    found = []
    for jit in jits:
        if config.loop != "auto":
            loops: tuple[str, ...] = (config.loop,)
        elif jit and xla_only and device.kind == "cpu":
            loops = ("fused", "step")
        else:
            loops = ("fused",)
        found += [Variant(jit, loop) for loop in loops]
    return found


def select(
    source: ModelBuilder | keras.Model,
    config: TrainerConfig,
    engine: Engine,
    seed: int,
    placement: Placement | None = None,
) -> Selection:
    """Choose precision, XLA and loop for `source` as `config` asks, measuring where it must.

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
        >>> # select(builder, TrainerConfig(precision="auto"), engines.current(), 0).precision
    """
    device = engine.describe_device()
    names, factory, given = _plan(source, config, seed, device)
    options = {n: variants(config, engine, device, n) for n in names}
    auto = config.resolved_precision == "auto"
    if len(names) == 1 and len(options[names[0]]) == 1:
        only = options[names[0]][0]
        decision = None
        if auto:
            sole = prec.sole_candidate(device) if given is None else _kept(names[0])
            decision = _record(sole, only, {})
        return Selection(names[0], only.jit, only.loop, decision, given or factory(names[0]))
    timings: dict[str, float] = {}
    best: dict[str, Variant] = {}

    def measure(name: str) -> float:
        for v in options[name]:
            timings[v.label(name)] = _trial(factory, name, v, config, engine, seed, placement)
        sound = {v: timings[v.label(name)] for v in options[name]}
        sound = {v: t for v, t in sound.items() if math.isfinite(t)}
        if not sound:
            return math.nan
        best[name] = min(sound, key=sound.__getitem__)
        return sound[best[name]]

    if given is None and (len(names) > 1 or auto):
        choice = prec.choose(device, measure, names)
    else:
        measure(names[0])
        why = "XLA setting and loop chosen by measurement."
        choice = _kept(names[0], why) if given is not None else prec.Decision(names[0], {}, why)
    v = best.get(choice.chosen, options[choice.chosen][0])
    model = given or factory(choice.chosen)
    return Selection(choice.chosen, v.jit, v.loop, _record(choice, v, timings), model)


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
    variant: Variant,
    config: TrainerConfig,
    engine: Engine,
    seed: int,
    placement: Placement | None,
) -> float:
    """Seconds per step of a throw-away model under `name` (NaN if its loss is not finite)."""
    placement = placement or Placement(engine)
    model = factory(name)
    objective = make_objective(config, model, name)
    optimizer = make_optimizer(config, name)
    program = engine.program(model, objective, optimizer, variant.jit, placement)
    xs, ys = synthetic_batches(model, config, TRIAL_STEPS, seed)
    if variant.loop == "fused":
        xs, ys = placement.put(xs, batch_axis=1), placement.put(ys, batch_axis=1)

        def run() -> np.ndarray:
            return np.asarray(program.epoch(xs, ys))
    else:
        batches = [(placement.put(x, 0), placement.put(y, 0)) for x, y in zip(xs, ys, strict=True)]

        def run() -> np.ndarray:
            return np.stack([np.asarray(program.step(x, y)) for x, y in batches])

    values = run()  # trace, compile and warm up
    times: list[float] = []
    while len(times) < TRIAL_REPEATS and (len(times) < 2 or sum(times) < TRIAL_BUDGET):
        start = time.perf_counter()
        values = run()
        times.append(time.perf_counter() - start)
    if not np.isfinite(values[:, 0]).all():
        return math.nan
    return min(times) / TRIAL_STEPS


def _record(choice: prec.Decision, variant: Variant, timings: dict[str, float]) -> dict[str, Any]:
    """The run record's view of a choice: timings keyed by precision, XLA and loop."""
    return choice.to_dict() | {
        "chosen": variant.label(choice.chosen),
        "precision": choice.chosen,
        "jit": variant.jit,
        "loop": variant.loop,
        "candidates": timings,
    }


def _kept(policy: str, extra: str = "") -> prec.Decision:
    reason = f"The keras.Model's own policy {policy} is kept (pass a ModelBuilder to choose)."
    return prec.Decision(policy, {}, f"{reason} {extra}".strip())


def _clone(model: keras.Model) -> keras.Model:
    state = random.getstate()  # clone_model draws unseeded initializers from `random`
    try:
        copy = keras.models.clone_model(model)
    finally:
        random.setstate(state)
    copy.set_weights(model.get_weights())
    return copy
