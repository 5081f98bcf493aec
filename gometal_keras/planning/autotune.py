"""The measured choice of a `RunPlan` (precision, XLA, loop, placement) for one model.

`precision.py` says which precisions a device could run fast; this module has a few steps
of the user's own model timed under each candidate plan on synthetic data of the right
shapes (`trial_runner.TrialRunner`: interleaved rounds, typed `Candidate` records), and
`decision.choose` keeps the fastest sound one. Trials run on throw-away copies: the user's
model and global state are untouched. A decision is stored in the `decision_cache` and
read back by later trainers of the same model and device (``TrainerConfig.decision_cache``);
``"never"`` takes the default plan by device facts alone (`decision.by_rule`).

A trial that raises or outlasts `TRIAL_TIME_LIMIT` drops its candidate, error recorded, and
the next is tried: fused, per-step, then (on a GPU) the host CPU. On a device with
`KNOWN_FAULTS` (Apple GPUs) even a sole plan is tried, the CPU is timed too (small models
often train faster there) and float32 trials are checked against the CPU's losses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Callable
from typing import Any

import keras

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.plan import AUTO, PRECISION_NAMES, Loop, Precision, RunPlan
from gometal_keras.engines.base import Engine, Placement
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.planning import decision_cache
from gometal_keras.planning.candidates import candidates, policy_of, preferred
from gometal_keras.planning.decision import (
    MIN_GAIN,
    Decision,
    by_rule,
    decide,
    kept,
    sole_candidate,
)
from gometal_keras.planning.trial_runner import TrialRunner

#: Device kinds with known failures and silently wrong float32 results in graph mode, each
#: with its report: a float32 trial there must match the CPU's losses (`trial_runner.CHECK_RTOL`;
#: mixed plans are not compared: float16 rounding alone exceeds that).
KNOWN_FAULTS = {"metal": "Apple developer forum thread 778640"}


@dataclasses.dataclass(frozen=True)
class Selection:
    """What to train: the plan, why it was chosen, the model, and where it trains.

    Attributes:
        plan: The plan to run (as the trial program ran it, where one was timed).
        decision: How it was chosen (None when nothing was chosen).
        model: The model to train: the user's own, or one built in ``placement.scope()``.
        placement: Where to train: the placement asked for, or the host CPU's.
    """

    plan: RunPlan
    decision: Decision | None
    model: keras.Model
    placement: Placement


def check(config: TrainerConfig, device: DeviceInfo) -> None:
    """Raise ValueError when `config` asks for XLA and `device` has none (Apple GPUs).

    Example:
        >>> metal = DeviceInfo("tensorflow", "metal", "Apple GPU", False, True, False)
        >>> check(TrainerConfig(jit_compile=True), metal)
        Traceback (most recent call last):
        ValueError: jit_compile=True asks for XLA, which Apple GPU (metal, tensorflow, no XLA) \
