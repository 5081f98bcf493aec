"""`TrialRunner`: the throw-away programs of the trials, built, warmed up and timed.

For each candidate plan a fresh model (never the user's) is built under the plan's
precision, its program compiled and warmed up on synthetic batches of the model's shapes,
and, on a device with known faults, the device's float32 losses checked against the CPU's
once (a device that fails the check loses every candidate, mixed precision included). On
such a device each plan first runs once in a child process (`isolated.first_run`), so that a
plan that crashes its process is recorded as failed instead of ending the user's. Then
`measure` times every warmed-up candidate together in interleaved rounds
(`trials.interleave`) and completes their `Candidate` records.
"""

from __future__ import annotations

import contextlib
import functools
import math
import pickle
import time
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras.core import metal
from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import Loop, Precision, RunPlan
from gometal_keras.data.synthetic import synthetic_batches
from gometal_keras.engines.base import Engine, Placement, run_within
from gometal_keras.engines.build import build_program
from gometal_keras.planning import isolated
from gometal_keras.planning.trials import TRIAL_STEPS, Candidate, Rounds, interleave, per_step

#: A warm-up (or the timed rounds together) may take up to TRIAL_TIME_LIMIT seconds in a
#: worker thread (`run_within`: abandoned, not killed, if not). A float32 trial on a device
#: with known faults must match the CPU's losses within CHECK_RTOL.
TRIAL_TIME_LIMIT, CHECK_RTOL = 300.0, 1e-3
#: Whether a plan on a device with known faults first runs once in a child process
#: (`isolated.first_run`), so that a crash ends the child, not the user's program: None (the
#: default) on an Apple Silicon host, where Apple GPUs are; True or False everywhere.
ISOLATE: bool | None = None

