"""tensorflow-metal's failures in the shapes users report, injected, each with its answer.

Unlike `test_metal_faults.py`'s tidy exceptions, these faults do not raise: a command-buffer
error is a line on stderr and garbage numbers (tensorflow#57058); an MPSNDArray assertion or
a segfault ends the process (tensorflow#83371, #60395). The answers: the CPU agreement check
catches the garbage; a plan first runs in a child process, so a crash ends the child and is
one sentence in the decision while this process (the test runner) lives on. No test
branches on a measured time.
"""

from __future__ import annotations

import warnings
from unittest import mock

import pytest
from fakes import COMMAND_BUFFER_LINE, FaultyEngine
from helpers import classification_data, float32_config, tiny_builder
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras import engines
from gometal_keras.planning import isolated, trial_runner, trials
from gometal_keras.training.trainer import Trainer

FUSED, STEP = "float32 (no XLA, fused)", "float32 (no XLA, step)"
CPU_FUSED = f"{FUSED} on the CPU"
QUICK = mock.patch.multiple(trials, MIN_ROUNDS=2, MAX_ROUNDS=2)


def trainer(engine: FaultyEngine, **overrides) -> Trainer:
    settings = {"jit_compile": None, "loop": "auto", "decision_cache": "always", **overrides}
    try:
        with QUICK, mock.patch.object(engines, "current", return_value=engine):
            return Trainer(tiny_builder(), float32_config(**settings))
    finally:
        engine.release()


def errors(t: Trainer) -> dict[str, str | None]:
    return {c.plan.label(): c.error for c in t.decision.candidates}


def test_a_command_buffer_line_and_garbage_numbers_are_caught_by_the_cpu_check(capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = trainer(FaultyEngine(garbage=True), loop="fused")
    assert COMMAND_BUFFER_LINE in capfd.readouterr().err  # it printed, and raised nothing
    assert t.plan.label() == CPU_FUSED
    assert errors(t)[FUSED] == "losses disagree with the CPU (Apple developer forum thread 778640)"
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert [s for s in said if s.startswith(f"{FUSED} dropped: losses disagree")], said


def test_a_plan_that_kills_its_process_is_one_failed_candidate():
    # Fused aborts after the MPSNDArray assertion, in its child process, not in this one.
    engine = FaultyEngine(crashes={FUSED: "abort"})
    with mock.patch.object(trial_runner, "ISOLATE", True):
        t = trainer(engine, loop="fused")
    assert t.plan.label() == CPU_FUSED  # this process lived on, and trains on the CPU
    assert errors(t)[FUSED] == (
        "its trial process was killed by SIGABRT (it would have ended this program); its "
        "last words: failed assertion `[MPSNDArray initWithDevice:descriptor:] Error: total "
        "bytes of NDArray > 2**32' (fake)")
    assert FUSED not in engine.calls  # never run in this process
    assert t.fit(*classification_data(), epochs=1).epochs_run == 1


STAGES = st.sampled_from([None, ("setup", "ImportError: no module named 'mine'"),
                           ("started", None), ("ran", None), ("ran", "NotFoundError: no")])


@settings(max_examples=15, deadline=None)
@given(code=st.integers(-40, 255), result=STAGES, stderr=st.text(max_size=80))
def test_a_child_that_crashed_fails_its_plan_one_that_never_started_does_not(code, result,
                                                                            stderr):
    stage, said = isolated.outcome(code, result, stderr)
    ran = result is not None and result[0] == "ran"  # what came after the run does not count
    crashed = not ran and (code < 0 or (result is not None and result[0] == "started"
                                        and code != 0))
    assert stage == ("ran" if ran or crashed else "setup")
    if crashed:  # one clause naming how it ended and its last line on stderr
        assert said.startswith("its trial process was ") and "\n" not in said
        assert ("killed by " if code < 0 else f"exit status {code}") in said
        last = [line.strip() for line in stderr.splitlines() if line.strip()]
        assert said.endswith(f"its last words: {last[-1][:200]}") if last else \
            "last words" not in said
    elif stage == "ran":
        assert said == result[1]


def test_a_model_that_does_not_pickle_is_tried_in_this_process_with_a_warning():
    job = {"model": lambda: None, "plan": trial_runner.RunPlan(
        trial_runner.Precision.FLOAT32, False)}
    with mock.patch.object(isolated.subprocess, "run") as run, \
            pytest.warns(RuntimeWarning, match=r"^float32 \(no XLA, fused\) could not be tried "
                         r"in a child process \(.*\); it is tried in this process, where a "
                         "crash would end the program"):
        assert isolated.first_run(job, 5.0) is None
    run.assert_not_called()


def test_on_an_apple_silicon_host_each_plan_first_runs_in_a_child():
    with mock.patch.object(trial_runner.metal, "is_apple_silicon", return_value=True), \
            mock.patch.object(trial_runner.isolated, "first_run", return_value=None) as first:
        t = trainer(FaultyEngine(), precision="float32", loop="fused")
    assert [call.args[0]["plan"].label() for call in first.call_args_list] == [FUSED]
    assert errors(t)[FUSED] is None  # then tried here as before
