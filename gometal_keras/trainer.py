"""`Trainer`: Go-Metal's model trainer on Keras, with precision chosen per device.

The trainer owns its precision: it builds the model under a dtype policy given to the
layers, never under Keras' global policy, so two trainers of different precisions work
side by side and the global state is what the user left. It never prints; `fit` returns a
`TrainingRun` for the comparison and the reports.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from gometal_keras import autotune, engines
from gometal_keras.builder import ModelBuilder
from gometal_keras.config import TrainerConfig
from gometal_keras.loop import TrainingLoop
from gometal_keras.objectives import epoch_logs, make_objective, make_optimizer
from gometal_keras.record import TrainingRun
from gometal_keras.schedules import LearningRateSchedule
from gometal_keras.timing import EpochTimer
from gometal_keras.validation import as_features, as_targets


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """Result of one `Trainer.train_batch` step.

    Attributes:
        loss: The batch's loss (computed before the update), as a Python float.
    """

    loss: float

    @property
    def Loss(self) -> float:
        """Go-Metal's name for `loss`."""
        return self.loss


class Trainer:
    """Trains a `ModelBuilder` chain or a Keras model under a chosen precision.

    Args:
        model_or_builder: A `ModelBuilder` (the model is built under the config's precision)
            or a built `keras.Model` (trained as it is, under its own dtype policy).
        config: The training configuration; defaults to `TrainerConfig()`.
        distribution: Overrides `config.distribution`: ``"data_parallel"``,
            ``"multi_worker"``, or a `tf.distribute.Strategy` / `keras.distribution`
            object. A keras.Model given with it must have been built under its scope.

    Attributes:
        model: The Keras model being trained.
        optimizer: Its Keras optimizer (a `LossScaleOptimizer` under mixed_float16).
        precision: The dtype-policy name in force.
        device: The `DeviceInfo` of the device it trains on.
        decision: How precision and XLA were chosen (measured step times), or None.
        epoch: Epochs completed so far (across `fit` calls and checkpoints).

    Example:
        >>> b = ModelBuilder([32, 4]).add_dense(8).add_relu().add_dense(3)
        >>> t = Trainer(b, TrainerConfig(batch_size=32, precision="float32", jit_compile=False))
        >>> t.train_batch(np.zeros((32, 4)), np.zeros(32, int)).loss > 0
        True
    """

    def __init__(
        self,
        model_or_builder: ModelBuilder | keras.Model,
        config: TrainerConfig | None = None,
        distribution: Any = None,
    ):
        config = TrainerConfig() if config is None else config
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"config is a {type(config).__name__}; expected a TrainerConfig.")
        self.config = config
        self._engine = engines.current()
        self.device = self._engine.describe_device()
        entropy = np.random.SeedSequence().entropy  # fresh, without touching global state
        self.seed = config.seed if config.seed is not None else int(entropy % 2**31)
        self.placement = self._engine.placement(distribution or config.distribution, config.devices)
        self.placement.check_batch(config.batch_size)
        with self.placement.scope():
            chosen = autotune.select(
                model_or_builder, config, self._engine, self.seed, self.placement
            )
            self.precision, self.jit, self.decision = chosen.precision, chosen.jit, chosen.decision
            self.loop_mode = chosen.loop
            self.model = chosen.model
            self.optimizer = make_optimizer(config, self.precision)
            self._objective = make_objective(config, self.model, self.precision)
            program = self._engine.program(
                self.model, self._objective, self.optimizer, self.jit, self.placement
            )
        self._loop = TrainingLoop(
            self._engine,
            program,
            config.batch_size,
            self.loop_mode,
            self.jit,
            self.placement,
            guard=self._objective.guard,
        )
        self.schedule = LearningRateSchedule(config, self.optimizer) if config.lr_schedule else None
        self.epoch = 0

    def _arrays(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        xa = as_features(x, tuple(self.model.input_shape[1:]))
        out = tuple(self.model.output_shape[1:])
        return xa, as_targets(y, len(xa), self.config.loss, out[-1], out)

    def train_batch(self, x: Any, y: Any) -> BatchResult:
        """Run one optimizer step on one batch (Go-Metal's `TrainBatch`).

        Args:
            x: Samples, ``(batch, features)`` or ``(batch, H, W, C)``.
            y: Labels (class indices for sparse losses, else targets).

        Returns:
            A `BatchResult` with the batch's loss.

        Raises:
            FloatingPointError: The loss was not finite (outside mixed_float16, whose loss
                scaler skips such steps); the step was skipped and the weights are unchanged.

        Example:
            >>> # trainer.train_batch(x_batch, y_batch).loss
        """
        xa, ya = self._arrays(x, y)
        put = self.placement.put
        values = self._loop.program.step(put(xa, batch_axis=0), put(ya, batch_axis=0))
        loss = float(np.asarray(values)[0])
        if self._objective.guard and not math.isfinite(loss):
            raise FloatingPointError(
                "The batch's loss is not finite; the step was skipped and the weights are "
                "unchanged. Check the learning rate and the data."
            )
        return BatchResult(loss)

    def fit(
        self,
        x: Any,
        y: Any,
        epochs: int = 1,
        early_stop_loss: float | None = None,
        validation_data: tuple[Any, Any] | None = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        verbose: int = 0,
    ) -> TrainingRun:
        """Train for `epochs` more epochs over full batches of (x, y); return what was measured.

        Each epoch runs as one compiled program over device-resident data where the data
        fits (in chunks where it does not). Callbacks see epoch-level events with logs
        ``loss``, the metrics and ``val_loss``; one that sets ``model.stop_training`` ends
        training after its epoch. Epoch numbers continue across calls and checkpoints.

        Args:
            x: Samples; the remainder after the last full batch is not used.
            y: Labels.
            epochs: Number of epochs (at least 1).
            early_stop_loss: Stop once an epoch's mean loss is below this.
            validation_data: Optional ``(x_val, y_val)`` evaluated after each epoch.
            callbacks: Keras callbacks.
            verbose: Passed to Keras' progress bar (0 = silent, the default).

        Returns:
            A `TrainingRun` with per-epoch losses, metrics and device-synchronised times.

        Raises:
            FloatingPointError: The loss became non-finite (outside mixed_float16); the
                message names the epoch and step, and the weights are those of the last
                finite step.

        Example:
            >>> # run = trainer.fit(x, y, epochs=20, early_stop_loss=0.1); run.final_loss
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs is {epochs!r}; expected an int of at least 1.")
        xa, ya = self._arrays(x, y)
        if validation_data is not None and (
            not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2
        ):
            raise ValueError("validation_data must be a pair (x_val, y_val).")
        val = self._arrays(*validation_data) if validation_data is not None else None
        data = self._loop.arrange(xa, ya)
        timer = EpochTimer(sync=lambda: self._engine.sync(self.model), time_steps=False)
        first, last = self.epoch, self.epoch + epochs
        cbs = keras.callbacks.CallbackList(
            [timer, *([self.schedule] if self.schedule else []), *callbacks],
            add_progbar=verbose != 0,
            model=self.model,
            verbose=verbose,
            epochs=last,
            steps=data.steps,
        )
        history: dict[str, list[float]] = {}
        stopped = False
        self.model.stop_training = False
        cbs.on_train_begin()
        for epoch in range(first, last):
            cbs.on_epoch_begin(epoch)
            logs = epoch_logs(self._objective, self._loop.run_epoch(data), epoch)
            if val is not None:
                logs["val_loss"] = self._evaluate_arrays(*val)
            if self.schedule:
                logs["learning_rate"] = self.schedule.rates[-1]
            self.epoch = epoch + 1
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            cbs.on_epoch_end(epoch, logs)
            below = early_stop_loss is not None and logs["loss"] < early_stop_loss
            if below or self.model.stop_training:
                stopped = self.epoch < last
                break
        cbs.on_train_end()
        return TrainingRun(
            precision=self.precision,
            losses=history.pop("loss"),
            epoch_seconds=list(timer.epoch_seconds),
            device=self.device.describe(),
            stopped_early=stopped,
            decision=self.decision,
            loop=self._loop.last_layout,
            val_losses=history.pop("val_loss", []),
            metrics=history,
        )

    def predict(self, x: Any) -> np.ndarray:
        """Return the model's float32 outputs for `x` (all samples, in batches).

        Example:
            >>> # probabilities_or_logits = trainer.predict(x_test)
        """
        return self._predict_array(as_features(x, tuple(self.model.input_shape[1:])))

    def _predict_array(self, xa: np.ndarray) -> np.ndarray:
        out = self.model.predict(xa, batch_size=self.config.batch_size, verbose=0)
        return np.asarray(out, dtype=np.float32)

    def evaluate(self, x: Any, y: Any) -> float:
        """Return the mean loss over all samples of (x, y), without training.

        Example:
            >>> # test_loss = trainer.evaluate(x_test, y_test)
        """
        return self._evaluate_arrays(*self._arrays(x, y))

    def _evaluate_arrays(self, xa: np.ndarray, ya: np.ndarray) -> float:
        preds = self._predict_array(xa)
        return float(keras.ops.convert_to_numpy(self._objective.loss(ya, preds)))

    def save(self, path: str) -> None:
        """Write a checkpoint atomically: model, optimizer state, config, epoch reached.

        Args:
            path: The checkpoint file (e.g. ``"run.gmk"``); replaced only once complete.

        Example:
            >>> # trainer.save("run.gmk"); later: Trainer.load("run.gmk").fit(x, y)
        """
        from gometal_keras import checkpoint

        checkpoint.save(self, path)

    @classmethod
    def load(cls, path: str) -> Trainer:
        """Return the Trainer a checkpoint holds, ready to resume where it stopped.

        Args:
            path: A file written by `save`.

        Raises:
            ValueError: The file is not a gometal_keras checkpoint, or it is truncated or
                corrupted.

        Example:
            >>> # trainer = Trainer.load("run.gmk")
        """
        from gometal_keras import checkpoint

        return checkpoint.load(cls, path)

    def export(self, path: str, format: str = "tf_saved_model") -> None:
        """Export the model for serving with Keras' `Model.export` (needs TensorFlow).

        Example:
            >>> # trainer.export("served_model")
        """
        self.model.export(path, format=format)

    TrainBatch = train_batch
    Predict = predict
    InferBatch = predict
