"""`Inference`: a trainer's `predict` and `evaluate`, over arrays or any stream input.

It also holds the model's input contract: `pairs`, `features` and `targets` check what a
call gives (`gometal_keras.data.validation`) against the model's shapes and the loss.

Arrays go through Keras' `Model.predict` in batches of the trainer's ``batch_size``; a
stream input (`gometal_keras.data.inputs`) is read once, batch by batch, each batch checked
like a training batch (a bad one is named) and predicted with ``predict_on_batch``. The
evaluated loss is the mean over every sample, whatever the batches' sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras.core.config import TrainerConfig
from gometal_keras.data.inputs import as_source, is_stream
from gometal_keras.data.streaming import named
from gometal_keras.data.validation import as_features, as_targets
from gometal_keras.engines import Objective


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
        """`x` checked against the model's input: float32 samples."""
        return as_features(x, tuple(self.model.input_shape[1:]))

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
        """float32 outputs for every sample of `x` (an array or a stream; labels ignored)."""
        if not is_stream(x):
            return self._predict(self.features(x))
        source, outs = as_source(x), []
        for index, (bx, _) in enumerate(source.batches(0), 1):
            xa = named(self.features, (bx,), f"Batch {index} of the {source.kind}")
            outs.append(self._on_batch(xa))
        if not outs:
            raise ValueError(f"The {source.kind} gave no batch; expected at least one sample.")
        return np.concatenate(outs)

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
        out = self.model.predict(xa, batch_size=self.config.batch_size, verbose=0)
        return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)

    def _on_batch(self, xa: np.ndarray) -> np.ndarray:
        out = self.model.predict_on_batch(xa)
        return np.asarray(keras.ops.convert_to_numpy(out), dtype=np.float32)

    def _loss(self, ya: np.ndarray, preds: np.ndarray) -> float:
        return float(keras.ops.convert_to_numpy(self.objective.loss(ya, preds)))
