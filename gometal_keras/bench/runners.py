"""The runners: each way of training a `BenchConfig`, registered by name in `RUNNERS`.

Every runner takes one `RunRequest` (the same builder-made model, seed, data and number
of steps for all), trains ``warmup`` epochs, then ``repeats`` timed epochs, each timed on
the host clock after the device has finished (the runners read their losses back to the
host, which waits), and returns a `Timing`: the median epoch over the steps per epoch,
and the mean loss of the last epoch (after ``(warmup + repeats) * steps`` steps).

* ``gometal``: `Trainer` with the loop it picks, over data it arranged once
  (`Trainer.arrange`, then `Trainer.train_epoch` per epoch).
* ``keras``: plain ``keras.Model.fit`` (``jit_compile=True`` on TensorFlow and JAX,
  ``steps_per_execution=16``, 1 on PyTorch, ``shuffle=False``), timed by `EpochTimer`.
* ``jax-reference``: the hand-written whole-epoch JAX loop (`gometal_keras.bench.reference`).
* ``torch-eager`` / ``torch-compile``: a hand-written PyTorch loop of the same layers,
  `torch.autocast` (+ `torch.amp.GradScaler` for float16), fused Adam on CUDA, data on
  the device; ``torch-compile`` compiles the model and loss with `torch.compile`
  (`gometal_keras.bench.torch_runner`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable

import keras
import numpy as np

from gometal_keras import engines
from gometal_keras.bench import reference, torch_runner
from gometal_keras.bench.configs import BenchConfig
from gometal_keras.bench.measurement import RunRequest, Timing, time_epochs, timing_of
from gometal_keras.bench.precisions import policy_of, precision_context
from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import AUTO
from gometal_keras.engines.objectives import make_loss, make_optimizer
from gometal_keras.training.timing import EpochTimer
from gometal_keras.training.trainer import Trainer

#: Why a runner that does not train data-parallel skips every cell under ``--devices``.
NOT_DATA_PARALLEL = "--devices applies to the gometal and keras runners only"


def _available() -> str | None:
    return None


@dataclasses.dataclass(frozen=True)
class Runner:
    """A registered way of training a bench config, and what it can run.

    Attributes:
        name: The name ``--runners`` takes.
        run: Trains and times one `RunRequest`.
        data_parallel: Whether it honours ``--devices``.
        chooses_precision: Whether it runs ``auto`` (the Trainer only).
        backend: The only Keras backend it runs on (None: any).
        backend_reason: Why it skips the other backends.
        available: Returns why it cannot run on this machine at all (None: it can).
    """

    name: str
    run: Callable[[RunRequest], Timing]
    data_parallel: bool = False
    chooses_precision: bool = False
    backend: str | None = None
    backend_reason: str = ""
    available: Callable[[], str | None] = _available

    def unsupported(self, precision: str, backend: str, devices: int | None = None) -> str | None:
        """Return why this runner cannot run `precision` on `backend`, or None when it can.

        Args:
            precision: A bench precision.
            backend: The Keras backend in use.
            devices: The ``--devices`` count, or None.

        Returns:
            The reason (shown in the ``skipped`` list), or None.

        Example:
            >>> RUNNERS["keras"].unsupported("auto", "tensorflow")
            'only the Trainer chooses a precision'
            >>> RUNNERS["gometal"].unsupported("auto", "tensorflow") is None
            True
        """
        if devices and not self.data_parallel:
            return NOT_DATA_PARALLEL
        if precision == AUTO and not self.chooses_precision:
            return "only the Trainer chooses a precision"
        if self.backend is not None and backend != self.backend:
            return self.backend_reason
        return None


def bench_data(cfg: BenchConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``cfg.samples`` random samples (channels-last for images) and class labels 0-9."""
    rng = np.random.default_rng(seed)
    shape = cfg.builder().input_shape
    keras_shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
    x = rng.uniform(0.0, 1.0, (cfg.samples, *keras_shape)).astype(np.float32)
    return x, rng.integers(0, 10, cfg.samples).astype(np.int32)


def run_gometal(request: RunRequest) -> Timing:
    """The gometal `Trainer` as a user gets it: the loop it picks (data parallel if asked)."""
    cfg, devices = request.config, request.devices
    with precision_context(request.precision):
        config = TrainerConfig(
            batch_size=cfg.batch,
            precision=policy_of(request.precision),
            seed=request.seed,
            distribution="data_parallel" if devices else None,
            devices=devices,
        )
        trainer = Trainer(cfg.builder(), config)
        arranged = trainer.arrange(*request.data)
        times, values = time_epochs(
            lambda: trainer.train_epoch(arranged), request.warmup, request.repeats
        )
    detail = arranged.describe()
    if request.precision == AUTO and trainer.decision is not None:
        detail += f"; auto chose {trainer.decision.chosen.label()}"
    return timing_of(times, arranged.steps, values, detail, trainer.precision.value)


def run_keras(request: RunRequest) -> Timing:
    """Plain ``keras.Model.fit`` on the same model, policy, optimizer and loss."""
    cfg, policy = request.config, policy_of(request.precision)
    jit = keras.backend.backend() in ("tensorflow", "jax")
    per_call = 16 if jit else 1  # Keras' PyTorch backend runs one step per call only
    scope = contextlib.nullcontext()
    if request.devices:
        scope = engines.current().placement("data_parallel", request.devices).scope()
    with precision_context(request.precision), scope:
        model = cfg.builder().compile(policy, seed=request.seed)
        tc = TrainerConfig(batch_size=cfg.batch, precision=policy, seed=request.seed)
        model.compile(
            optimizer=make_optimizer(tc, tc.loss_scaling_for(policy)),  # scaled for float16
            loss=make_loss(tc, model),
            jit_compile=jit,
            steps_per_execution=per_call,
        )
        timer = EpochTimer(time_steps=False)
        history = model.fit(
            *request.data,
            batch_size=cfg.batch,
            epochs=request.warmup + request.repeats,
            shuffle=False,
            verbose=0,
            callbacks=[timer],
        )
    detail = f"fit, jit_compile={jit}, steps_per_execution={per_call}"
    times = timer.epoch_seconds[request.warmup :]
    return timing_of(times, cfg.steps, history.history["loss"][-1], detail)


#: Every runner by name, in the order ``--runners`` lists and runs them.
RUNNERS: dict[str, Runner] = {
    r.name: r
    for r in (
        Runner("gometal", run_gometal, data_parallel=True, chooses_precision=True),
        Runner("keras", run_keras, data_parallel=True),
        Runner(
            "jax-reference",
            reference.run_reference,
            backend="jax",
            backend_reason="the reference loop is written in JAX",
        ),
        Runner(
            "torch-eager",
            functools.partial(torch_runner.run_torch, compiled=False),
            available=torch_runner.torch_cuda,
        ),
        Runner(
            "torch-compile",
            functools.partial(torch_runner.run_torch, compiled=True),
            available=torch_runner.torch_cuda,
        ),
    )
}
