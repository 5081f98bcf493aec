"""`Inference`: a trainer's `predict` and `evaluate`, over arrays or any stream input.

It also holds the model's input contract: `pairs`, `features` and `targets` check what a
call gives (`gometal_keras.data.validation`) against the model's shapes and the loss.

Arrays go through Keras' `Model.predict` in batches of the trainer's ``batch_size``; a
stream input (`gometal_keras.data.inputs`) is read once, batch by batch, each batch checked
like a training batch (a bad one is named) and predicted with ``predict_on_batch``
(`read_stream`, which gathers the labels as the stream is read, for the evaluation
report). Over an image folder the outputs are a `FileOutputs`: each row tied to its file,
the files skipped as unreadable listed. The evaluated loss is the mean over every sample,
whatever the batches' sizes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras.core.config import TrainerConfig
from gometal_keras.data.inputs import FileOutputs, as_source, is_stream
from gometal_keras.data.streaming import named
from gometal_keras.data.validation import as_features, as_targets
from gometal_keras.engines import Objective


@dataclasses.dataclass(frozen=True)
class StreamRead:
    """A stream read once: the outputs, and what the stream said of each row.

    Attributes:
        kind: What the stream is, for messages.
        outputs: float32 outputs, one row per sample read.
        labels: The labels of the rows, gathered as the stream was read (None when a
            batch had none).
        files: The file of each row (an image loader), else None.
        skipped: The loader's files left out as unreadable (no row).
    """

    kind: str
    outputs: np.ndarray
    labels: np.ndarray | None
    files: list[str] | None
    skipped: tuple[str, ...] = ()

    def predictions(self) -> np.ndarray:
        """The outputs; a `FileOutputs` (rows tied to files) where the stream names files."""
        if self.files is None:
            return self.outputs
        return FileOutputs(self.outputs, self.files, self.skipped, self.labels)


def read_stream(model: keras.Model, x: Any) -> StreamRead:
    """Predict every batch of the stream `x` once, gathering its labels and files.

    Args:
        model: The Keras model.
        x: A stream input (`gometal_keras.data.inputs`): ``(x, y)`` or ``x`` batches.

    Returns:
        A `StreamRead`: outputs, labels (None when any batch has none), files.

    Raises:
        ValueError, TypeError: A batch does not fit the model (the batch is named), or
            the stream gave no sample.

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
        >>> read = read_stream(m, [(np.ones((3, 2)), np.arange(3)), (np.ones((1, 2)), [7])])
        >>> read.outputs.shape, read.labels.tolist(), read.files
        ((4, 1), [0, 1, 2, 7], None)
    """
    source, outs, labels, files = as_source(x), [], [], []
    shape, rescales = tuple(model.input_shape[1:]), _rescales(model)
    for index, (bx, by, bf) in enumerate(source.named_batches(0), 1):
        where = f"Batch {index} of the {source.kind}"
        xa = named(as_features, (bx, shape, "x", not rescales), where)
        if by is not None and labels is not None:
            by = np.asarray(by)
            if by.ndim == 0 or len(by) != len(xa):
                n = "a scalar" if by.ndim == 0 else len(by)
                raise ValueError(
                    f"{where} has {len(xa)} samples but {n} labels; expected one each."
                )
            labels.append(by)
        else:
            labels = None
        outs.append(_on_batch(model, xa))
        files = None if bf is None or files is None else files + bf
    if not outs:
        raise ValueError(f"The {source.kind} gave no batch; expected at least one sample.")
    skipped = tuple(getattr(source.value, "skipped", ())) if files is not None else ()
    return StreamRead(
        source.kind,
        np.concatenate(outs),
        None if labels is None else np.concatenate(labels),
        files,
        skipped,
    )


class Inference:
    """Predict and evaluate one model, never training it.

    Args:
        model: The Keras model.
        objective: Its loss.
        config: The trainer's configuration (``batch_size``: samples per `Model.predict`
            batch for arrays; ``loss``: what labels must be).

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
        >>> mse = Objective(keras.losses.MeanSquaredError())
        >>> inf = Inference(m, mse, TrainerConfig(4, loss="mse", problem_type="regression"))
        >>> batches = [(np.zeros((3, 2)), np.ones((3, 1))), (np.zeros((1, 2)), np.ones((1, 1)))]
        >>> inf.evaluate(iter(batches)), inf.predict(iter(batches)).shape
        (1.0, (4, 1))
    """

    def __init__(self, model: keras.Model, objective: Objective, config: TrainerConfig):
        self.model, self.objective, self.config = model, objective, config

    def features(self, x: Any) -> np.ndarray:
        """`x` checked against the model's input: float32 samples (a warning for 8-bit
        pixels 0-255 given to a model that does not rescale them itself)."""
        return as_features(x, tuple(self.model.input_shape[1:]), "x", not self._rescales)

    @property
    def _rescales(self) -> bool:
        return _rescales(self.model)

    def targets(self, y: Any, n: int | None = None) -> np.ndarray:
        """Labels `y` of `n` samples (default all) checked against the loss and outputs."""
        out = tuple(self.model.output_shape[1:])
        n = len(np.asarray(y)) if n is None else n
        return as_targets(y, n, self.config.loss, out[-1], out)

    def pairs(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` checked: samples, and one label per sample."""
        xa = self.features(x)
        return xa, self.targets(y, len(xa))

    def predict(self, x: Any) -> np.ndarray:
        """float32 outputs for every sample of `x` (an array or a stream; labels ignored).

        Over an image loader: a `FileOutputs`, each row tied to its file (`read_stream`).
        """
        if not is_stream(x):
            return self._predict(self.features(x))
        return read_stream(self.model, x).predictions()

    def evaluate(self, x: Any, y: Any = None) -> float:
        """Mean loss over every sample of ``(x, y)`` or of a stream of ``(x, y)`` batches."""
        if not is_stream(x):
            xa, ya = self.pairs(x, y)
            return self._loss(ya, self._predict(xa))
        source, total, count = as_source(x, y), 0.0, 0
        for index, (bx, by) in enumerate(source.batches(0), 1):
            where = f"Batch {index} of the {source.kind}"
            if by is None:
                raise ValueError(f"{where} has no labels; expected (x, y) batches to evaluate.")
            xa, ya = named(self.pairs, (bx, by), where)
            total += self._loss(ya, self._on_batch(xa)) * len(xa)
            count += len(xa)
        if not count:
            raise ValueError(f"The {source.kind} gave no batch; expected at least one sample.")
        return total / count

    def validator(self, data: Any, passes: int = 1) -> Callable[[], float] | None:
        """A function returning the loss on `data` (``(x, y)``, checked once, or a stream).

        Args:
            data: ``(x_val, y_val)``, a stream of batches, or None.
            passes: How many times it will be asked for (the epochs of a `fit`).

        Returns:
            None when `data` is None.

        Raises:
            ValueError: `data` is neither a pair nor a stream, or it is an iterator (read
                once) asked for more than once.
        """
        if data is None:
            return None
        if is_stream(data):
            source = as_source(data)
            if source.one_shot and passes > 1:
                raise ValueError(
                    f"validation_data is a one-pass {source.kind}, which can be read only "
                    f"once, and fit runs {passes} epochs; expected a re-readable input (a list of "
                    "batches, a tf.data.Dataset, a keras.utils.PyDataset, a DataLoader) or "
                    "epochs=1."
                )
            return lambda: self.evaluate(source.value)
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError("validation_data must be a pair (x_val, y_val) or a stream.")
        xa, ya = self.pairs(*data)
        return lambda: self._loss(ya, self._predict(xa))

    def _predict(self, xa: np.ndarray) -> np.ndarray:
        return predict_array(self.model, xa, self.config.batch_size)

    def _on_batch(self, xa: np.ndarray) -> np.ndarray:
        return _on_batch(self.model, xa)

    def _loss(self, ya: np.ndarray, preds: np.ndarray) -> float:
        return float(keras.ops.convert_to_numpy(self.objective.loss(ya, preds)))


def predict_array(model: keras.Model, xa: np.ndarray, rows: int) -> np.ndarray:
    """float32 outputs of checked samples `xa`, `rows` at a time through ``predict_on_batch``.

    Not ``Model.predict``: its set-up on every call (a data adapter, callbacks) cost 65 ms
    for 360 rows of a small MLP on this project's CPU (TensorFlow), against 0.8 ms here,
    and `fit` predicts its validation data every epoch.

    Example:
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
        >>> predict_array(m, np.ones((5, 2), np.float32), rows=2).shape
        (5, 1)
    """
    if not len(xa):
        return np.zeros((0, *model.output_shape[1:]), np.float32)
    return np.concatenate([_on_batch(model, xa[i : i + rows]) for i in range(0, len(xa), rows)])


def _on_batch(model: keras.Model, xa: np.ndarray) -> np.ndarray:
    out = model.predict_on_batch(xa)
    return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)


def _rescales(model: keras.Model) -> bool:
    """Whether the model scales its input itself (a `keras.layers.Rescaling` among its
    first layers): then 8-bit pixels 0-255 are what it expects."""
    layers = getattr(model, "layers", [])[:3]
    return any(isinstance(layer, keras.layers.Rescaling) for layer in layers)