class TrialRunner:
    """Builds and warms up throw-away programs, then times them together (`measure`).

    Args:
        factory: Builds a fresh model under a precision.
        config: The training configuration.
        engine: The backend engine.
        seed: Seed for the trial data.
        reference: The CPU placement float32 losses are checked against, or None.
        report: The known-faults report named when a check fails.
        margin: The decision's margin (`decision.MIN_GAIN`), for stopping early.

    Attributes:
        timed: Every `Candidate`, in the order tried (timed ones complete after `measure`).
        places: Each candidate plan's placement.
        seconds: Wall time spent on trials so far.
    """

    def __init__(self, factory, config: TrainerConfig, engine: Engine, seed: int,
                 reference: Placement | None, report: str | None, margin: float):  # fmt: skip
        self.factory, self.config, self.engine, self.seed = factory, config, engine, seed
        self.reference, self.report, self.margin = reference, report, margin
        self.timed: list[Candidate] = []
        self.places: dict[RunPlan, Placement] = {}
        self.seconds = 0.0
        self._pending: list[tuple[int, Callable[[], np.ndarray]]] = []
        self._untrusted: set[int] = set()  # ids of placements whose float32 losses were wrong
        self._trusted: set[int] = set()  # ids of placements whose float32 losses were right
        self._hung: dict[int, str] = {}  # ids of placements that hung -> why later plans skip
        self._ran: dict[tuple[RunPlan, int], str | None] = {}  # first runs in a child process

    def __call__(self, plan: RunPlan, place: Placement, warm_only: bool = False) -> Candidate:
        """Build and warm up `plan` under `place`; time it in `measure` unless `warm_only`.

        Where a reference is set, the device's float32 losses are checked first (a float32
        plan's own warm-up is checked; any other plan's device is checked once with a
        float32 program of the same loop, `check_device`). Returns the candidate's record
        (complete after `measure` when timed).
        """
        start = time.perf_counter()
        if id(place) in self._hung:  # a hung device stalls every plan after it: not tried
            found = Candidate(place.adapt(plan), math.nan, False, self._hung[id(place)])
            self.timed.append(found)
            self.places[found.plan] = place
            return found
        try:
            float32 = plan.precision is Precision.FLOAT32
            distrust = None if float32 else self.check_device(plan, place)
            if distrust is not None:
                found, run = Candidate(place.adapt(plan), math.nan, False, distrust), None
            else:
                found, run = self._prepare(plan, place)
        except Exception as error:  # the candidate is dropped; the next one is tried
            found, run = Candidate(place.adapt(plan), math.nan, False, _text(error)), None
            if isinstance(error, TimeoutError):
                self._drop_hung(found.plan, place)
        if run is not None and not warm_only:
            self._pending.append((len(self.timed), run))
        self.timed.append(found)
        self.places[found.plan] = place
        self.seconds += time.perf_counter() - start
        return found

    def check_device(self, plan: RunPlan, place: Placement) -> str | None:
        """Whether `place`'s float32 losses agree with the reference CPU's: None, or why not.

        Checked once per placement, with a float32 program of `plan`'s XLA setting and loop
        (a mixed plan's own losses differ from float32's by rounding alone); a placement
        without a reference to check against (or the reference itself) passes.
        """
        if self.reference is None or place is self.reference or plan.on_host:
            return None
        if id(place) in self._untrusted:
            return self._distrust_text()
        if id(place) not in self._trusted:
            check = RunPlan(Precision.FLOAT32, plan.xla, plan.loop)
            try:
                found, _ = self._prepare(check, place)
            except Exception as error:  # the device cannot run even float32: not checked
                if isinstance(error, TimeoutError):
                    self._drop_hung(check, place)
                return f"its float32 check failed to run: {_text(error)}"
            if found.error is not None and id(place) in self._untrusted:
                return self._distrust_text()
            if found.error is not None:  # e.g. its child process crashed
                return f"its float32 check failed to run: {found.error}"
        return None

    def _drop_hung(self, plan: RunPlan, place: Placement) -> None:
        """`place` hung running `plan`: every later plan on it is dropped untried, said once.

        A hung GPU command buffer stalls the device's queue, so the next plan there would
        hang too and the CPU would be reached only after one time limit per plan. The host
        CPU (the reference) is never dropped this way."""
        if place is self.reference or plan.on_host or id(place) in self._hung:
            return
        limit = f"{TRIAL_TIME_LIMIT:g} s"
        self._hung[id(place)] = (f"dropped: {plan.label()} did not finish within {limit} on "
                                 "this device, and a hung device stalls every plan on it")
        warnings.warn(f"{plan.label()} did not finish within the trial time limit of {limit} "
                      "(trial_runner.TRIAL_TIME_LIMIT); every other plan on this device is "
                      "dropped untried, and the host CPU is tried next where it is offered.",
                      RuntimeWarning, 4)

    def _distrust_text(self) -> str:
        return f"this device's float32 losses disagree with the CPU ({self.report})"

    def measure(self) -> None:
        """Time every warmed-up candidate in interleaved rounds and complete its record."""
        pending, self._pending = self._pending, []
        for index, _ in pending:  # a device that got float32 wrong is trusted with nothing
            old = self.timed[index]
            if id(self.places[old.plan]) in self._untrusted:
                self.timed[index] = Candidate(old.plan, math.nan, False, self._distrust_text())
        pending = [(i, run) for i, run in pending if self.timed[i].error is None]
        if not pending:
            return
        start = time.perf_counter()
        rounds = Rounds.empty(len(pending))
        try:
            calls = [run for _, run in pending]
            work = functools.partial(interleave, calls, self.margin, rounds=rounds)
            times, values, errors = run_within(work, TRIAL_TIME_LIMIT)
        except TimeoutError as error:  # one call hung: it is dropped, the rounds before kept
            hung = rounds.running
            times, values = [list(t) for t in rounds.times], list(rounds.values)
            errors = [error if i == hung else e for i, e in enumerate(rounds.errors)]
            if hung is not None:  # a stalled queue: every other candidate on its device too
                self._drop_hung(self.timed[pending[hung][0]].plan,
                                self.places[self.timed[pending[hung][0]].plan])
        for (index, _), t, value, error in zip(pending, times, values, errors, strict=True):
            old = self.timed[index]
            stalled = self._hung.get(id(self.places[old.plan]))
            if stalled is not None and error is None:  # finished rounds, then the queue stalled
                self.timed[index] = Candidate(old.plan, math.nan, False, stalled)
                continue
            if error is not None or not t:
                self.timed[index] = Candidate(old.plan, math.nan, False, _text(error))
                continue
            finite = old.finite and bool(np.isfinite(value[:, 0]).all())
            median, samples = per_step(t)
            self.timed[index] = Candidate(old.plan, median, finite, samples=samples)
        self.seconds += time.perf_counter() - start

    def _runner(self, plan: RunPlan, place: Placement, weights: Any = None) -> tuple:
        """A throw-away model under `plan`, and one call of its loop over the trial batches."""
        def make_model() -> keras.Model:
            model = self.factory(plan.precision)
            if weights is not None:
                model.set_weights(weights)
            return model

        built = build_program(make_model, self.config, plan, self.engine, place)
        program, model, objective = built.program, built.model, built.objective
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

    def _isolates(self, place: Placement) -> bool:
        """Whether plans on `place` first run in a child process (`ISOLATE`)."""
        isolate = metal.is_apple_silicon() if ISOLATE is None else ISOLATE
        return isolate and self.report is not None and place is not self.reference

    def _first_run(self, plan: RunPlan, place: Placement) -> str | None:
        """`plan` run once on `place` in a child process (once per plan and placement):
        None where it ran, else why not; TimeoutError where it hung (the child is killed)."""
        key = (plan, id(place))
        if key not in self._ran:
            job = {"model": self.factory(plan.precision), "config": self.config,
                   "engine": self.engine, "plan": plan, "place": place, "seed": self.seed}
            self._ran[key] = isolated.first_run(job, TRIAL_TIME_LIMIT)
        return self._ran[key]

    def _prepare(self, plan: RunPlan, place: Placement) -> tuple[Candidate, Any]:
        if self._isolates(place) and not plan.on_host:
            why = self._first_run(plan, place)
            if why is not None:  # it crashed or raised there: never run in this process
                return Candidate(place.adapt(plan), math.nan, False, why), None
        program, model, run = self._runner(plan, place)
        check = None  # the same weights, batches and steps on the CPU, before the trial trains
        if self.reference not in (None, place) and plan.precision is Precision.FLOAT32:
            check = functools.partial(self._runner, plan, self.reference, model.get_weights())

        def warm() -> tuple:  # trace and compile, then the CPU's losses to check against
            start = time.perf_counter()
            first = run()
            seconds, expected = time.perf_counter() - start, None
            with contextlib.suppress(Exception):  # a failing CPU leaves nothing to compare
                expected = check()[2]() if check else None
            return first, seconds, expected

        first, seconds, expected = run_within(warm, TRIAL_TIME_LIMIT)
        if expected is not None and not np.allclose(
            first[:, 0], expected[:, 0], rtol=CHECK_RTOL, atol=1e-6, equal_nan=True
        ):
            text = f"losses disagree with the CPU ({self.report})"
            self._untrusted.add(id(place))
            warnings.warn(f"{program.plan.label()} dropped: {text}.", RuntimeWarning, 3)
            return Candidate(program.plan, math.nan, False, text), None
        if expected is not None:
            self._trusted.add(id(place))
        finite = bool(np.isfinite(first[:, 0]).all())
        return Candidate(program.plan, seconds / TRIAL_STEPS, finite), run


