"""`AgreementCheck`: during `fit` on an Apple GPU, a few steps replayed on the CPU now and then.

Apple GPUs (tensorflow-metal, PyTorch MPS) have given numbers that drift from the CPU's
during training without raising: Apple developer forum thread 778640, keras#21668 (a loss of
45469 at 86 % accuracy), keras#18370 (a loss that explodes after 1-2 epochs on M2). The
check of the plan before training (`planning.verify`) runs once; this one runs every
``TrainerConfig.agreement_every`` epochs and after the last epoch of each `fit`.

A check copies the trained weights into two float32 copies of the model, one on the device
and one on the CPU, each with a fresh optimizer, and runs the same `AGREEMENT_STEPS` steps
of synthetic batches of the model's shapes on both (the trial's programs, built at the
trainer's first check and kept for its later `fit` calls). Their losses must agree within
`trial_runner.CHECK_RTOL`. When they do, the trainer's whole state (weights, optimizer,
epoch, schedule) is kept on the host as the last good one. When they do not, the trainer is
put back to that state and `fit` stops with a RuntimeError in one sentence, naming the last
agreeing epoch and, where a `keras.callbacks.ModelCheckpoint` saved it, its file. The check
runs before the user's callbacks see the epoch, so no callback saves the disagreeing
weights.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.plan import Precision, RunPlan
from gometal_keras.data.synthetic import synthetic_batches
from gometal_keras.engines.base import Engine, Placement
from gometal_keras.engines.build import build_program
from gometal_keras.planning.autotune import clone_under
from gometal_keras.planning.trial_runner import CHECK_RTOL
from gometal_keras.planning.verify import KNOWN_FAULTS
from gometal_keras.training.state import TrainerState

#: Steps replayed on the device and on the CPU at each check.
AGREEMENT_STEPS = 2
#: Each trainer's two replays, built at its first check and kept for its later `fit` calls
#: (a trainer's plan never changes), dropped with the trainer.
_REPLAYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Replay:
    """One float32 program of a model's copy on one placement, rerun from given weights.

    Args:
        model: The trained model (any precision); copied under float32 in `place`.
        config: The training configuration (loss, optimizer, batch size).
        plan: The plan in force (its XLA setting is kept; float32, no loss scaling).
        engine: The backend engine.
        place: Where the copy lives and runs.
        batches: ``(xs, ys)`` host arrays, one step per leading index.
    """

    def __init__(self, model: keras.Model, config: TrainerConfig, plan: RunPlan,
                 engine: Engine, place: Placement, batches: tuple[np.ndarray, np.ndarray]):
        def make() -> keras.Model:
            with place.scope():
                return clone_under(model, Precision.FLOAT32)

        check = RunPlan(Precision.FLOAT32, plan.xla, plan.loop)
        built = build_program(make, config, check, engine, place)
        self.model, self.place, self.program = built.model, place, built.program
        self.optimizer = built.optimizer
        self.fresh = [keras.ops.convert_to_numpy(v.value) for v in self.optimizer.variables]
        with place.scope():
            self.batches = [(place.put(x, 0), place.put(y, 0)) for x, y in zip(*batches,
                                                                              strict=True)]

    def losses(self, weights: list[np.ndarray]) -> np.ndarray:
        """The losses of the replayed steps from `weights` and a fresh optimizer.

        Args:
            weights: ``model.get_weights()`` of the trained model.

        Returns:
            One float per step, on the host.
        """
        with self.place.scope():
            self.model.set_weights(weights)
            for variable, value in zip(self.optimizer.variables, self.fresh, strict=True):
                variable.assign(value)
            values = [keras.ops.convert_to_numpy(self.program.step(x, y))
                      for x, y in self.batches]
        return np.array([float(np.reshape(v, (-1,))[0]) for v in values])


class AgreementCheck(keras.callbacks.Callback):
    """Stops `fit` when the device's float32 losses drift from the CPU's (module docstring).

    Args:
        snapshot: Returns the trainer's whole state (`Trainer.get_state`).
        restore: Puts a state back (`Trainer.set_state`).
        replays: Builds the device's and the CPU's `Replay` (called at the first check).
        every: Epochs between checks.
        last_epoch: The last epoch (0-based) of this `fit`: checked too.
        device: The device, named in the sentence.
        report: The known-faults report, named in the sentence.
        peers: The user's callbacks: a `keras.callbacks.ModelCheckpoint` among them whose
            file name holds the epoch is named when it saved the last agreeing epoch.
    """

    def __init__(self, snapshot: Callable[[], TrainerState],
                 restore: Callable[[TrainerState], None],
                 replays: Callable[[], tuple[Replay, Replay]], every: int, last_epoch: int,
                 device: str, report: str, peers: Sequence[Any] = ()):  # fmt: skip
        super().__init__()
        self.peers = [p for p in peers if isinstance(p, keras.callbacks.ModelCheckpoint)]
        self.snapshot, self.restore, self.replays = snapshot, restore, replays
        self.every, self.last_epoch, self.device, self.report = every, last_epoch, device, report
        self._built: tuple[Replay, Replay] | None = None
        self.good: TrainerState | None = None
        self.checks = 0
        self._saved: list[str] = []  # checkpoint files a ModelCheckpoint may have written

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.good = self.snapshot()  # verified before training, or checked at the last fit's end
        done = self.good.epoch
        self._saved = [p for p in self._checkpoints(done - 1, {}) if os.path.exists(p)] if done \
            else []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._saved = [p for p in self._saved if os.path.exists(p)]  # written at the last end

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every and epoch != self.last_epoch:
            return
        if self._built is None:
            self._built = self.replays()
        device, cpu = self._built
        weights = self.model.get_weights()
        ours, theirs = device.losses(weights), cpu.losses(weights)
        self.checks += 1
        if np.allclose(ours, theirs, rtol=CHECK_RTOL, atol=1e-6):
            self.good = self.snapshot()
            self._saved = self._checkpoints(epoch, logs or {})
            return
        good = self.good
        self.restore(good)
        gap = float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-6)))
        where = (f", which {self._saved[-1]!r} holds" if self._saved and os.path.exists(
            self._saved[-1]) else "")
        raise RuntimeError(
            f"Training stopped after epoch {epoch + 1}: the float32 losses of {self.device} "
            f"drifted from the CPU's on {len(ours)} replayed steps (relative difference "
            f"{gap:.3g}, allowed {CHECK_RTOL:g}; {self.report}), so the trainer was put back "
            f"to epoch {good.epoch}, the last that agreed{where}; train on the CPU, or set "
            "TrainerConfig(agreement_every=None) to train on without the check."
        )

    def _checkpoints(self, epoch: int, logs: dict) -> list[str]:
        """The files the user's `ModelCheckpoint` callbacks write for `epoch`, where the name
        holds the epoch (a file written again each epoch would hold later weights)."""
        found = []
        for callback in self.peers:
            try:
                names = [str(callback.filepath).format(epoch=e, **logs) for e in (epoch + 1, 0)]
            except (KeyError, IndexError, ValueError):
                continue
            if names[0] != names[1]:
                found.append(names[0])
        return found


def for_fit(trainer: Any, engine: Engine, placement: Placement, device: DeviceInfo,
            last_epoch: int, callbacks: list[keras.callbacks.Callback]
            ) -> AgreementCheck | None:  # fmt: skip
    """The check for one `fit` of `trainer`, or None where none applies.

    None unless the device has known faults (`KNOWN_FAULTS`), the plan trains on it (not
    on the host CPU), the engine offers the host CPU to compare with, and
    ``config.agreement_every`` is set.

    Args:
        trainer: The `Trainer` (its ``model``, ``config``, ``plan``, ``seed``, and
            ``get_state`` / ``set_state``).
        engine: Its engine.
        placement: Where it trains.
        device: Its device.
        last_epoch: The last epoch (0-based) this `fit` runs.
        callbacks: The user's callbacks (a `ModelCheckpoint` among them is named).

    Returns:
        An `AgreementCheck` to run before the user's callbacks, or None.
    """
    config, plan = trainer.config, trainer.plan
    cpu = engine.cpu_placement()
    if (device.kind not in KNOWN_FAULTS or plan.on_host or cpu is None
            or config.agreement_every is None or type(placement) is not Placement):
        return None

    def replays() -> tuple[Replay, Replay]:
        if trainer not in _REPLAYS:
            batches = synthetic_batches(trainer.model, config, AGREEMENT_STEPS, trainer.seed)
            _REPLAYS[trainer] = tuple(Replay(trainer.model, config, plan, engine, where,
                                             batches) for where in (placement, cpu))
        return _REPLAYS[trainer]

    return AgreementCheck(trainer.get_state, trainer.set_state, replays,
                          config.agreement_every, last_epoch, device.name,
                          KNOWN_FAULTS[device.kind], callbacks)
