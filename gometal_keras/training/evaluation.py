"""The evaluation report: Go-Metal's metrics of a trained model on held-out data.

Classification: accuracy, per-class precision / recall / F1 / support, the confusion
matrix, ROC AUC one-vs-rest and average precision, with every ROC and precision-recall
curve; regression: MAE, RMSE and R² with the targets and predictions. Every figure comes
from ``sklearn.metrics``. An `EvaluationReport` is plain data: `to_dict` is its JSON, and
`gometal_keras.reporting.evalplots` draws it. It reads the trainer's predictions and, when given, a
`TrainingRun` (the training curves); it never trains. `classification_metrics` and
`regression_metrics` give the scalar metrics alone (what the per-epoch metric history keeps,
`gometal_keras.training.metric_history`), and `predict_rows` the predictions of a model
asked many times.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gometal_keras.core.jsondata import json_safe
from gometal_keras.engines.objectives import to_probabilities
from gometal_keras.training.record import TrainingRun

#: The report's JSON identity.
SCHEMA, VERSION = "gometal_keras.evaluation", 1


def _metrics() -> Any:
    """``sklearn.metrics``, or ImportError naming the ``evaluate`` extra."""
    try:
        from sklearn import metrics
    except ImportError:
        raise ImportError(
            "The evaluation report needs scikit-learn; install it with "
            "pip install 'gometal_keras[evaluate]'."
        ) from None
    return metrics


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """Metrics and curves of one model on one data set.

    Attributes:
        problem_type: ``"classification"`` or ``"regression"``.
        metrics: Scalar metrics by name (accuracy, roc_auc_ovr, ... or mae, rmse, r2).
        per_class: Classification: one dict per class (name, precision, recall, f1, support).
        confusion: Classification: the confusion matrix, rows true, columns predicted.
        roc: Classification: per class ``{"name", "fpr", "tpr", "auc"}`` (one-vs-rest).
        pr: Classification: per class ``{"name", "precision", "recall", "ap"}``.
        y_true: Regression: the targets, flattened.
        y_pred: Regression: the predictions, flattened.
        run: The training run (loss, validation loss, learning rates), when given.
    """

    problem_type: str
    metrics: dict[str, float | None]
    per_class: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    confusion: list[list[int]] = dataclasses.field(default_factory=list)
    roc: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    pr: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    y_true: list[float] = dataclasses.field(default_factory=list)
    y_pred: list[float] = dataclasses.field(default_factory=list)
    run: TrainingRun | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data: every number the plots draw."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "run"}
        training = None
        if self.run is not None:
            training = {
                "loss": self.run.losses,
                "val_loss": self.run.val_losses,
                "metrics": self.run.metrics,
                "metric_history": self.run.metric_history,
            }
        return json_safe({"schema": SCHEMA, "version": VERSION, **data, "training": training})

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write `to_dict` as JSON to `path` and return the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False), encoding="utf-8")
        return path


def _ratio(part: Any, whole: Any) -> float:
    """``part / whole`` as a float, 0.0 when `whole` is 0 (sklearn's ``zero_division=0``)."""
    return float(part) / float(whole) if whole else 0.0


def _class_labels(
    outputs: np.ndarray, y: Any, are_probabilities: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities ``(n, classes)`` of `outputs` and class indices ``(n,)`` of `y`, checked."""
    proba = to_probabilities(outputs, are_probabilities)
    k = proba.shape[1]
    labels = np.asarray(y)
    labels = labels.argmax(axis=1) if labels.ndim == 2 and labels.shape[1] > 1 else labels
    labels = labels.reshape(-1).astype(int)
    if len(labels) != len(proba) or labels.min() < 0 or labels.max() >= k:
        raise ValueError(
            f"y must hold one class index in [0, {k}) per sample ({len(proba)}); "
            f"got {len(labels)} labels from {labels.min()} to {labels.max()}."
        )
    return proba, labels


def _scalars(
    proba: np.ndarray, labels: np.ndarray
) -> tuple[dict[str, float | None], list[float], list[float]]:
    """Go-Metal's scalar classification metrics, with per-class specificity and NPV
    (one-vs-rest), all from ``sklearn.metrics``."""
    skm = _metrics()
    k = proba.shape[1]
    predicted, classes = proba.argmax(axis=1), list(range(k))
    averaged: dict[str, float | None] = {"accuracy": float(skm.accuracy_score(labels, predicted))}
    for average in ("macro", "micro"):
        ap_, ar_, af_, _ = skm.precision_recall_fscore_support(
            labels, predicted, labels=classes, average=average, zero_division=0
        )
        averaged |= {f"{average}_precision": float(ap_), f"{average}_recall": float(ar_),
                     f"{average}_f1": float(af_)}
    # One-vs-rest counts per class: tn, fp / fn, tp (sklearn's multilabel confusion matrix).
    counts = skm.multilabel_confusion_matrix(labels, predicted, labels=classes)
    specificity = [_ratio(c[0, 0], c[0, 0] + c[0, 1]) for c in counts]
    npv = [_ratio(c[0, 0], c[0, 0] + c[1, 0]) for c in counts]
    if k == 2:  # Go-Metal's: class 1 positive, class 0 negative
        averaged |= {"specificity": specificity[1], "npv": npv[1]}
    present = all(0 < np.sum(labels == c) < len(labels) for c in classes)
    auc = None
    if present:
        auc = float(
            skm.roc_auc_score(labels, proba, multi_class="ovr", labels=classes)
            if k > 2
            else skm.roc_auc_score(labels, proba[:, 1])
        )
    averaged["roc_auc_ovr"] = auc
    return averaged, specificity, npv


def classification_metrics(
    outputs: np.ndarray, y: Any, are_probabilities: bool = False
) -> dict[str, float | None]:
    """Go-Metal's scalar classification metrics of `outputs` against labels `y`, no curves.

    What a `classification_report` holds in ``metrics`` but ``average_precision`` (which
    needs every precision-recall curve): ``accuracy``, ``macro_`` and ``micro_``
    ``precision`` / ``recall`` / ``f1``, for two classes ``specificity`` and ``npv``, and
    ``roc_auc_ovr`` (None when a class is absent from `y`).

    Args:
        outputs: ``(n, classes)`` logits or probabilities (one column: binary).
        y: Class indices ``(n,)`` or one-hot ``(n, classes)``.
        are_probabilities: Whether `outputs` are probabilities already.

    Returns:
        The metrics by name.

    Example:
        >>> m = classification_metrics(np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0]]), [0, 1, 1])
        >>> m["accuracy"], m["specificity"], m["npv"]
        (0.6666666666666666, 1.0, 0.5)
    """
    return _scalars(*_class_labels(outputs, y, are_probabilities))[0]


def classification_report(
    outputs: np.ndarray,
    y: Any,
    are_probabilities: bool = False,
    class_names: Sequence[str] | None = None,
    run: TrainingRun | None = None,
) -> EvaluationReport:
    """Classification metrics of model `outputs` (logits or probabilities) against labels `y`.

    Args:
        outputs: ``(n, classes)`` logits or probabilities (one column: binary).
        y: Class indices ``(n,)`` or one-hot ``(n, classes)``.
        are_probabilities: Whether `outputs` are probabilities already.
        class_names: Names in class order; default ``"0"``, ``"1"``, ...
        run: The training run whose curves the report carries.

    Returns:
        An `EvaluationReport`; ROC AUC is None when a class is absent from `y`.

    Example:
        >>> logits = np.array([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]])
        >>> r = classification_report(logits, [0, 1, 1, 1])
        >>> r.metrics["accuracy"], r.confusion
        (0.75, [[1, 0], [1, 2]])
    """
    skm = _metrics()
    from sklearn.preprocessing import label_binarize

    proba, labels = _class_labels(outputs, y, are_probabilities)
    k = proba.shape[1]
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names were given for {k} classes; expected {k}.")
    predicted, classes = proba.argmax(axis=1), list(range(k))
    p, r, f1, support = skm.precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    scalars, specificity, npv = _scalars(proba, labels)
    onehot = label_binarize(labels, classes=classes) if k > 2 else None
    truth = [onehot[:, c] if onehot is not None else (labels == c).astype(int) for c in classes]
    present = scalars["roc_auc_ovr"] is not None
    roc, pr = [], []
    for c in classes if k > 2 else [1]:
        fpr, tpr, _ = skm.roc_curve(truth[c], proba[:, c]) if present else ([], [], None)
        precision, recall, _ = skm.precision_recall_curve(truth[c], proba[:, c])
        roc.append(
            {
                "name": names[c],
                "fpr": list(fpr),
                "tpr": list(tpr),
                "auc": float(skm.auc(fpr, tpr)) if present else None,
            }
        )
        ap = float(skm.average_precision_score(truth[c], proba[:, c]))
        pr.append(
            {"name": names[c], "precision": list(precision), "recall": list(recall), "ap": ap}
        )
    return EvaluationReport(
        "classification",
        {**scalars, "average_precision": float(np.mean([c["ap"] for c in pr]))},
        per_class=[
            {
                "name": n,
                "precision": float(a),
                "recall": float(b),
                "f1": float(c),
                "specificity": sp,
                "npv": nv,
                "support": int(d),
            }
            for n, a, b, c, sp, nv, d in zip(
                names, p, r, f1, specificity, npv, support, strict=True)
        ],
        confusion=skm.confusion_matrix(labels, predicted, labels=classes).tolist(),
        roc=roc,
        pr=pr,
        run=run,
    )


def regression_metrics(outputs: np.ndarray, y: Any) -> dict[str, float | None]:
    """Go-Metal's regression metrics (MAE, MSE, RMSE, R², NMAE) of `outputs` against `y`.

    Args:
        outputs: Predictions, one per target.
        y: The targets.

    Returns:
        The metrics by name; ``nmae`` (MAE over the targets' range) is None for constant
        targets.

    Example:
        >>> regression_metrics(np.array([[1.0], [2.0], [4.0]]), [1.0, 3.0, 4.0])["mse"]
        0.3333333333333333
    """
    return _regression_scalars(*_regression_pairs(outputs, y))


def _regression_pairs(outputs: np.ndarray, y: Any) -> tuple[np.ndarray, np.ndarray]:
    y_pred = np.asarray(outputs, dtype=np.float64).reshape(-1)
    y_true = np.asarray(y, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y holds {y_true.size} values for {y_pred.size} predictions; expected one per output."
        )
    return y_true, y_pred


def _regression_scalars(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    skm = _metrics()
    mae = float(skm.mean_absolute_error(y_true, y_pred))
    spread = float(y_true.max() - y_true.min()) if y_true.size else 0.0
    return {
        "mae": mae,
        "mse": float(skm.mean_squared_error(y_true, y_pred)),
        "rmse": float(skm.root_mean_squared_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)),
        # Go-Metal's NMAE: MAE over the range of the targets (None for constant targets).
        "nmae": mae / spread if spread > 0 else None,
    }


def regression_report(
    outputs: np.ndarray, y: Any, run: TrainingRun | None = None
) -> EvaluationReport:
    """Regression metrics (MAE, MSE, RMSE, R², NMAE) of `outputs` against targets `y`.

    Example:
        >>> r = regression_report(np.array([[1.0], [2.0], [4.0]]), [1.0, 3.0, 4.0])
        >>> r.metrics["mae"], r.metrics["rmse"]
        (0.3333333333333333, 0.5773502691896257)
    """
    y_true, y_pred = _regression_pairs(outputs, y)
    return EvaluationReport(
        "regression",
        _regression_scalars(y_true, y_pred),
        y_true=y_true.tolist(),
        y_pred=y_pred.tolist(),
        run=run,
    )


def evaluation_report(
    trainer: Any,
    x: Any,
    y: Any = None,
    run: TrainingRun | None = None,
    class_names: Sequence[str] | None = None,
) -> EvaluationReport:
    """The report of a `Trainer` on ``(x, y)`` (what ``Trainer.evaluate(x, y, report=True)`` gives).

    Every input `fit` takes gives a report: arrays with their labels `y`, or a stream of
    ``(x, y)`` batches (an image `DataLoader`, a `tf.data.Dataset`, a `PyDataset`, a
    generator, ...), read once, its labels gathered as it is read, so each label stays
    with its row even where a loader skips unreadable files.

    Args:
        trainer: A trained `Trainer` (its config says classification or regression).
        x: Samples, or a stream of ``(x, y)`` batches.
        y: Labels (class indices or one-hot) or regression targets; None for a stream.
        run: The `TrainingRun` of its `fit`, for the training curves.
        class_names: Names of the classes, in output order; an image folder's own
            ``class_names`` by default.

    Returns:
        An `EvaluationReport`.

    Raises:
        ValueError: Arrays without `y`, a stream with `y`, or a stream batch without labels.

    Example:
        >>> from gometal_keras import ModelBuilder, Trainer, TrainerConfig
        >>> b = ModelBuilder([8, 2]).add_dense(3)
        >>> t = Trainer(b, TrainerConfig(8, precision="float32", jit_compile=False, seed=0))
        >>> x = np.random.default_rng(0).normal(size=(30, 2))
        >>> report = t.evaluate(x, np.arange(30) % 3, report=True)
        >>> len(report.confusion), len(report.roc)
        (3, 3)
        >>> batches = [(x[:16], np.arange(16) % 3), (x[16:], np.arange(16, 30) % 3)]
        >>> t.evaluate(batches, report=True).confusion == report.confusion
        True
    """
    from gometal_keras.engines.objectives import outputs_probabilities

    outputs, y, folder = outputs_and_labels(trainer, x, y)
    if class_names is None and len(folder) == outputs.reshape(len(outputs), -1).shape[1]:
        class_names = folder  # an image folder's classes, where they match the outputs
    if trainer.config.problem_type == "regression":
        return regression_report(outputs, y, run)
    probs = outputs_probabilities(trainer.model)
    return classification_report(outputs, y, probs, class_names, run)


def outputs_and_labels(trainer: Any, x: Any, y: Any = None) -> tuple[np.ndarray, Any, list[str]]:
    """The `trainer`'s outputs on `x` with their labels: arrays and `y`, or a stream read once.

    Args:
        trainer: A `Trainer`.
        x: Samples, or a stream of ``(x, y)`` batches.
        y: Labels of array samples; None for a stream.

    Returns:
        ``(outputs, labels, class_names)``: the class names of an image folder read, else [].

    Raises:
        ValueError: Arrays without `y`, a stream with `y`, or a stream batch without labels.
    """
    from gometal_keras.data.inputs import is_stream
    from gometal_keras.training.inference import read_stream

    if is_stream(x):
        read = read_stream(trainer.model, x) if y is None else None
        if read is None:
            raise ValueError(
                "y was given with a stream, which yields its own (x, y) batches; expected y=None."
            )
        if read.labels is None:
            raise ValueError(
                f"A batch of the {read.kind} has no labels; expected (x, y) batches for an "
                "evaluation report."
            )
        folder = list(getattr(getattr(x, "dataset", None), "class_names", None) or [])
        return read.outputs, read.labels, [str(n) for n in folder]
    if y is None:
        raise ValueError(
            "y is None with array samples; expected one label per sample of x "
            "(or a stream of (x, y) batches)."
        )
    return trainer.predict(x), y, []


def predict_rows(trainer: Any, x: Any) -> np.ndarray:
    """The `trainer`'s float32 outputs on array samples `x`: ``trainer.predict(x)``, as a
    plain array, for what predicts the same model many times (the metric history each
    epoch, permutation importance and partial dependence for every shuffle and grid value;
    `inference.predict_array` keeps each call cheap).

    Example:
        >>> from gometal_keras import ModelBuilder, Trainer, TrainerConfig
        >>> t = Trainer(ModelBuilder([8, 3]).add_dense(2),
        ...             TrainerConfig(8, precision="float32", jit_compile=False))
        >>> x = np.ones((5, 3), np.float32)
        >>> np.allclose(predict_rows(t, x), t.predict(x))
        True
    """
    return np.asarray(trainer.predict(np.asarray(x)), dtype=np.float32)
