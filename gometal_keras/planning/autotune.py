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
import warnings
from collections.abc import Callable
from typing import Any

import keras

from gometal_keras.core.config import CachePolicy, LoopSetting, PrecisionSetting, TrainerConfig
from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.plan import Loop, Precision, RunPlan
from gometal_keras.engines.base import Engine, Placement
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.planning import decision_cache
from gometal_keras.planning.candidates import candidates, policy_of, preferred
from gometal_keras.planning.decision import (
    MIN_GAIN,
    Decision,
    by_rule,
    check_failures,
    decide,
    kept,
    sole_candidate,
)
from gometal_keras.planning.trial_runner import TrialRunner
from gometal_keras.planning.verify import KNOWN_FAULTS, Verifier


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
        if config.loop.loop is not None:
            loops: tuple[Loop, ...] = (config.loop.loop,)
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

    Every call walks the same steps: the plans this model, device and config allow (typed
    from `config`) → a plan from its source (the decision cache, the rule under
    ``decision_cache="never"``, the sole option, or trials) → one verification of that plan
    (`verify.Verifier`: admissible here; on a device with `KNOWN_FAULTS` warmed up and its
    float32 checked against the CPU), the next plan tried where it fails → the model.

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
    auto = config.resolved_precision is PrecisionSetting.AUTO
    fragile = device.kind in KNOWN_FAULTS
    # The host CPU: a reference to check a faulty device against (one device only), and a
    # candidate (or fallback) for a builder; a user's keras.Model stays where it lives.
    host = engine.cpu_placement() if type(placement) is Placement else None
    cpu = host if given is None else None
    options = [(p, placement) for name in names for p in plans(config, engine, device, name)]
    on_cpu = [  # the CPU's plans: float32 (or the precision asked for), fused first
        (RunPlan(p, bool(config.jit_compile), lp, config.loss_scaling_for(p)), cpu)
        for p in (([Precision.FLOAT32] if auto else names) if cpu else [])
        for lp in _loops(config)
    ]
    verifier = Verifier(_admissible(options + on_cpu, config))
    if fragile:  # the CPU is a timed candidate there (its per-step plan follows if it fails)
        options, on_cpu = options + on_cpu[:1], []
    timing = len(options) > 1 or fragile
    report = KNOWN_FAULTS.get(device.kind)
    trial = TrialRunner(factory, config, engine, seed, host if fragile else None, report, MIN_GAIN)

    def verified(plan: RunPlan, place: Placement, source_name: str,
                 adapt: bool = True) -> str | None:
        """The one verification: None where `plan` may train, else why not (one clause).

        A stored plan is tested as stored (`adapt` False): its replicas and placement too."""
        why = verifier.refusal(place.adapt(plan) if adapt else plan)
        if why is None and fragile:  # warmed up; float32 checked against the CPU
            why = trial(plan, place, warm_only=True).error
        if why is not None:
            warnings.warn(f"The {source_name} plan {plan.label()} was refused: {why}; "
                          "deciding again.", RuntimeWarning, stacklevel=3)
        return why

    def selected(plan: RunPlan, decision: Decision | None, place: Placement) -> Selection:
        with place.scope() if place is not placement else contextlib.nullcontext():
            return Selection(place.adapt(plan), decision, given or factory(plan.precision), place)

    if placement.processes > 1:  # several workers: one plan, the same on each, untimed
        return _by_rule(config, engine, device, options, given, trial, verified, selected,
                        workers=(placement, verifier))
    if config.decision_cache is CachePolicy.NEVER and (timing or auto):
        return _by_rule(config, engine, device, options + on_cpu, given, trial, verified,
                        selected)
    key = None
    if timing:
        key = decision_cache.cache_key(source, config, device, type(placement).__name__)
        found = decision_cache.load(key) if config.decision_cache is CachePolicy.CACHE else None
        if found is not None:  # verified as any plan is, then trusted; else decided again
            where = host if found.chosen.on_host else placement
            if where is None:
                warnings.warn(f"The cached plan {found.chosen.label()} was refused: the host "
                              "CPU is not offered here; deciding again.", RuntimeWarning, 2)
            elif verified(found.chosen, where, "cached", adapt=False) is None:
                return selected(found.chosen, found, where)
    for plan, place in options if timing else ():
        trial(plan, place, warm_only=len(options) == 1)
        other = plan.replace(loop=Loop.STEP if plan.loop is Loop.FUSED else Loop.FUSED)
        if trial.timed[-1].error and config.loop is LoopSetting.AUTO and (
            other, place) not in options:
            trial(other, place, warm_only=len(options) == 1)  # fused -> per-step (and back)
    trial.measure()  # the timed rounds, all candidates interleaved
    for plan, place in on_cpu:  # then the CPU, where every plan failed
        if trial.timed and all(c.error for c in trial.timed):
            trial(plan, place, warm_only=True)
    if len(options) == 1 and not any(c.error for c in trial.timed):
        only, decision = options[0][0], None
        if auto:
            decision = sole_candidate(device, only) if given is None else kept(only)
        _check(verifier, only, placement)
        return selected(only, decision, placement)
    compare = given is None and (len(names) > 1 or auto)
    decision = decide(device, trial.timed, compare, own=given is not None)
    decision = dataclasses.replace(decision, trial_seconds=trial.seconds)
    _check(verifier, decision.chosen, trial.places[decision.chosen])
    if key is not None:
        decision_cache.store(key, decision, decision_cache.summary(source, config, device))
    return selected(decision.chosen, decision, trial.places[decision.chosen])


def _loops(config: TrainerConfig) -> tuple[Loop, ...]:
    """The loops `config` allows: the one it names, else both (fused first)."""
    return (Loop.FUSED, Loop.STEP) if config.loop.loop is None else (config.loop.loop,)


