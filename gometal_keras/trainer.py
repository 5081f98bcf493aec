"""`Trainer`: Go-Metal's model trainer on Keras, with precision chosen per device.

The trainer owns its precision: it builds the model under a dtype policy given to the
layers, never under Keras' global policy, so two trainers of different precisions work
side by side and the global state is what the user left. It never prints; `fit` returns a
`TrainingRun` for the comparison and the reports.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from gometal_keras import engines
from gometal_keras import precision as prec
from gometal_keras.builder import ModelBuilder
from gometal_keras.config import TrainerConfig
from gometal_keras.loop import TrainingLoop
from gometal_keras.objectives import make_loss, make_optimizer
from gometal_keras.record import TrainingRun
from gometal_keras.timing import EpochTimer
from gometal_keras.trial import synthetic_batches
from gometal_keras.validation import as_features, as_targets

#: A trial times TRIAL_REPEATS calls of TRIAL_STEPS steps and keeps the fastest call.
TRIAL_STEPS, TRIAL_REPEATS = 16, 5


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """Result of one `Trainer.train_batch` step.

    Attributes:
        loss: The batch's loss before the step, as a Python float.
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

    Attributes:
        model: The Keras model being trained.
        optimizer: Its Keras optimizer (a `LossScaleOptimizer` under mixed_float16).
        precision: The dtype-policy name in force.
        device: The `DeviceInfo` of the device it trains on.
        decision: How precision and XLA were chosen (measured step times), or None.

    Example:
        >>> b = ModelBuilder([32, 4]).add_dense(8).add_relu().add_dense(3)
        >>> t = Trainer(b, TrainerConfig(batch_size=32, precision="float32", jit_compile=False))
        >>> t.train_batch(np.zeros((32, 4)), np.zeros(32, int)).loss > 0
        True
    """

    def __init__(
        self, model_or_builder: ModelBuilder | keras.Model, config: TrainerConfig | None = None
    ):
        config = TrainerConfig() if config is None else config
        if not isinstance(config, TrainerConfig):
            raise TypeError(f"config is a {type(config).__name__}; expected a TrainerConfig.")
        self.config = config
        self._engine = engines.current()
        self.device = self._engine.describe_device()
        seed = (
            config.seed
            if config.seed is not None
            else int(np.random.SeedSequence().entropy % 2**31)
        )
        self._seed = seed
        names, factory, given = self._plan(model_or_builder)
        self.precision, jit, self.decision = self._choose(names, factory)
        self.model = given if given is not None else factory(self.precision)
        self.optimizer = make_optimizer(config, self.precision)
        self._loss = make_loss(config, self.model)
        program = self._engine.program(self.model, self._loss, self.optimizer, jit)
        mode = "step" if config.loop == "step" else "fused"
        self._loop = TrainingLoop(self._engine, program, config.batch_size, mode, jit)

    # -- construction ---------------------------------------------------------------------

    def _plan(self, source: Any) -> tuple[list[str], Callable[[str], keras.Model], Any]:
        asked = self.config.resolved_precision
        if isinstance(source, ModelBuilder):
            names = list(prec.candidates(self.device)) if asked == "auto" else [asked]
            return names, lambda p: source.compile(p, seed=self._seed), None
        if isinstance(source, keras.Model):
            if not source.built or not source.inputs:
                raise ValueError(
                    "The keras.Model is not built; expected a model with a known input shape."
                )
            own = source.dtype_policy.name
            explicit = (
                self.config.precision not in (None, "auto") or self.config.use_mixed_precision
            )
            if explicit and asked != own:
                raise ValueError(
                    f"The keras.Model was built under {own!r} but the config asks for {asked!r}; "
                    "build the model under that policy or pass a ModelBuilder."
                )
            return [own], lambda p: _clone(source), source
        raise TypeError(
            f"model_or_builder is a {type(source).__name__}; "
            "expected a ModelBuilder or a keras.Model."
        )

    def _choose(
        self, names: list[str], factory: Callable[[str], keras.Model]
    ) -> tuple[str, bool, dict | None]:
        fixed = self.config.jit_compile
        options = {
            n: (fixed,) if fixed is not None else self._engine.jit_options(self.device, n)
            for n in names
        }
        auto = self.config.resolved_precision == "auto"
        if len(names) == 1 and len(options[names[0]]) == 1:
            if not auto:
                return names[0], options[names[0]][0], None
            only = prec.sole_candidate(self.device)
            return names[0], options[names[0]][0], _decision(only, options[names[0]][0], {})
        best_jit: dict[str, bool] = {}
        timings: dict[str, float] = {}

        def measure(name: str) -> float:
            for jit in options[name]:
                timings[_label(name, jit)] = self._trial(factory, name, jit)
            finite = {j: timings[_label(name, j)] for j in options[name]}
            finite = {j: s for j, s in finite.items() if math.isfinite(s)}
            if not finite:
                return math.nan
            best_jit[name] = min(finite, key=finite.__getitem__)
            return finite[best_jit[name]]

        if len(names) > 1 or auto:
            choice = prec.choose(self.device, measure, names)
        else:
            measure(names[0])
            choice = prec.Decision(names[0], {}, "XLA on or off chosen by measurement.")
        jit = best_jit.get(choice.chosen, options[choice.chosen][0])
        return choice.chosen, jit, _decision(choice, jit, timings)

    def _trial(self, factory: Callable[[str], keras.Model], name: str, jit: bool) -> float:
        """Seconds per step of a throw-away copy of the model under `name` (NaN if unsound)."""
        model = factory(name)
        program = self._engine.program(
            model, make_loss(self.config, model), make_optimizer(self.config, name), jit
        )
        xs, ys = synthetic_batches(model, self.config, TRIAL_STEPS, self._seed)
        xs, ys = self._engine.to_device(xs), self._engine.to_device(ys)
        losses = np.asarray(program.epoch(xs, ys))  # trace, compile and warm up
        times = []
        for _ in range(TRIAL_REPEATS):
            start = time.perf_counter()
            losses = np.asarray(program.epoch(xs, ys))
            times.append(time.perf_counter() - start)
        if not np.isfinite(losses).all():
            return math.nan
        return min(times) / TRIAL_STEPS

    # -- training -------------------------------------------------------------------------

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

        Example:
            >>> # trainer.train_batch(x_batch, y_batch).loss
        """
        xa, ya = self._arrays(x, y)
        loss = self._loop.program.step(self._engine.to_device(xa), self._engine.to_device(ya))
        return BatchResult(float(loss))

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
        """Train for `epochs` over full batches of (x, y); return what was measured.

        Each epoch runs as one compiled program over device-resident data where the data
        fits (in chunks where it does not). Callbacks see epoch-level events; a callback
        that sets ``model.stop_training`` ends training after its epoch.

        Args:
            x: Samples; the remainder after the last full batch is not used.
            y: Labels.
            epochs: Number of epochs (at least 1).
            early_stop_loss: Stop once an epoch's mean loss is below this.
            validation_data: Optional ``(x_val, y_val)`` evaluated after each epoch.
            callbacks: Keras callbacks.
            verbose: Passed to Keras' progress bar (0 = silent, the default).

        Returns:
            A `TrainingRun` with per-epoch losses and device-synchronised epoch times.

        Example:
            >>> # run = trainer.fit(x, y, epochs=20, early_stop_loss=0.1); run.final_loss
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs is {epochs!r}; expected an int of at least 1.")
        xa, ya = self._arrays(x, y)
        val = self._arrays(*validation_data) if validation_data is not None else None
        data = self._loop.arrange(xa, ya)
        timer = EpochTimer(sync=lambda: self._engine.sync(self.model), time_steps=False)
        cbs = keras.callbacks.CallbackList(
            [timer, *callbacks],
            add_progbar=verbose != 0,
            model=self.model,
            verbose=verbose,
            epochs=epochs,
            steps=data.steps,
        )
        losses: list[float] = []
        val_losses: list[float] = []
        stopped = False
        self.model.stop_training = False
        cbs.on_train_begin()
        for epoch in range(epochs):
            cbs.on_epoch_begin(epoch)
            step_losses = self._loop.run_epoch(data)
            loss = self._epoch_loss(step_losses, epoch)
            logs = {"loss": loss}
            if val is not None:
                logs["val_loss"] = self._evaluate_arrays(*val)
                val_losses.append(logs["val_loss"])
            losses.append(loss)
            cbs.on_epoch_end(epoch, logs)
            if (early_stop_loss is not None and loss < early_stop_loss) or self.model.stop_training:
                stopped = epoch < epochs - 1
                break
        cbs.on_train_end()
        return TrainingRun(
            precision=self.precision,
            losses=losses,
            epoch_seconds=list(timer.epoch_seconds),
            device=self.device.describe(),
            stopped_early=stopped,
            decision=self.decision,
            loop=self._loop.last_layout,
            val_losses=val_losses,
        )

    def _epoch_loss(self, step_losses: np.ndarray, epoch: int) -> float:
        finite = np.isfinite(step_losses)
        if finite.all():
            return float(step_losses.mean())
        if self.precision == prec.MIXED_FLOAT16 and finite.any():
            return float(step_losses[finite].mean())  # overflowed steps were skipped
        step = int(np.argmin(finite))
        raise FloatingPointError(
            f"The loss became non-finite in epoch {epoch + 1}, step {step + 1}; check the "
            "learning rate and the data."
        )

    # -- inference ------------------------------------------------------------------------

    def predict(self, x: Any) -> np.ndarray:
        """Return the model's float32 outputs for `x` (all samples, in batches).

        Example:
            >>> # probabilities_or_logits = trainer.predict(x_test)
        """
        xa = as_features(x, tuple(self.model.input_shape[1:]))
        return self._predict_array(xa)

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
        return float(keras.ops.convert_to_numpy(self._loss(ya, preds)))

    TrainBatch = train_batch
    Predict = predict
    InferBatch = predict


def _decision(choice: prec.Decision, jit: bool, timings: dict[str, float]) -> dict[str, Any]:
    """The run record's view of a choice: timings keyed by precision and XLA setting."""
    return choice.to_dict() | {
        "chosen": _label(choice.chosen, jit),
        "precision": choice.chosen,
        "jit": jit,
        "candidates": timings,
    }


def _label(precision: str, jit: bool) -> str:
    return f"{precision} ({'XLA' if jit else 'no XLA'})"


def _clone(model: keras.Model) -> keras.Model:
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
