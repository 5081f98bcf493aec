"""The runners: one function per way of training a `BenchConfig` under one precision.

Each runner trains the same builder-made model (same seed, same data, same number of
steps) for ``warmup`` epochs, then ``repeats`` timed epochs, each timed on the host clock
after the device has finished (the runners read their losses back to the host, which
waits). It returns a `Timing`: the median epoch over the steps per epoch, and the mean
loss of the last epoch (after ``(warmup + repeats) * steps`` steps, the same for all).

* ``gometal``: `Trainer` with its fused epoch over device-resident data
  (``trainer._loop.arrange`` once, then ``trainer._loop.run_epoch``).
* ``keras``: plain ``keras.Model.fit`` (``jit_compile=True`` on TensorFlow and JAX,
  ``steps_per_execution=16``, ``shuffle=False``), timed by `EpochTimer`.
* ``torch-eager`` / ``torch-compile``: a hand-written PyTorch loop of the same layers,
  `torch.autocast` (+ `torch.amp.GradScaler` for float16), fused Adam on CUDA, data on
  the device; ``torch-compile`` compiles the model and loss with `torch.compile`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import time
from typing import Any

import keras
import numpy as np

from gometal_keras.bench.configs import BenchConfig
from gometal_keras.bench.roofline import full_float32
from gometal_keras.config import TrainerConfig
from gometal_keras.objectives import make_loss, make_optimizer
from gometal_keras.timing import EpochTimer
from gometal_keras.trainer import Trainer

RUNNERS = ("gometal", "keras", "jax-reference", "torch-eager", "torch-compile")


@dataclasses.dataclass
class Timing:
    """What one runner measured for one (config, precision)."""

    seconds_per_step: float
    epoch_seconds: list[float]
    loss: float
    detail: str = ""
    precision: str = ""  # what ran, where the runner chose it (precision="auto")


def policy_of(precision: str) -> str:
    """The Keras dtype policy of a bench precision (``float32-full`` trains as float32)."""
    return "float32" if precision == "float32-full" else precision


def precision_context(precision: str) -> Any:
    return full_float32() if precision == "float32-full" else contextlib.nullcontext()


def bench_data(cfg: BenchConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``cfg.samples`` random samples (channels-last for images) and class labels 0-9."""
    rng = np.random.default_rng(seed)
    shape = cfg.builder().input_shape
    keras_shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
    x = rng.uniform(0.0, 1.0, (cfg.samples, *keras_shape)).astype(np.float32)
    return x, rng.integers(0, 10, cfg.samples).astype(np.int32)


def _last_loss(losses: Any) -> float:
    a = np.asarray(losses, dtype=np.float64)
    if a.ndim == 2:
        a = a[:, 0]  # the Trainer's per-step rows: the loss, then its metrics
    finite = a[np.isfinite(a)]  # float16 steps that overflowed were skipped
    return float(finite.mean()) if finite.size else math.nan


def timing_of(
    times: list[float], steps: int, losses: Any, detail: str = "", precision: str = ""
) -> Timing:
    return Timing(statistics.median(times) / steps, times, _last_loss(losses), detail, precision)


def run_gometal(
    cfg: BenchConfig,
    precision: str,
    data: tuple,
    warmup: int,
    repeats: int,
    seed: int,
    devices: int | None = None,
) -> Timing:
    """The gometal `Trainer` as a user gets it: the loop it picks (data parallel if asked)."""
    with precision_context(precision):
        config = TrainerConfig(
            batch_size=cfg.batch,
            precision=policy_of(precision),
            seed=seed,
            distribution="data_parallel" if devices else None,
            devices=devices,
        )
        trainer = Trainer(cfg.builder(), config)
        arranged = trainer._loop.arrange(*data)
        losses = None
        for _ in range(warmup):
            losses = trainer._loop.run_epoch(arranged)  # host losses: waits for the device
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            losses = trainer._loop.run_epoch(arranged)
            times.append(time.perf_counter() - start)
    detail = trainer._loop.last_layout
    if precision == "auto" and trainer.decision:
        detail += f"; auto chose {trainer.decision['chosen']}"
    return timing_of(times, arranged.steps, losses, detail, trainer.precision)


def run_keras(
    cfg: BenchConfig,
    precision: str,
    data: tuple,
    warmup: int,
    repeats: int,
    seed: int,
    devices: int | None = None,
) -> Timing:
    """Plain ``keras.Model.fit`` on the same model, policy, optimizer and loss."""
    policy = policy_of(precision)
    jit = keras.backend.backend() in ("tensorflow", "jax")
    scope = contextlib.nullcontext()
    if devices:
        from gometal_keras import engines

        scope = engines.current().placement("data_parallel", devices).scope()
    with precision_context(precision), scope:
        model = cfg.builder().compile(policy, seed=seed)
        tc = TrainerConfig(batch_size=cfg.batch, precision=policy, seed=seed)
        model.compile(
            optimizer=make_optimizer(tc, policy),  # LossScaleOptimizer under mixed_float16
            loss=make_loss(tc, model),
            jit_compile=jit,
            steps_per_execution=16,
        )
        timer = EpochTimer(time_steps=False)
        history = model.fit(
            *data,
            batch_size=cfg.batch,
            epochs=warmup + repeats,
            shuffle=False,
            verbose=0,
            callbacks=[timer],
        )
    detail = f"fit, jit_compile={jit}, steps_per_execution=16"
    times = timer.epoch_seconds[warmup:]
    return timing_of(times, cfg.steps, history.history["loss"][-1], detail)


def run_jax_reference(
    cfg: BenchConfig, precision: str, data: tuple, warmup: int, repeats: int, seed: int
) -> Timing:
    """The hand-written whole-epoch JAX loop (`gometal_keras.bench.reference`)."""
    from gometal_keras.bench.reference import STATIC_LOSS_SCALE, run_reference

    with precision_context(precision):
        times, losses = run_reference(cfg, precision, data, warmup, repeats, seed)
    scale = f", static loss scale {STATIC_LOSS_SCALE:g}" if precision == "mixed_float16" else ""
    return timing_of(times, cfg.steps, losses, f"hand-written lax.scan epoch, Adam{scale}")


def unsupported(
    runner: str, precision: str, backend: str, devices: int | None = None
) -> str | None:
    """Why `runner` cannot run `precision` on `backend`, or None when it can."""
    if devices and runner not in ("gometal", "keras"):
        return "--devices applies to the gometal and keras runners only"
    if precision == "auto" and runner != "gometal":
        return "only the Trainer chooses a precision"
    if runner == "jax-reference" and backend != "jax":
        return "the reference loop is written in JAX"
    return None


def run(runner: str, *args: Any) -> Timing:
    """Dispatch to a runner by name; the last argument is the device count (or None)."""
    *args, devices = args
    if runner == "gometal":
        return run_gometal(*args, devices=devices)
    if runner == "keras":
        return run_keras(*args, devices=devices)
    if runner == "jax-reference":
        return run_jax_reference(*args)
    from gometal_keras.bench.torch_runner import run_torch

    return run_torch(*args, compiled=runner == "torch-compile")
