"""The runners: each way of training a `BenchConfig`, registered by name in `RUNNERS`.

Every runner takes one `RunRequest` (the same builder-made model, seed, data and number
of epochs per call for all) and returns a `measurement.Session`, which
`gometal_keras.bench.measure` calls round after round: each call trains the request's
epochs as that runner's user calls them, and the session predicts over the data once a
round.

* ``gometal``: the `Trainer` as a user calls it: ``Trainer.fit(x, y, epochs=N)`` (the
  epochs from its run record, `TrainingRun.epoch_seconds`) and ``Trainer.predict(x)``.
* ``gometal-epoch``: the same Trainer's bare epochs (`Trainer.train_epoch` on data it
  arranged once): what ``fit`` adds to them is its fixed cost.
* ``keras``: plain ``keras.Model.fit`` (``jit_compile=True`` on TensorFlow and JAX,
  ``steps_per_execution=16``, 1 on PyTorch, ``shuffle=False``), timed by `EpochTimer`,
  and ``model.predict``.
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
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras import engines
from gometal_keras.bench import reference, torch_runner
from gometal_keras.bench.configs import BenchConfig
from gometal_keras.bench.measurement import Call, RunRequest, Session, timed, timed_epochs
from gometal_keras.bench.precisions import AUTO, policy_of, precision_context
from gometal_keras.core.config import TrainerConfig
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
        prepare: Builds the `Session` of one `RunRequest` (its model and data, untimed).
        data_parallel: Whether it honours ``--devices``.
        chooses_precision: Whether it runs ``auto`` (the Trainer only).
        backend: The only Keras backend it runs on (None: any).
        backend_reason: Why it skips the other backends.
        available: Returns why it cannot run on this machine at all (None: it can).
    """

    name: str
    prepare: Callable[[RunRequest], Session]
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
    """``cfg.samples`` random samples (channels-last for images; token ids in ``[0,
    cfg.vocab)`` for a token model) and class labels 0-9."""
    rng = np.random.default_rng(seed)
    shape = cfg.builder().input_shape
    keras_shape = (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape
    if cfg.vocab:
        x = rng.integers(0, cfg.vocab, (cfg.samples, *keras_shape)).astype(np.float32)
    else:
        x = rng.uniform(0.0, 1.0, (cfg.samples, *keras_shape)).astype(np.float32)
    return x, rng.integers(0, 10, cfg.samples).astype(np.int32)


def _trainer(request: RunRequest) -> Trainer:
    cfg, devices = request.config, request.devices
    config = TrainerConfig(
        batch_size=cfg.batch,
        precision=policy_of(request.precision),
        seed=request.seed,
        distribution="data_parallel" if devices else None,
        devices=devices,
    )
    return Trainer(cfg.builder(), config)


class TrainerSession:
    """The ``gometal`` runner: ``Trainer.fit`` and ``Trainer.predict`` as a user calls them.

    Each call is one ``trainer.fit(x, y, epochs=N)`` on the host arrays: its epochs are
    the run record's (device-synchronised), its wall time includes arranging the data.
    """

    def __init__(self, request: RunRequest):
        self.request = request
        self._context = precision_context(request.precision)
        with self._context:
            self.trainer = _trainer(request)
        self.precision = self.trainer.precision.value
        self.detail = "fit" + _chose(self.trainer, request)

    def call(self) -> Call:
        x, y = self.request.data
        with self._context:
            start = time.perf_counter()
            run = self.trainer.fit(x, y, epochs=self.request.epochs)
            wall = time.perf_counter() - start
        self.detail = f"fit: {run.loop}{_chose(self.trainer, self.request)}"
        return Call(list(run.epoch_seconds), wall, run.losses[-1])

    def predict(self) -> float:
        with self._context:
            return timed(lambda: self.trainer.predict(self.request.data[0]))


def _chose(trainer: Trainer, request: RunRequest) -> str:
    """``"; auto chose ..."`` where the request was ``auto``, else empty."""
    if request.precision == AUTO and trainer.decision is not None:
        return f"; auto chose {trainer.decision.chosen.label()}"
    return ""


class EpochSession:
    """The ``gometal-epoch`` runner: the Trainer's bare epochs, without ``fit`` around them."""

    def __init__(self, request: RunRequest):
        self.request = request
        self._context = precision_context(request.precision)
        with self._context:
            self.trainer = _trainer(request)
            self.arranged = self.trainer.arrange(*request.data)
        self.precision = self.trainer.precision.value
        self.detail = f"train_epoch: {self.arranged.describe()}"

    def call(self) -> Call:
        def epoch() -> Any:
            return self.trainer.train_epoch(self.arranged)

        with self._context:
            return timed_epochs(epoch, self.request.epochs)

    def predict(self) -> None:
        return None  # the same as `gometal`'s


class KerasSession:
    """The ``keras`` runner: plain ``keras.Model.fit`` and ``model.predict``, same model."""

    def __init__(self, request: RunRequest):
        cfg, policy = request.config, policy_of(request.precision)
        self.request, self.precision = request, ""
        self.jit = keras.backend.backend() in ("tensorflow", "jax")
        per_call = 16 if self.jit else 1  # Keras' PyTorch backend runs one step per call only
        self._scope = contextlib.nullcontext()
        if request.devices:
            self._scope = engines.current().placement("data_parallel", request.devices).scope()
        self._context = precision_context(request.precision)
        with self._context, self._scope:
            self.model = cfg.builder().compile(policy, seed=request.seed)
            tc = TrainerConfig(batch_size=cfg.batch, precision=policy, seed=request.seed)
            self.model.compile(
                optimizer=make_optimizer(tc, tc.loss_scaling_for(policy)),  # scaled for float16
                loss=make_loss(tc, self.model),
                jit_compile=self.jit,
                steps_per_execution=per_call,
            )
        self.detail = f"fit, jit_compile={self.jit}, steps_per_execution={per_call}"

    def call(self) -> Call:
        timer = EpochTimer(time_steps=False)
        with self._context, self._scope:
            start = time.perf_counter()
            history = self.model.fit(
                *self.request.data,
                batch_size=self.request.config.batch,
                epochs=self.request.epochs,
                shuffle=False,
                verbose=0,
                callbacks=[timer],
            )
            wall = time.perf_counter() - start
        return Call(timer.epoch_seconds, wall, history.history["loss"][-1])

    def predict(self) -> float:
        x, batch = self.request.data[0], self.request.config.batch
        with self._context, self._scope:
            return timed(lambda: self.model.predict(x, batch_size=batch, verbose=0))


#: Every runner by name, in the order ``--runners`` lists and runs them.
RUNNERS: dict[str, Runner] = {
    r.name: r
    for r in (
        Runner("gometal", TrainerSession, data_parallel=True, chooses_precision=True),
        Runner("gometal-epoch", EpochSession, data_parallel=True, chooses_precision=True),
        Runner("keras", KerasSession, data_parallel=True),
        Runner(
            "jax-reference",
            reference.prepare_reference,
            backend="jax",
            backend_reason="the reference loop is written in JAX",
        ),
        Runner(
            "torch-eager",
            functools.partial(torch_runner.prepare_torch, compiled=False),
            available=torch_runner.torch_cuda,
        ),
        Runner(
            "torch-compile",
            functools.partial(torch_runner.prepare_torch, compiled=True),
            available=torch_runner.torch_cuda,
        ),
    )
}
