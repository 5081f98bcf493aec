"""Go-Metal's metric history (`GetMetricHistory`): its metrics on the validation data, per epoch.

``Trainer.fit(..., validation_data=..., metric_history=True)`` adds a `MetricHistory`
callback. After each epoch it predicts the validation data once and computes, with
``sklearn.metrics`` (`gometal_keras.training.evaluation`), what Go-Metal's trainer keeps a
history of: for classification ``accuracy``, ``macro_`` and ``micro_`` ``precision`` /
``recall`` / ``f1``, ``roc_auc_ovr`` and, for two classes, ``specificity`` and ``npv``; for
regression ``mae``, ``mse``, ``rmse``, ``r2`` and ``nmae``. The lists land on the run record
(`TrainingRun.metric_history`), and each epoch's values are in the logs the callbacks after
it see as ``val_<name>`` (so ``keras.callbacks.EarlyStopping(monitor="val_macro_f1")``
works). The epoch timer stops before it runs, so ``epoch_seconds`` leave it out.

Cost, measured 2026-12-07 on this project's shared 2-core x86_64 CPU (TensorFlow backend,
load average 7-8 from other work): a 64-32-10 MLP on scikit-learn's digits (1437 training
rows, 360 validation rows, batch 32, float32), 21 epochs with ``metric_history=True``; the
history's median over epochs 2-21 was 33 and 41 ms per epoch in two runs (the prediction
pass, ``predict_on_batch`` on 1024-row chunks, about 10 ms of it; the sklearn metrics about
15 ms), against an epoch with its validation loss of 200-290 ms. ``MetricHistory.seconds``
holds each epoch's cost, for measuring it on other data.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras.training.evaluation import (
    classification_metrics,
    outputs_and_labels,
    predict_rows,
    regression_metrics,
)
from gometal_keras.training.record import TrainingRun


class MetricHistory(keras.callbacks.Callback):
    """Keeps Go-Metal's metrics of each epoch, computed on the validation data.

    Args:
        read: Returns ``(outputs, labels)`` of the validation data under the current weights.
        problem_type: ``"classification"`` or ``"regression"``.
        are_probabilities: Classification: whether the outputs are probabilities already.

    Attributes:
        history: Each metric's value per epoch, by name (None where a value is undefined:
            ``roc_auc_ovr`` with a class missing, ``nmae`` of constant targets).
        seconds: The wall time each epoch's metrics took (prediction included).

    Example:
        >>> y = np.array([0, 1, 1, 0])
        >>> logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
        >>> history = MetricHistory(lambda: (logits, y), "classification")
        >>> logs = {}
        >>> history.on_epoch_end(0, logs)
        >>> history.history["accuracy"], logs["val_accuracy"]
        ([0.75], 0.75)
    """

    def __init__(
        self,
        read: Callable[[], tuple[np.ndarray, Any]],
        problem_type: str,
        are_probabilities: bool = False,
    ):
        super().__init__()
        self._read, self._problem_type = read, problem_type
        self._are_probabilities = are_probabilities
        self.history: dict[str, list[float | None]] = {}
        self.seconds: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Predict the validation data, compute the metrics, keep them and log them."""
        start = time.perf_counter()
        outputs, labels = self._read()
        if self._problem_type == "regression":
            values = regression_metrics(outputs, labels)
        else:
            values = classification_metrics(outputs, labels, self._are_probabilities)
        for name, value in values.items():
            self.history.setdefault(name, []).append(value)
        if logs is not None:
            logs.update({f"val_{k}": v for k, v in values.items() if v is not None})
        self.seconds.append(time.perf_counter() - start)


def metric_history_callback(
    trainer: Any, enabled: Any, validation_data: Any
) -> list[MetricHistory]:
    """The `MetricHistory` a `Trainer.fit` call asked for: ``[callback]``, or ``[]``.

    Called before the first step, so a bad request changes nothing.

    Args:
        trainer: The `Trainer` whose model is evaluated.
        enabled: ``fit``'s ``metric_history`` argument (a bool).
        validation_data: ``fit``'s checked ``validation_data``: ``(x_val, y_val)`` or a
            re-readable stream of ``(x, y)`` batches.

    Returns:
        A list of one callback when `enabled`, else an empty list.

    Raises:
        TypeError: `enabled` is not a bool.
        ValueError: History asked for without validation data, or over a one-pass stream
            (which the validation loss reads already).
    """
    from gometal_keras.data.inputs import as_source, is_stream
    from gometal_keras.engines.objectives import outputs_probabilities

    if not isinstance(enabled, (bool, np.bool_)):
        raise TypeError(f"metric_history is {enabled!r}; expected True or False.")
    if not enabled:
        return []
    if validation_data is None:
        raise ValueError(
            "metric_history=True needs validation_data, the data its metrics are computed "
            "on; expected validation_data=(x_val, y_val) or a stream of (x, y) batches."
        )
    if is_stream(validation_data):
        if as_source(validation_data).one_shot:
            raise ValueError(
                "metric_history=True reads validation_data again after the validation loss, "
                "and this one-pass iterator can be read only once; expected a re-readable "
                "input (a list of batches, a tf.data.Dataset, a keras.utils.PyDataset)."
            )

        def read() -> tuple[np.ndarray, Any]:
            return outputs_and_labels(trainer, validation_data)[:2]
    else:  # arrays: predict_on_batch on chunks, far cheaper than Model.predict
        x, y = validation_data

        def read() -> tuple[np.ndarray, Any]:
            return predict_rows(trainer, x), y

    problem = trainer.config.problem_type
    return [MetricHistory(read, problem, outputs_probabilities(trainer.model))]


def with_history(run: TrainingRun, callbacks: list[MetricHistory]) -> TrainingRun:
    """`run` with the history of the `MetricHistory` in `callbacks` (unchanged without one).

    Example:
        >>> h = MetricHistory(lambda: (np.array([1.0, 2.0]), [1.0, 3.0]), "regression")
        >>> h.on_epoch_end(0)
        >>> with_history(TrainingRun("float32", [0.5], [0.1]), [h]).metric_history["mae"]
        [0.5]
    """
    if not callbacks:
        return run
    history = {name: list(values) for name, values in callbacks[0].history.items()}
    return dataclasses.replace(run, metric_history=history)
