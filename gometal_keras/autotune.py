"""The measured choice of a `RunPlan` (precision, XLA, loop, placement) for one model.

`precision.py` says which precisions a device could run fast; this module times a few
steps of the user's own model under each candidate plan on synthetic data of the right
shapes, as typed `Candidate` records, and `decision.choose` keeps the fastest sound one.
Trials run on throw-away copies: the user's model and global state are untouched.

A trial that raises or outlasts `TRIAL_TIME_LIMIT` drops its candidate, error recorded, and
the next is tried: fused, per-step, then (on a GPU) the host CPU. On a device with
`KNOWN_FAULTS` (Apple GPUs) even a sole plan is tried, the CPU is timed too (small models
often train faster there) and float32 trials are checked against the CPU's losses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import random
import time
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras.builder import ModelBuilder
from gometal_keras.config import TrainerConfig
from gometal_keras.data import synthetic_batches
from gometal_keras.decision import Candidate, Decision, decide, kept, sole_candidate
from gometal_keras.engines.base import Engine, Placement, run_within
from gometal_keras.objectives import make_objective, make_optimizer
from gometal_keras.plan import AUTO, PRECISION_NAMES, Loop, Precision, RunPlan
from gometal_keras.precision import DeviceInfo, candidates, policy_of

#: A trial warms up with one call of TRIAL_STEPS steps, then times calls until TRIAL_BUDGET
#: seconds or TRIAL_REPEATS calls, and keeps the fastest; its device calls may take up to
#: TRIAL_TIME_LIMIT seconds in a worker thread (`run_within`: abandoned, not killed, if not).
TRIAL_STEPS, TRIAL_REPEATS, TRIAL_BUDGET, TRIAL_TIME_LIMIT = 8, 5, 0.5, 300.0
#: Device kinds with known failures and silently wrong float32 results in graph mode, each
#: with its report: a float32 trial there must match the CPU's losses within CHECK_RTOL
#: (mixed plans are not compared: float16 rounding alone exceeds that).
KNOWN_FAULTS = {"metal": "Apple developer forum thread 778640"}
CHECK_RTOL = 1e-3


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
        else engine.jit_options(device, precision)[: 1 if config.seed is not None else None]
    )  # a seeded run takes the default, never a timed XLA choice (docs/guarantees.md, 5)
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
    trial = _Trials(factory, config, engine, seed, cpu if fragile else None, device)
    for plan, place in options if len(options) > 1 or fragile else ():
        trial(plan, place, warm_only=len(options) == 1)
        other = plan.replace(loop=Loop.STEP if plan.loop is Loop.FUSED else Loop.FUSED)
        if trial.timed[-1].error and config.loop == "auto" and (other, place) not in options:
            trial(other, place, warm_only=len(options) == 1)  # fused -> per-step (and back)
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
    where = trial.places[decision.chosen]
    with where.scope() if where is not placement else contextlib.nullcontext():
        model = given or factory(decision.precision)
    return Selection(decision.chosen, decision, model, where)


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


class _Trials:
    """Runs trials of throw-away models; records each `Candidate` and its placement."""

    def __init__(self, factory, config, engine, seed, reference, device):
        self.factory, self.config, self.engine, self.seed = factory, config, engine, seed
        self.reference, self.report = reference, KNOWN_FAULTS.get(device.kind)
        self.timed, self.places = [], {}  # the candidates in order; each one's placement

    def __call__(self, plan: RunPlan, place: Placement, warm_only: bool = False) -> None:
        """Time `plan` under `place` (only warm it up with `warm_only`); record the result."""
        try:
            found = self._run(plan, place, warm_only)
        except Exception as error:  # the candidate is dropped; the next one is tried
            first = (str(error).strip().splitlines() or ["no message"])[0][:200]
            text = first if isinstance(error, TimeoutError) else f"{type(error).__name__}: {first}"
            found = Candidate(place.adapt(plan), math.nan, False, text)
        self.timed.append(found)
        self.places[found.plan] = place

    def _runner(self, plan: RunPlan, place: Placement, weights: Any = None) -> tuple:
        """A throw-away model under `plan`, and one call of its loop over the trial batches."""
        with place.scope():
            model = self.factory(plan.precision)
            if weights is not None:
                model.set_weights(weights)
            optimizer = make_optimizer(self.config, plan.loss_scaling)
            objective = make_objective(self.config, model)
            program = self.engine.program(model, objective, optimizer, plan, place)
        xs, ys = synthetic_batches(model, self.config, TRIAL_STEPS, self.seed)
        if plan.loop is Loop.FUSED:
            xd, yd = place.put(xs, batch_axis=1), place.put(ys, batch_axis=1)
            calls = [lambda: program.epoch(xd, yd)]
        else:
            batches = [(place.put(x, 0), place.put(y, 0)) for x, y in zip(xs, ys, strict=True)]
            calls = [lambda x=x, y=y: program.step(x, y) for x, y in batches]

        def run() -> np.ndarray:  # in any thread: the placement's scope is entered here
            with place.scope():
                host = [keras.ops.convert_to_numpy(call()) for call in calls]
            return np.concatenate([np.reshape(h, (-1, objective.width)) for h in host])

        return program, model, run

    def _run(self, plan: RunPlan, place: Placement, warm_only: bool) -> Candidate:
        program, model, run = self._runner(plan, place)
        check = None  # the same weights, batches and steps on the CPU, before the trial trains
        if self.reference not in (None, place) and plan.precision is Precision.FLOAT32:
            check = functools.partial(self._runner, plan, self.reference, model.get_weights())

        def measure() -> tuple:  # warm up (trace, compile), check, then time calls
            times, first = [time.perf_counter()], run()
            times[0], expected = time.perf_counter() - times[0], None
            with contextlib.suppress(Exception):  # a failing CPU leaves nothing to compare
                expected = check()[2]() if check else None
            values = first
            while not warm_only and len(times) <= TRIAL_REPEATS:
                if len(times) > 2 and sum(times[1:]) >= TRIAL_BUDGET:
                    break
                start, values = time.perf_counter(), run()
                times.append(time.perf_counter() - start)
            return first, values, expected, times[1:] or times

        first, values, expected, times = run_within(measure, TRIAL_TIME_LIMIT)
        if expected is not None and not np.allclose(
            first[:, 0], expected[:, 0], rtol=CHECK_RTOL, atol=1e-6, equal_nan=True
        ):
            text = f"losses disagree with the CPU ({self.report})"
            warnings.warn(f"{program.plan.label()} dropped: {text}.", RuntimeWarning, 2)
            return Candidate(program.plan, math.nan, False, text)
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
