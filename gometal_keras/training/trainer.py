"""`Trainer`: Go-Metal's model trainer on Keras, with its `RunPlan` chosen per device.

The trainer owns its plan: it builds the model under a dtype policy given to the layers,
never under Keras' global policy, so two trainers of different precisions work side by
side and the global state is what the user left. What runs is what the compiled program
reports (`Trainer.plan`); the trainer keeps no copy of it. It never prints; `fit` returns
a `TrainingRun` for the comparison and the reports. Its full state is one `TrainerState`
(`get_state` / `set_state`); `save` and `load` move it through the checkpoint format
(`gometal_keras.training.checkpoint`), and `export` hands the model to an exporter.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import keras
import numpy as np

from gometal_keras import engines
from gometal_keras.core.config import TrainerConfig, as_config
from gometal_keras.core.plan import Precision, RunPlan
from gometal_keras.core.seeds import run_seed
from gometal_keras.data.inputs import as_source, is_stream
from gometal_keras.data.streaming import StreamedData
from gometal_keras.engines import guard
from gometal_keras.engines.build import build_program
from gometal_keras.engines.objectives import epoch_logs, non_finite_message
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.planning import autotune
from gometal_keras.planning.decision import Decision
from gometal_keras.planning.verify import device_failure
from gometal_keras.training import agreement, checkpoint
from gometal_keras.training.arguments import check_builder_batch, fit_arguments
from gometal_keras.training.fitting import FitSession
from gometal_keras.training.inference import Inference
from gometal_keras.training.loop import ArrangedData, TrainingLoop
from gometal_keras.training.memory import MemoryWatch
from gometal_keras.training.metric_history import metric_history_callback, with_history
from gometal_keras.training.record import BatchResult, TrainingRun
from gometal_keras.training.schedules import LearningRateSchedule
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


class Trainer:
    """Trains a `ModelBuilder` chain or a Keras model under a chosen `RunPlan`.

    Args:
        model_or_builder: A `ModelBuilder` (the model is built under the config's precision)
            or a built `keras.Model` (trained as it is, under its own dtype policy).
        config: The training configuration; defaults to `TrainerConfig()`.
        distribution: Overrides `config.distribution`: ``"data_parallel"``,
            ``"multi_worker"``, or a `tf.distribute.Strategy` / `keras.distribution`
            object. A keras.Model given with it must have been built under its scope.

    Attributes:
        model: The Keras model being trained.
        optimizer: Its Keras optimizer (a `LossScaleOptimizer` when the plan scales).
        device: The `DeviceInfo` of the device it trains on.
        decision: How the plan was chosen (a `Decision` with every timed candidate), or None.
        epoch: Epochs completed so far (across `fit` calls and checkpoints).

    Example:
        >>> b = ModelBuilder([32, 4]).add_dense(8).add_relu().add_dense(3)
        >>> t = Trainer(b, TrainerConfig(batch_size=32, precision="float32", jit_compile=False))
        >>> t.plan.label()
        'float32 (no XLA, fused)'
        >>> t.train_batch(np.zeros((32, 4)), np.zeros(32, int)).loss > 0
        True
    """

    def __init__(
        self,
        model_or_builder: ModelBuilder | keras.Model,
        config: TrainerConfig | None = None,
        distribution: Any = None,
    ):
        config = as_config(config)
        check_builder_batch(model_or_builder, config.batch_size)
        self.config = config
        self._engine = engines.current()
        self.device = self._engine.describe_device()
        autotune.check(config, self.device)  # e.g. XLA asked for where there is none
        self.seed = run_seed(config.seed)
        placement = self._engine.placement(distribution or config.distribution, config.devices)
        placement.check_batch(config.batch_size)
        with placement.scope():
            chosen = autotune.select(model_or_builder, config, self._engine, self.seed, placement)
        self._placement = chosen.placement  # the one asked for, or the host CPU
        self.decision: Decision | None = chosen.decision
        built = build_program(
            lambda: chosen.model, config, chosen.plan, self._engine, self._placement
        )
        self.model, self.optimizer, self._objective = built.model, built.optimizer, built.objective
        program = built.program
        self._loop = TrainingLoop(self._engine, program, config.batch_size, self._placement)
        self.schedule = LearningRateSchedule(config, self.optimizer) if config.lr_schedule else None
        self.epoch = 0
        self._inference = Inference(self.model, self._objective, config)

    @property
    def plan(self) -> RunPlan:
        """The `RunPlan` the compiled program really runs (precision, scaling, guard, ...)."""
        return self._loop.plan

    @property
    def precision(self) -> Precision:
        """The precision in force (``plan.precision``)."""
        return self.plan.precision

    def train_batch(self, x: Any, y: Any) -> BatchResult:
        """Run one optimizer step on one batch (Go-Metal's `TrainBatch`).

        Args:
            x: Samples, ``(batch, features)`` or ``(batch, H, W, C)``.
            y: Labels (class indices for sparse losses, else targets).

        Returns:
            A `BatchResult` with the batch's loss.

        Raises:
            FloatingPointError: A non-finite loss no loss scaler skipped, or a divergence.

        Example:
            >>> b = ModelBuilder([4, 2]).add_dense(1)
            >>> c = TrainerConfig(4, loss="mse", problem_type="regression", precision="float32")
            >>> t = Trainer(b, c.replace(seed=0, jit_compile=False))
            >>> round(t.train_batch(np.ones((4, 2)), np.zeros(4)).loss, 3) >= 0
            True
        """
        xa, ya = self._inference.pairs(x, y)
        put = self._placement.put
        values = self._loop.program.step(put(xa, batch_axis=0), put(ya, batch_axis=0))
        loss = float(keras.ops.convert_to_numpy(values)[0])
        diverged = bool(guard.diverged([loss])[0]) and self.plan.loss_scaling is not None
        if diverged or (not math.isfinite(loss) and self.plan.loss_scaling is None):
            raise FloatingPointError(non_finite_message(self.plan, "the batch", diverged))
        return BatchResult(loss)

    def arrange(
        self, x: Any, y: Any = None, steps_per_epoch: int | None = None
    ) -> ArrangedData | StreamedData:
        """Check (x, y) and arrange its full batches for this trainer's program, once.

        A stream input (a `tf.data.Dataset`, `keras.utils.PyDataset`, generator, grain or
        PyTorch loader, `gometal_keras.vision.DataLoader`; y None) is arranged to be
        streamed: a `StreamedData`, each batch checked as it is read. Train on it epoch after
        epoch with `train_epoch`, without copying it again.

        Args:
            x: Samples, or a stream (y None).
            y: Labels.
            steps_per_epoch: A stream's steps per epoch (None: until it is exhausted).

        Returns:
            An `ArrangedData` or `StreamedData`; ``describe()`` says how its epochs run.

        Example:
            >>> b = ModelBuilder([8, 3]).add_dense(2)
            >>> t = Trainer(b, TrainerConfig(batch_size=8, precision="float32", jit_compile=False))
            >>> t.arrange(np.zeros((20, 3)), np.zeros(20, int)).steps
            2
        """
        if is_stream(x):
            checks = (self._inference.pairs, self._inference.targets)
            return self._loop.stream(as_source(x, y), *checks, steps_per_epoch)
        return self._loop.arrange(*self._inference.pairs(x, y))

    def train_epoch(self, data: ArrangedData) -> np.ndarray:
        """Train one epoch over arranged data and wait for it; no callbacks, no logs.

        The bare epoch `fit` runs, for timing: `epoch` and the schedule stay as they are.

        Args:
            data: From `arrange` on this trainer.

        Returns:
            Per-step values on the host, ``(steps, 1 + metrics)``: column 0 the loss.

        Example:
            >>> b = ModelBuilder([8, 3]).add_dense(2)
            >>> t = Trainer(b, TrainerConfig(batch_size=8, precision="float32", jit_compile=False))
            >>> t.train_epoch(t.arrange(np.zeros((16, 3)), np.zeros(16, int))).shape
            (2, 2)
        """
        if not isinstance(data, (ArrangedData, StreamedData)) or data.plan != self.plan:
            raise ValueError("data was not arranged by this trainer; expected trainer.arrange().")
        with guard.epoch_open(self.optimizer):  # a divergence stops the rest of the epoch
            return self._loop.run_epoch(data, self.epoch)

    def fit(
        self,
        x: Any,
        y: Any = None,
        epochs: int = 1,
        early_stop_loss: float | None = None,
        validation_data: tuple[Any, Any] | None = None,
        callbacks: Sequence[keras.callbacks.Callback] | keras.callbacks.Callback | None = (),
        verbose: int = 0,
        steps_per_epoch: int | None = None,
        metric_history: bool = False,
    ) -> TrainingRun:
        """Train for `epochs` more epochs over full batches of (x, y); return what was measured.

        Each epoch runs as one compiled program over device-resident data where the data
        fits (in chunks where it does not). Callbacks see epoch-level events with logs
        ``loss``, the metrics and ``val_loss``; one that sets ``model.stop_training`` ends
        training after its epoch. Epoch numbers continue across calls and checkpoints.

        Args:
            x: Samples, or a stream of ``(x, y)`` batches (see `arrange`); the remainder
                after the last full batch is not used.
            y: Labels (None for a stream).
            epochs: Number of epochs (at least 1).
            early_stop_loss: Stop once an epoch's mean loss is below this.
            validation_data: ``(x_val, y_val)`` or a stream, evaluated after each epoch.
            callbacks: Keras callbacks (a list, one callback, or None); they see the
                model with the trainer's optimizer (`fitting.CallbackModel`).
            verbose: Passed to Keras' progress bar (0 = silent, the default).
            steps_per_epoch: A stream's epoch ends after this many steps (default: when
                it is exhausted).
            metric_history: Keep Go-Metal's metrics on `validation_data` per epoch in
                ``run.metric_history`` (`gometal_keras.training.metric_history`).

        Returns:
            A `TrainingRun` with the plan, per-epoch losses, metrics and device-synchronised
            times.

        Raises:
            TypeError, ValueError: A bad argument, before the first step (`arguments.py`).
            FloatingPointError: The loss became non-finite and no loss scaler skipped the
                step; the message names the epoch and step and what the weights hold.

        Example:
            >>> from gometal_keras.data.synthetic import demo_dataset
            >>> x, y = demo_dataset(samples=64, features=8)
            >>> b = ModelBuilder([32, 8]).add_dense(10)
            >>> t = Trainer(b, TrainerConfig(batch_size=32, precision="float32", jit_compile=False))
            >>> run = t.fit(x, y, epochs=2)
            >>> run.epochs_run, run.plan == t.plan
            (2, True)
        """
        args = fit_arguments(
            epochs, early_stop_loss, validation_data, callbacks, verbose, steps_per_epoch, x
        )
        data = self.arrange(x, y, args.steps_per_epoch)
        val = self._inference.validator(args.validation_data, passes=args.epochs)
        history = metric_history_callback(self, metric_history, args.validation_data)
        check = agreement.for_fit(self, self._engine, self._placement, self.device,
                                  self.epoch + args.epochs - 1, args.callbacks)
        session = FitSession(
            self.model,
            [*([check] if check else []), *([self.schedule] if self.schedule else []),
             *history, *args.callbacks],
            sync=lambda: self._engine.sync(self.model),
            epochs=self.epoch + args.epochs,
            steps=data.steps,
            verbose=args.verbose,
            early_stop_loss=args.early_stop_loss,
            optimizer=self.optimizer,
        )
        watch = MemoryWatch(self._engine)  # the run's peak memory (gometal_keras.training.memory)
        session.begin()
        end = self.epoch + args.epochs
        with self._loop.reading_ahead(last_epoch=end - 1):
            for epoch in range(self.epoch, end):
                session.epoch_begin(epoch)
                with (self._named_faults(f"epoch {epoch + 1} of fit"),
                      self._loop.epoch_transaction(self.model, self.optimizer)):
                    values = self._loop.run_epoch(data, epoch)
                logs = epoch_logs(self._objective, self.plan, values, epoch)
                self.epoch = epoch + 1  # counted as soon as its updates are in
                if val is not None:
                    with self._named_faults(f"the validation after epoch {epoch + 1}"):
                        logs["val_loss"] = val()
                if self.schedule:
                    logs["learning_rate"] = self.schedule.rates[-1]
                if session.epoch_end(epoch, logs):
                    break
        session.end()
        device = self.device.describe()
        run = session.run(self.plan, device, self.decision, data.describe(), watch.peak())
        return with_history(run, history)

    def predict(self, x: Any) -> np.ndarray:
        """Return the model's float32 outputs for `x` (all samples, in batches; or a stream).

        Over an image `DataLoader` the outputs are a `FileOutputs` array: ``.files`` names
        each row's file, ``.labels`` its folder's class, ``.skipped`` the files left out
        as unreadable (``on_error="skip"``), so rows never shift onto other files.

        Example:
            >>> b = ModelBuilder([8, 3]).add_dense(2)
            >>> t = Trainer(b, TrainerConfig(batch_size=8, precision="float32", jit_compile=False))
            >>> t.predict(np.zeros((5, 3))).shape
            (5, 2)
        """
        with self._named_faults("predict"):
            return self._inference.predict(x)

    def evaluate(self, x: Any, y: Any = None, report: bool = False) -> Any:
        """Return the mean loss over all samples of (x, y) or a stream, without training.

        With ``report=True``: the `EvaluationReport` (`gometal_keras.training.evaluation`) instead,
        for arrays with `y` or any stream of ``(x, y)`` batches (an image folder's labels
        are gathered as it is read).

        Example:
            >>> b = ModelBuilder([8, 3]).add_dense(2)
            >>> t = Trainer(b, TrainerConfig(batch_size=8, precision="float32", jit_compile=False))
            >>> t.evaluate(np.zeros((5, 3)), np.zeros(5, int))  # logits 0: log(2)
            0.6931...
        """
        with self._named_faults("evaluate"):
            if report:
                from gometal_keras.training.evaluation import evaluation_report

                return evaluation_report(self, x, y)
            return self._inference.evaluate(x, y)

    @contextlib.contextmanager
    def _named_faults(self, what: str) -> Iterator[None]:
        """On a device with known faults, a backend failure in `what` as one sentence
        (`verify.device_failure`); elsewhere, and for the library's own refusals, as raised."""
        try:
            yield
        except Exception as err:
            said = device_failure(err, self.device, self.plan, what, self.epoch)
            if said is None:
                raise
            raise RuntimeError(said) from err

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
        except (ValueError, TypeError) as err:  # one sentence naming the file, either way
            raise type(err)(
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

    TrainBatch = train_batch
    Predict = predict
    InferBatch = predict
