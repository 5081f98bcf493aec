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


def _timing(
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
    return _timing(times, arranged.steps, losses, detail, trainer.precision)


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
    return _timing(times, cfg.steps, history.history["loss"][-1], detail)


def torch_module(builder: Any) -> Any:
    """A ``torch.nn.Sequential`` of the builder's layers (NCHW, as Go-Metal)."""
    from torch import nn

    mods: list[Any] = []
    for s in builder.layers:
        a = s.args
        if s.kind == "dense":
            if len(s.input_shape) == 3:
                mods.append(nn.Flatten())
            mods.append(nn.Linear(math.prod(s.input_shape), a["units"], bias=a["use_bias"]))
        elif s.kind == "conv2d":
            mods.append(
                nn.Conv2d(
                    s.input_shape[0],
                    a["filters"],
                    a["kernel_size"],
                    a["stride"],
                    a["padding"],
                    bias=a["use_bias"],
                )
            )
        elif s.kind == "maxpool2d":
            mods.append(nn.MaxPool2d(a["pool_size"], a["stride"] or a["pool_size"]))
        elif s.kind == "relu":
            mods.append(nn.ReLU())
        elif s.kind == "dropout":
            mods.append(nn.Dropout(a["rate"]))
        else:
            raise ValueError(f"The torch runner has no {s.kind!r} layer.")
    return nn.Sequential(*mods)


@contextlib.contextmanager
def _torch_float32(precision: str):
    """float32 runs TF32 (as JAX does by default); float32-full runs full float32."""
    import torch

    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest" if precision == "float32-full" else "high")
    torch.backends.cudnn.allow_tf32 = precision != "float32-full"
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


def run_torch(
    cfg: BenchConfig,
    precision: str,
    data: tuple,
    warmup: int,
    repeats: int,
    seed: int,
    compiled: bool = False,
    device: str = "cuda",
) -> Timing:
    """A hand-written PyTorch AMP loop (eager, or with `torch.compile`)."""
    import torch
    from torch.nn import functional

    amp = {"mixed_float16": torch.float16, "mixed_bfloat16": torch.bfloat16}.get(precision)
    image = len(cfg.builder().input_shape) == 3
    fmt = torch.channels_last if image else torch.contiguous_format
    with torch.random.fork_rng(devices=[0] if device == "cuda" else []), _torch_float32(precision):
        torch.manual_seed(seed)
        model = torch_module(cfg.builder()).to(device, memory_format=fmt)
        x, y = data
        xs = torch.as_tensor(x).to(device)
        if image:
            xs = xs.permute(0, 3, 1, 2).contiguous(memory_format=fmt)
        xs = xs.reshape(cfg.steps, cfg.batch, *xs.shape[1:])
        ys = torch.as_tensor(y).long().to(device).reshape(cfg.steps, cfg.batch)
        opt = torch.optim.Adam(model.parameters(), 1e-3, (0.9, 0.999), 1e-8, fused=device == "cuda")
        scaler = torch.amp.GradScaler(
            device, 65536.0, growth_interval=2000, enabled=amp is torch.float16
        )

        def loss_of(xb, yb):
            return functional.cross_entropy(model(xb).float(), yb)

        forward = torch.compile(loss_of) if compiled else loss_of

        def epoch() -> list[float]:
            out = []
            for i in range(cfg.steps):
                with torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
                    loss = forward(xs[i], ys[i])
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                out.append(loss.detach())
            return torch.stack(out).cpu().tolist()  # waits for the device

        model.train()
        losses = None
        for _ in range(warmup):
            losses = epoch()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            losses = epoch()
            times.append(time.perf_counter() - start)
    detail = ("torch.compile" if compiled else "eager") + (
        ", GradScaler" if scaler.is_enabled() else ""
    )
    return _timing(times, cfg.steps, losses, detail)


def torch_cuda() -> str | None:
    """None when the torch runners can run here (torch with CUDA), else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA GPU for torch"


def run_jax_reference(
    cfg: BenchConfig, precision: str, data: tuple, warmup: int, repeats: int, seed: int
) -> Timing:
    """The hand-written whole-epoch JAX loop (`gometal_keras.bench.reference`)."""
    from gometal_keras.bench.reference import STATIC_LOSS_SCALE, run_reference

    with precision_context(precision):
        times, losses = run_reference(cfg, precision, data, warmup, repeats, seed)
    scale = f", static loss scale {STATIC_LOSS_SCALE:g}" if precision == "mixed_float16" else ""
    return _timing(times, cfg.steps, losses, f"hand-written lax.scan epoch, Adam{scale}")


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
    return run_torch(*args, compiled=runner == "torch-compile")