def _admissible(options: list[tuple[RunPlan, Placement]], config: TrainerConfig) -> set[RunPlan]:
    """Every plan the planner could produce from `options`: as placed, with either loop where
    the loop is measured (a failed fused trial falls back to per-step, and back)."""
    found = set()
    for plan, place in options:
        for loop in _loops(config) if config.loop is LoopSetting.AUTO else (plan.loop,):
            found.add(place.adapt(plan.replace(loop=loop)))
    return found


def _check(verifier: Verifier, plan: RunPlan, place: Placement) -> None:
    """A plan the trials made passes the verification by construction; say so if not."""
    why = verifier.refusal(place.adapt(plan))
    if why is not None:  # a planner bug, never a user's error
        raise RuntimeError(f"The planner chose a plan it may not run: {why}.")


def _untimed_xla(config: TrainerConfig) -> bool:
    """Without trials (``decision_cache="never"``) the engine's default XLA setting is taken."""
    return config.decision_cache is CachePolicy.NEVER


def _by_rule(config, engine, device, options, given, trial, verified, selected,
             workers: tuple[Placement, Verifier] | None = None) -> Selection:
    """The plan by rule, without timing (``decision_cache="never"``): `decision.by_rule`'s
    precision under ``"auto"``, else the first option; where it fails its verification (on a
    device with known faults) the next option, then the CPU's, as trials would fall back.

    With `workers` (a placement shared by several processes, and the verifier) every worker
    takes the rule's plan, checked only for admissibility: per-worker trials, cache entries
    or checks would build different programs on different workers, whose collectives then
    stop matching."""
    if given is None and config.resolved_precision is PrecisionSetting.AUTO:
        rule = plans(config, engine, device, preferred(device))[0]
        first = (rule, options[0][1])  # the rule's plan on the device asked for, first
        options = [first, *(o for o in options if o != first)]
    if workers is not None:
        (plan, place), (shared, verifier) = options[0], workers
        _check(verifier, plan, place)
        why = (f"By rule on every worker alike (worker {shared.worker} of "
               f"{shared.processes}; a multi-worker run is never timed per worker).")
        if given is None and config.resolved_precision is PrecisionSetting.AUTO:
            decision = by_rule(device, plan)
            decision = dataclasses.replace(decision, reason=f"{decision.reason} {why}")
        else:
            decision = Decision(plan, why, (), origin="rule")
        return selected(plan, decision, place)
    for plan, place in options:
        if verified(plan, place, "rule's") is not None:
            continue
        if given is None and config.resolved_precision is PrecisionSetting.AUTO:
            decision = by_rule(device, plan)
        else:
            why = "The default XLA setting and loop, by rule (no trials)."
            decision = Decision(plan, why, (), origin="rule")
        failed = tuple(c for c in trial.timed if c.error)
        if failed:
            names = "; ".join(f"{c.plan.label()}: {c.error}" for c in failed)
            decision = dataclasses.replace(
                decision, reason=f"{decision.reason} Failed: {names}.", candidates=failed)
        return selected(plan, decision, place)
    check_failures(trial.timed)
    raise RuntimeError("Every candidate plan failed its verification.")


def _precisions(
    source: Any, config: TrainerConfig, seed: int, device: DeviceInfo
) -> tuple[list[Precision], Callable[[Precision], keras.Model], keras.Model | None]:
    asked = config.resolved_precision
    if isinstance(source, ModelBuilder):
        if not source.layers:  # refused before any trial (a trial would fail on it)
            raise ValueError(
                "The ModelBuilder has no layers; expected at least one add_* call before training."
            )
        names = [asked.precision] if asked.precision else list(candidates(device))
        return names, lambda p: source.compile(p.value, seed=seed), None
    if isinstance(source, keras.Model):
        if not source.built or not source.inputs:
            raise ValueError(
                "The keras.Model is not built; expected a model with a known input shape."
            )
        own = policy_of(source)
        if own not in {p.value for p in Precision}:
            raise ValueError(
                f"The keras.Model was built under the dtype policy {own!r}; expected one of "
                f"{', '.join(p.value for p in Precision)}."
            )
        explicit = config.explicit_precision
        if explicit is not None and explicit.value != own:
            raise ValueError(
                f"The keras.Model was built under {own!r} but the config asks for {asked.value!r}; "
                "build the model under that policy or pass a ModelBuilder."
            )
        return [Precision(own)], lambda p: clone_under(source, p), source
    raise TypeError(
        f"model_or_builder is a {type(source).__name__}; expected a ModelBuilder or a keras.Model."
    )


def clone_under(model: keras.Model, precision: Precision) -> keras.Model:
    """A copy of `model` with its weights: under its own policy, or (to check a device's
    float32 against the CPU's) under `precision`, each mixed layer's policy replaced.

    Args:
        model: A built Keras model.
        precision: The precision of the copy.

    Returns:
        The copy (made in the caller's placement scope), its weights equal to `model`'s.
    """
    state = random.getstate()  # clone_model draws unseeded initializers from `random`
    try:
        if precision.value == policy_of(model):
            copy = keras.models.clone_model(model)
        else:
            copy = keras.models.clone_model(
                model, clone_function=lambda layer: _relayer(layer, precision))
    finally:
        random.setstate(state)
    copy.set_weights(model.get_weights())
    return copy


def _relayer(layer: keras.layers.Layer, precision: Precision) -> keras.layers.Layer:
    """A fresh copy of `layer` whose dtype policy is `precision`'s (others kept as they are)."""
    config = layer.get_config()
    if layer.dtype_policy.name.startswith("mixed_"):
        config["dtype"] = precision.value
    return type(layer).from_config(config)