def run_child(file: Any, result_path: str) -> None:
    """In a child process (`isolated.first_run`): load the job from `file`, build its
    program, run it once, and write the outcome.

    Args:
        file: The job file, open at the pickled job: ``model``, ``config``, ``engine``,
            ``plan``, ``place``, ``seed``.
        result_path: Where ``(stage, text)`` is pickled: ``("setup", error)`` where the job
            did not load, ``("started", None)`` once it did, then ``("ran", None)`` or
            ``("ran", error)``.
    """
    def write(stage: str, text: str | None) -> None:
        with open(result_path, "wb") as out:
            pickle.dump((stage, text), out)

    try:
        job = pickle.load(file)
    except Exception as error:  # e.g. a custom layer this process cannot import
        write("setup", _text(error))
        return
    write("started", None)
    model = job["model"]
    runner = TrialRunner(lambda _: model, job["config"], job["engine"], job["seed"],
                         None, None, 0.0)
    try:
        runner._runner(job["plan"], job["place"])[2]()
        write("ran", None)
    except Exception as error:  # an ordinary failure: the parent records it as the trial's
        write("ran", _text(error))


def _text(error: BaseException | None) -> str:
    """One line for a failed candidate: the message (with its type unless a timeout)."""
    if error is None:
        return "no timed round finished"
    first = (str(error).strip().splitlines() or ["no message"])[0][:200]
    return first if isinstance(error, TimeoutError) else f"{type(error).__name__}: {first}"
