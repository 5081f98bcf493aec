"""What the test modules share: tiny models and configs, data, hand-made runs, subprocesses.

Import it as ``from helpers import ...``: pytest puts ``tests/`` on ``sys.path`` for the
test modules in it. Everything here is deterministic (seeded) and small enough that a test
using it trains in well under a second on a CPU.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest

from gometal_keras.core.config import TrainerConfig
from gometal_keras.model.builder import ModelBuilder

#: The default sizes of `tiny_builder`, `classification_data` and `float32_config`.
FEATURES, CLASSES, BATCH = 8, 4, 16
#: The line prefix a subprocess script prints its JSON result after (see `run_script`).
RESULT = "RESULT "
#: The first lines of a `run_script` script that trains on two devices: TensorFlow splits
#: the CPU into two logical devices before it starts (it defines ``backend``).
TWO_DEVICES = """\
import os
backend = os.environ["KERAS_BACKEND"]
if backend == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
#: `run_script`'s ``env`` for two JAX CPU devices (XLA reads it when JAX starts).
TWO_JAX_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def seed_mlp() -> ModelBuilder:
    """Go-Metal's seed-demo MLP (784-512-256-10, ReLU, Dropout 0.2), chained with Go names."""
    return (
        ModelBuilder([64, 784])
        .AddDense(512, True, "dense1")
        .AddReLU("relu1")
        .AddDropout(0.2, "dropout1")
        .AddDense(256, True, "dense2")
        .AddReLU("relu2")
        .AddDropout(0.2, "dropout2")
        .AddDense(10, True, "output")
    )


def tiny_builder(
    features: int = FEATURES,
    classes: int = CLASSES,
    hidden: int = 16,
    batch: int = BATCH,
    *,
    batchnorm: bool = False,
    dropout: float = 0.0,
) -> ModelBuilder:
    """``features -> hidden (ReLU) -> classes`` logits; optional BatchNorm and Dropout."""
    b = ModelBuilder([batch, features]).add_dense(hidden, name="hidden")
    if batchnorm:
        b.add_batchnorm(name="norm")
    b.add_relu(name="act")
    if dropout:
        b.add_dropout(dropout, name="drop")
    return b.add_dense(classes, name="head")


def float32_config(**overrides: Any) -> TrainerConfig:
    """A config that trains without measuring anything: float32, no XLA, seeded.

    Defaults: ``precision="float32"``, ``jit_compile=False``, ``seed=0``,
    ``batch_size=BATCH``; `overrides` replace any field.
    """
    fields: dict[str, Any] = {
        "precision": "float32",
        "jit_compile": False,
        "seed": 0,
        "batch_size": BATCH,
    }
    fields.update(overrides)
    return TrainerConfig(**fields)


def classification_data(
    samples: int = 2 * BATCH,
    features: int = FEATURES,
    classes: int = CLASSES,
    seed: int = 0,
    *,
    learnable: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal float32 ``x`` and int32 labels.

    Labels are uniform at random, or with `learnable` the arg-max of the first `classes`
    features (a rule a tiny model learns in a few epochs; needs ``features >= classes``).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features)).astype(np.float32)
    if learnable:
        if features < classes:
            raise ValueError(f"learnable labels need features >= classes, got {features}.")
        return x, np.argmax(x[:, :classes], axis=1).astype(np.int32)
    return x, rng.integers(0, classes, samples).astype(np.int32)


def variable_values(variables: Iterable[Any]) -> list[np.ndarray]:
    """Copies of Keras variables as numpy arrays (any backend), to compare before/after."""
    import keras

    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


def hand_run(
    precision: str, losses: Sequence[float], seconds: Sequence[float], **fields: Any
) -> Any:
    """A `TrainingRun` made by hand (``device="test"`` unless given), for reports and plots."""
    from gometal_keras.training.record import TrainingRun

    fields.setdefault("device", "test")
    return TrainingRun(precision, list(losses), list(seconds), **fields)


def backend_installed(name: str) -> bool:
    """Whether the package behind a Keras backend (``"jax"``, ``"torch"``) is installed."""
    return importlib.util.find_spec(name) is not None


def require_backend(name: str) -> None:
    """Skip the calling test when `name` (``"jax"``, ``"torch"``) is not installed."""
    if not backend_installed(name):
        pytest.skip(f"{name} is not installed")


def quiet_env(backend: str = "tensorflow", **extra: str) -> dict[str, str]:
    """This process's environment for a child on Keras `backend`, TensorFlow's C++ logs off."""
    return dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **extra)


def run_script(
    code: str,
    *argv: str,
    backend: str = "tensorflow",
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> Any:
    """Run `code` in a fresh Python on `backend`; return the JSON it printed after `RESULT`.

    The script prints its result as ``print(RESULT + json.dumps(value))`` (the last such
    line counts). A non-zero exit, or no result line, fails the test with the tail of the
    child's output. `env` adds variables (e.g. ``XLA_FLAGS``) to `quiet_env`.
    """
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv],
        env=quiet_env(backend, **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"{backend} subprocess failed (rc {proc.returncode}):\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len(RESULT) :])


def oracle_clearly_faster(fast, slow, margin) -> bool:
    """numpy: paired rounds (else the median of `slow`); the median round's gap beyond the
    margin, and `fast` quicker in 80 % of the rounds (all of them below five)."""
    f = np.asarray(fast, dtype=float)
    paired = len(slow) == len(fast)
    s = np.asarray(slow, dtype=float) if paired else np.full(len(f), np.median(slow))
    need = len(f) if len(f) < 5 else math.ceil(0.8 * len(f))
    return bool(np.median(f - s * (1 - margin)) <= 0 and int((f < s).sum()) >= need)


def load_example(name: str) -> Any:
    """The example program ``examples/<name>.py`` as a module (the package never imports them)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                        f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"examples_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