does not have; expected jit_compile=False or None.
    """
    if config.jit_compile and not device.xla:
        raise ValueError(
            f"jit_compile=True asks for XLA, which {device.describe()} does not have; "
            "expected jit_compile=False or None."
        )


def plans(
    config: TrainerConfig, engine: Engine, device: DeviceInfo, precision: Precision
) -> list[RunPlan]:
    """The plans for `precision` worth timing, the default first.

    XLA settings come from the engine (or `config.jit_compile`). Loops: `config.loop`
    when set; else the fused epoch, plus one step per call where fused can lose: on a CPU
    that must use XLA (its compiled loops run convolutions up to 10-30x slower) and on Metal
    (no GPU kernels for the loop's TensorArray ops nor Dropout's random-key op: TensorFlow
    moves them to the CPU, copying every step).

    Example:
        >>> from gometal_keras import engines
        >>> engine = engines.current()
        >>> config = TrainerConfig(jit_compile=False, loop="step")
        >>> plans(config, engine, engine.describe_device(), Precision.FLOAT32)[0].label()
        'float32 (no XLA, step)'
    """
    check(config, device)
    jits = (
        (config.jit_compile,)
        if config.jit_compile is not None
        else engine.jit_options(device, precision)[: 1 if _untimed_xla(config) else None]
    )  # a seed replays a timed XLA choice through the decision cache (docs/guarantees.md, 5)
    xla_only = False not in jits
    scaling = config.loss_scaling_for(precision)
    found = []
    for jit in jits:
        if config.loop != "auto":
            loops: tuple[Loop, ...] = (Loop(config.loop),)
        elif (jit and xla_only and device.kind == "cpu") or device.kind in KNOWN_FAULTS:
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
            (trained under its own policy, where it lives: never moved to the CPU).
        config: The training configuration (`precision`, `jit_compile`, `loop`).
        engine: The backend engine.
        seed: Seed for models and trial data.
        placement: Where models live (call inside ``placement.scope()``); None = one device.

    Returns:
        A `Selection`.

    Raises:
        ValueError: `config` asks for XLA on a device without it.
        RuntimeError: Every candidate's program failed (the sentence lists each).

    Example:
        >>> from gometal_keras import engines
        >>> b = ModelBuilder([8, 4]).add_dense(2)
        >>> config = TrainerConfig(batch_size=8, precision="float32", jit_compile=False)
        >>> select(b, config, engines.current(), seed=0).plan.label()
        'float32 (no XLA, fused)'
    """
    device = engine.describe_device()
    placement = placement or Placement(engine)
    names, factory, given = _precisions(source, config, seed, device)
    options = [(p, placement) for name in names for p in plans(config, engine, device, name)]
    auto = config.resolved_precision == AUTO
    cpu = engine.cpu_placement() if given is None and type(placement) is Placement else None
    loops = (Loop.FUSED, Loop.STEP) if config.loop == "auto" else (Loop(config.loop),)
    on_cpu = [  # the CPU's plans: float32 (or the precision asked for), fused first
        (RunPlan(p, bool(config.jit_compile), lp, config.loss_scaling_for(p)), cpu)
        for p in (([Precision.FLOAT32] if auto else names) if cpu else [])
        for lp in loops
    ]
    fragile = device.kind in KNOWN_FAULTS
    if fragile:  # the CPU is a timed candidate there (its per-step plan follows if it fails)
        options, on_cpu = options + on_cpu[:1], []
    timing = len(options) > 1 or fragile
    if config.decision_cache == "never" and (timing or auto):
        return _by_rule(source, config, engine, device, options, factory, given, placement)
    key = None
    if timing:
        place = type(placement).__name__
        key = decision_cache.cache_key(source, config, device, place)
        found = decision_cache.load(key) if config.decision_cache == "cache" else None
        where = (cpu or engine.cpu_placement()) if found and found.chosen.on_host else placement
        if found is not None and where is not None:
            with where.scope() if where is not placement else contextlib.nullcontext():
                return Selection(found.chosen, found, given or factory(found.precision), where)
    report = KNOWN_FAULTS.get(device.kind)
    trial = TrialRunner(factory, config, engine, seed, cpu if fragile else None, report, MIN_GAIN)
    for plan, place in options if timing else ():
        trial(plan, place, warm_only=len(options) == 1)
        other = plan.replace(loop=Loop.STEP if plan.loop is Loop.FUSED else Loop.FUSED)
        if trial.timed[-1].error and config.loop == "auto" and (other, place) not in options:
            trial(other, place, warm_only=len(options) == 1)  # fused -> per-step (and back)
    trial.measure()  # the timed rounds, all candidates interleaved
    for plan, place in on_cpu:  # then the CPU, where every plan failed
        if trial.timed and all(c.error for c in trial.timed):
            trial(plan, place, warm_only=True)
    if len(options) == 1 and not any(c.error for c in trial.timed):
        only, decision = options[0][0], None
        if auto:
            decision = sole_candidate(device, only) if given is None else kept(only)
        return Selection(only, decision, given or factory(only.precision), placement)
    compare = given is None and (len(names) > 1 or auto)
    decision = decide(device, trial.timed, compare, own=given is not None)
    decision = dataclasses.replace(decision, trial_seconds=trial.seconds)
    if key is not None and config.decision_cache != "never":
        decision_cache.store(key, decision, decision_cache.summary(source, config, device))
    where = trial.places[decision.chosen]
    with where.scope() if where is not placement else contextlib.nullcontext():
        model = given or factory(decision.precision)
    return Selection(decision.chosen, decision, model, where)


def _untimed_xla(config: TrainerConfig) -> bool:
    """Without trials (``decision_cache="never"``) the engine's default XLA setting is taken."""
    return config.decision_cache == "never"


def _by_rule(source, config, engine, device, options, factory, given, placement) -> Selection:
    """The default plan without trials (``decision_cache="never"``): `decision.by_rule`."""
    if given is None and config.resolved_precision == AUTO:
        plan = plans(config, engine, device, preferred(device))[0]
        decision = by_rule(device, plan)
    else:
        plan = options[0][0]
        why = "The default XLA setting and loop, by rule (no trials)."
        decision = Decision(plan, why, (), origin="rule")
    return Selection(plan, decision, given or factory(plan.precision), placement)


def _precisions(
    source: Any, config: TrainerConfig, seed: int, device: DeviceInfo
) -> tuple[list[Precision], Callable[[Precision], keras.Model], keras.Model | None]:
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


def _clone(model: keras.Model) -> keras.Model:
    state = random.getstate()  # clone_model draws unseeded initializers from `random`
    try:
        copy = keras.models.clone_model(model)
    finally:
        random.setstate(state)
    copy.set_weights(model.get_weights())
    return copy
