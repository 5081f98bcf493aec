"""An update that overflows with finite gradients stops `fit` with the last good state.

Under float32 the non-finite guard rejects a step whose new weights are not finite; on
JAX a whole-epoch call first runs with every update committed, checks the weights at its
end, and only when a check fails runs again from its first state, each step guarded: both
routes are drawn here. Under mixed_float16, Keras' `LossScaleOptimizer` skips a step
whose (scaled) gradients are not finite and backs off the scale; a step whose loss and
gradients are finite but whose update is not (a learning rate that overflows float32) is
a divergence that backing off the scale cannot fix. Either way the update must never
reach the weights, no later step of its epoch may commit, and `fit` raises
`FloatingPointError` naming the epoch and the step, the model holding exactly the state
of the last committed step (before the fix, fp16 applied the update: infinite weights,
every later step skipped, and `fit` returned normally).

The input class, drawn by hypothesis: the learning rate (1e23 to 1e36: each step's update
overflows float32 once its gradient is large), the step whose batch makes the gradient
large, a clean epoch before or not, a model with or without BatchNorm, the loop layout
(whole epoch per call, one call per step, epoch in chunks, streamed), XLA, and the
precision (mixed_float16, or float32 under the guard). The oracle
is a trainer with the same seed that only saw the batches before the bad one: the model
and optimizer variables must equal its own bit for bit, all finite; and the next epoch
trains again. TensorFlow runs in this process; JAX and PyTorch each run a few cases in one
subprocess, started before the TensorFlow cases so that they overlap them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from unittest import mock

import keras
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from gometal_keras.core.config import TrainerConfig
from gometal_keras.data import streaming
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.planning import decision_cache
from gometal_keras.training import loop as loop_module
from gometal_keras.training.trainer import Trainer

FEATURES, BATCH, STEPS = 4, 8, 5
LAYOUTS = ("fused", "step", "chunked", "stream")
#: One draw of the input class: learning-rate exponent, bad step, clean epoch first,
#: BatchNorm, loop layout, XLA, precision.
CASES = st.tuples(
    st.integers(23, 36),
    st.integers(0, STEPS - 1),
    st.booleans(),
    st.booleans(),
    st.sampled_from(LAYOUTS),
    st.booleans(),
    st.sampled_from(["mixed_float16", "float32"]),
)


def make(exponent: int, batchnorm: bool, layout: str, xla: bool, precision: str) -> Trainer:
    b = ModelBuilder([BATCH, FEATURES])
    if batchnorm:
        b.add_batchnorm(affine=False)  # its statistics move; no float16 weights to update
    b.add_dense(1, use_bias=False)  # the last layer: float32 weights and gradients
    cfg = TrainerConfig(
        batch_size=BATCH,
        precision=precision,
        jit_compile=xla and keras.backend.backend() != "torch",
        loop="step" if layout == "step" else "fused",
        seed=5,
        optimizer="sgd",
        learning_rate=10.0**exponent,
        problem_type="regression",
        loss="mse",
    )
    return Trainer(b, cfg)


def batches(exponent: int, bad: int | None, batchnorm: bool, seed: int) -> list[tuple]:
    """`STEPS` batches: good ones train with finite updates, batch `bad` overflows the update.

    Good batches: without BatchNorm, inputs and targets small enough that the huge rate
    makes steps of about 1 (a stable least-squares step); with BatchNorm, zeros
    (normalised to exactly 0: no gradient, but the moving statistics move). The bad
    batch: rows of +-1 and targets of +-c, c = 1e39 / rate: a finite loss (at most 1e32)
    and finite scaled gradients, but an update of about 2e39.
    """
    rng = np.random.default_rng(seed)
    rate, out = 10.0**exponent, []
    for i in range(STEPS):
        if i == bad:
            sign = np.resize([1.0, -1.0], BATCH)
            x = np.repeat(sign[:, None], FEATURES, axis=1)
            y = sign * (1e39 / rate)
        elif batchnorm:
            x = np.zeros((BATCH, FEATURES))
            y = rng.normal(size=BATCH)
        else:
            x = rng.normal(size=(BATCH, FEATURES)) * (0.1 / np.sqrt(rate))
            y = rng.normal(size=BATCH) * (10 / np.sqrt(rate))
        out.append((x.astype(np.float32), y.astype(np.float32)))
    return out


def fit(t: Trainer, data: list[tuple], layout: str) -> None:
    if not data:
        return
    if layout == "stream":  # a list of (x, y) batches is streamed, two batches a call
        with mock.patch.object(streaming, "STAGE_BATCHES", 2):
            t.fit(data, epochs=1)
        return
    x, y = np.concatenate([b[0] for b in data]), np.concatenate([b[1] for b in data])
    share = 1e-12 if layout == "chunked" else loop_module.DEVICE_SHARE  # a batch a call
    with mock.patch.object(loop_module, "DEVICE_SHARE", share):
        t.fit(x, y, epochs=1)


def state(t: Trainer) -> list[np.ndarray]:
    variables = [*t.model.variables, *t.optimizer.variables]
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def check(
    exponent: int,
    bad: int,
    clean_first: bool,
    batchnorm: bool,
    layout: str,
    xla: bool,
    precision: str,
):
    """One case; returns None, or what went wrong (a string: subprocesses report it)."""
    clean = batches(exponent, None, batchnorm, seed=1)
    data = batches(exponent, bad, batchnorm, seed=2)
    t, ref = (make(exponent, batchnorm, layout, xla, precision) for _ in range(2))
    # The loss scaler's divergence is "not applied"; the float32 guard's stop "skipped".
    said_how = "not applied" if precision == "mixed_float16" else "skipped"
    if clean_first:
        fit(t, clean, layout)
        fit(ref, clean, layout)
    epoch = 2 if clean_first else 1
    try:
        fit(t, data, layout)
        return "fit returned normally"
    except FloatingPointError as err:
        said = str(err)
    if not re.search(rf"epoch {epoch}, step {bad + 1}\b", said) or said_how not in said:
        return f"message: {said}"
    fit(ref, data[:bad], layout)  # the oracle saw only the batches before the bad one
    got = state(t)
    for a, b in zip(got, state(ref), strict=True):
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            return "a variable is not finite"
        if not np.array_equal(a, b):
            return f"state differs from the oracle's: {a} != {b}"
    if layout == "step":  # outside fit each call is its own: the bad batch raises, no change
        try:
            t.train_batch(*data[bad])
            return "train_batch returned normally after a diverging update"
        except FloatingPointError as err:
            if said_how not in str(err):
                return f"train_batch message: {err}"
        if not all(np.array_equal(a, b) for a, b in zip(got, state(t), strict=True)):
            return "train_batch applied a diverging update"
    # The stop ends with its epoch: the next one trains.
    fit(t, clean, layout)
    after = state(t)
    if not all(np.isfinite(a).all() for a in after if a.dtype.kind == "f"):
        return "the epoch after the stop left a variable that is not finite"
    if all(np.array_equal(a, b) for a, b in zip(got, after, strict=True)):
        return "the epoch after the stop did not train"
    return None


#: Hypothesis phases: a failing case is reported as drawn (shrinking it retrains for minutes).
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
#: Cases per backend: PyTorch's eager steps are cheap, compiling backends' less so.
EXAMPLES = {"tensorflow": 2, "jax": 2, "torch": 4}


@pytest.fixture(scope="module", autouse=True)
def others(request, tmp_path_factory):
    """The JAX and PyTorch subprocesses, started first so that they overlap TensorFlow's."""
    if not any("other_backends" in item.name for item in request.session.items):
        return {}
    procs = _start(str(tmp_path_factory.mktemp("decision-cache")))
    yield procs
    for proc in procs.values():  # only the subprocesses started here
        if proc.poll() is None:
            proc.kill()


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow in-process")
@settings(max_examples=EXAMPLES["tensorflow"], deadline=None, phases=NO_SHRINK)
@given(CASES)
def test_tensorflow_overflowing_update_stops_fit_with_the_last_good_state(case):
    assert check(*case) is None, case


