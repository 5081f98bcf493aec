"""`Persistent`: the state and checkpoint half of `Trainer` (its base class).

A trainer's full state is one `TrainerState` (`get_state` / `set_state`); `save` and
`load` move it through the checkpoint file format (`gometal_keras.training.checkpoint`), and
`export` hands the model to Keras' exporter. Kept apart from the training half so each
reads on its own; only `Trainer` derives from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import keras

from gometal_keras import engines
from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import RunPlan
from gometal_keras.planning.decision import Decision
from gometal_keras.training import checkpoint
from gometal_keras.training.state import TrainerState

#: `Trainer.load`'s default placement: the checkpoint's own ``config.distribution``, over
#: the devices of the process that loads it.
AS_SAVED = "as_saved"
T = TypeVar("T")


def _named(path: str, what: str, build: Callable[[], T]) -> T:
    """``build()``; a ValueError or TypeError it raises becomes one ValueError sentence
    naming the checkpoint `path` (e.g. a plan whose precision was edited to one the saved
    model was not built under)."""
    try:
        return build()
    except (ValueError, TypeError) as err:
        lines = str(err).strip().splitlines()
        detail = lines[0].rstrip(".") if lines else ""
        raise ValueError(
            f"Checkpoint {path!r} does not load: {what} ({type(err).__name__}: {detail})."
        ) from None


class Persistent:
    """What a `Trainer` saves and restores.

    Attributes:
        config: The training configuration.
        seed: The seed in force.
        epoch: Epochs completed.
        decision: How the plan was chosen, or None.
        model: The Keras model.
        optimizer: Its optimizer.
        schedule: The learning-rate schedule, or None.
    """

    config: TrainerConfig
    seed: int
    epoch: int
    decision: Decision | None
    model: keras.Model
    optimizer: Any
    schedule: Any

    @property
    def plan(self) -> RunPlan:
        """The plan in force (the trainer's program reports it)."""
        raise NotImplementedError

    def get_state(self) -> TrainerState:
        """Return everything needed to resume: variables, plan, decision, progress.

        Example:
            >>> from gometal_keras import ModelBuilder, Trainer, TrainerConfig
            >>> b = ModelBuilder([8, 3]).add_dense(2)
            >>> t = Trainer(b, TrainerConfig(8, precision="float32", jit_compile=False))
            >>> state = t.get_state()
            >>> state.plan == t.plan, len(state.model_variables)
            (True, 2)
        """
        to_host = keras.ops.convert_to_numpy
        return TrainerState(
            config=self.config,
            plan=self.plan,
            seed=self.seed,
            epoch=self.epoch,
            decision=self.decision,
            schedule=self.schedule.get_state() if self.schedule else None,
            model_variables=tuple(to_host(v.value) for v in self.model.variables),
            optimizer_variables=tuple(to_host(v.value) for v in self.optimizer.variables),
        )

    def set_state(self, state: TrainerState) -> None:
        """Restore what `get_state` returned (from this trainer or one of the same model).

        Every value is checked before any is assigned: a state that does not fit leaves
        the trainer unchanged.

        Raises:
            ValueError: The state's precision or variables do not fit this trainer.

        Example:
            >>> from gometal_keras import ModelBuilder, Trainer, TrainerConfig
            >>> b = ModelBuilder([8, 3]).add_dense(2)
            >>> t = Trainer(b, TrainerConfig(8, precision="float32", jit_compile=False))
            >>> import numpy as np
            >>> saved = t.get_state()
            >>> _ = t.fit(np.ones((8, 3)), np.zeros(8, int))
            >>> t.set_state(saved); t.epoch
            0
        """
        model_vars, opt_vars = self.model.variables, self.optimizer.variables
        state.check_fits(self.plan, model_vars, opt_vars)
        for variable, value in zip(model_vars, state.model_variables, strict=True):
            variable.assign(value)
        for variable, value in zip(opt_vars, state.optimizer_variables, strict=True):
            variable.assign(value)
        self.epoch, self.decision = state.epoch, state.decision
        if self.schedule and state.schedule:
            self.schedule.set_state(state.schedule)

    def save(self, path: str) -> None:
        """Write a checkpoint atomically: model, optimizer state, plan, epoch reached.

        Args:
            path: The checkpoint file (e.g. ``"run.gmk"``); replaced only once complete.

        Example:
            >>> import os, tempfile
            >>> from gometal_keras import ModelBuilder, Trainer, TrainerConfig
            >>> b = ModelBuilder([8, 3]).add_dense(2)
            >>> t = Trainer(b, TrainerConfig(8, precision="float32", jit_compile=False))
            >>> path = os.path.join(tempfile.mkdtemp(), "run.gmk")
            >>> t.save(path); Trainer.load(path).plan == t.plan
            True
        """
        checkpoint.write(path, self.model, self.get_state())

    @classmethod
    def load(cls, path: str, distribution: Any = AS_SAVED, devices: int | None = None) -> Any:
        """Return the trainer a checkpoint holds, on this process's devices, ready to resume.

        A checkpoint does not depend on the device count that wrote it: one written on
        two devices loads on one, and one written on one device resumes on several.

        Args:
            path: A file written by `save`.
            distribution: Where to resume: `AS_SAVED` (the default: the checkpoint's own
                ``config.distribution``, over the devices this process has), None (one
                device), ``"data_parallel"``, ``"multi_worker"``, or a backend object (a
                `tf.distribute.Strategy`, a `keras.distribution.Distribution`).
            devices: How many local devices `distribution` uses (None = all of them).

        Returns:
            A trainer with the saved plan (placed here), weights, optimizer state and
            progress.

        Raises:
            ValueError: The file is not a gometal_keras checkpoint, it is truncated or
                corrupted, its variables do not fit its model, or this process's devices
                cannot run it (e.g. the batch size does not split over them); the message
                names the path.

        Example:
            >>> import os, tempfile
            >>> from gometal_keras import ModelBuilder, Trainer, TrainerConfig
            >>> b = ModelBuilder([8, 3]).add_dense(2)
            >>> cfg = TrainerConfig(8, precision="float32", jit_compile=False)
            >>> path = os.path.join(tempfile.mkdtemp(), "run.gmk")
            >>> Trainer(b, cfg).save(path)
            >>> Trainer.load(path, distribution=None).plan.replicas
            1
        """
        model, state = checkpoint.read(path)
        config = _named(path, "its plan does not fit its config", state.resume_config)
        if isinstance(distribution, str) and distribution == AS_SAVED:
            distribution = config.distribution
        try:
            if distribution is None or isinstance(distribution, str):
                config = config.replace(distribution=distribution, devices=devices)
            placement = engines.current().placement(distribution, devices)
            placement.check_batch(config.batch_size)
        except ValueError as err:
            raise ValueError(
                f"Checkpoint {path!r} cannot resume on this process's devices: {err}"
            ) from None
        trainer = _named(
            path,
            "the trainer it describes cannot be built here",
            lambda: cls(placement.adopt(model), config, distribution=placement),
        )
        try:
            trainer.set_state(state)
        except ValueError as err:
            raise ValueError(f"Checkpoint {path!r} does not fit its own model: {err}") from None
        return trainer

    def export(self, path: str, format: str = "tf_saved_model") -> None:
        """Export the model for serving: ``"onnx"`` (float32, any backend), else Keras'.

        Args:
            path: Folder (or file, for formats that write one) to create.
            format: ``"onnx"`` (`gometal_keras.model.onnx_export`, a builder-made model) or a
                format `keras.Model.export` knows (needs TensorFlow).
        """
        if format == "onnx":
            from gometal_keras.model.onnx_export import export_onnx

            export_onnx(self.model, path)
            return
        self.model.export(path, format=format)