# JAX and PyTorch: one subprocess each, running hypothesis over the same input class.
SCRIPT = """
import json, sys, traceback
sys.path.insert(0, {tests!r})
from hypothesis import given, settings
import test_guard_divergence as m

failures = []

@settings(max_examples={n}, deadline=None, database=None, phases=m.NO_SHRINK)
@given(m.CASES)
def run(case):
    try:
        why = m.check(*case)
    except Exception:
        why = traceback.format_exc()[-3000:]
    if why is not None:
        failures.append([list(case), why])
        raise AssertionError(why)

try:
    run()
except AssertionError:
    pass
print("RESULT " + json.dumps(failures[:1]))
"""
OTHERS = ("jax", "torch")


def _start(cache: str) -> dict[str, subprocess.Popen]:
    procs = {}
    tests = os.path.dirname(os.path.abspath(__file__))
    for backend in OTHERS:
        if importlib.util.find_spec(backend) is None:
            continue
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        env[decision_cache.ENV] = cache  # never the user's own cache
        procs[backend] = subprocess.Popen(
            [sys.executable, "-c", SCRIPT.format(tests=tests, n=EXAMPLES[backend])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    return procs


@pytest.mark.parametrize("backend", OTHERS)
def test_other_backends_stop_fit_with_the_last_good_state(backend, others):
    if backend not in others:
        pytest.skip(f"{backend} is not installed")
    proc = others[backend]
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"{backend}: rc {proc.returncode}\n{stderr[-4000:]}"
    failures = json.loads(lines[-1][len("RESULT ") :])
    assert not failures, f"{backend}: {failures}"
