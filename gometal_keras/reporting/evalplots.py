"""Go-Metal's evaluation plots of an `EvaluationReport`, drawn with matplotlib to PNG.

Training curves (loss with validation loss, and the training metrics), the learning-rate
schedule, and then for classification the confusion matrix, ROC curves (one-vs-rest, with
the chance line) and precision-recall curves; for regression predicted-vs-true scatter,
residuals against predictions, and a normal Q-Q plot of the residuals (quantiles from
``scipy.stats.probplot``). Each is a figure of its own on the non-interactive Agg canvas;
pyplot and matplotlib's global state are left alone. It only reads the report.

Go-Metal's nine other kinds look at the model and the data rather than at a report:
`parameter_distribution`, `gradient_histogram`, `activation_pattern`, `feature_importance`
(permutation importance, ``sklearn.inspection``), `learning_curve` (from the run record),
`validation_curve`, `prediction_interval` (regression), `feature_correlation` and
`partial_dependence` (``sklearn.inspection``). Each returns its numbers as Go-Metal's
`PlotData` (`gometal_keras.reporting.plotdata`); `draw` makes any PlotData a figure and
`save_plot` writes NAME.png with Go-Metal's NAME.json (and pushes it to a sidecar
dashboard only when given its URL).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from gometal_keras.core.integers import count
from gometal_keras.reporting.plot import require_matplotlib
from gometal_keras.reporting.plotdata import (
    PlotConfig,
    PlotData,
    Point,
    Series,
    heatmap,
    line,
    push_plot_data,
    report_plot_data,
    sidecar_endpoint,
    write_plot_data,
)
from gometal_keras.training.evaluation import EvaluationReport, predict_rows


def _figure(title: str, panels: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5 * panels, 4.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0].tolist()
    fig.suptitle(title)
    return fig, axes


def _training(report: EvaluationReport) -> dict[str, Any]:
    from matplotlib.ticker import MaxNLocator

    run, figs = report.run, {}
    if run is None or not run.losses:
        return figs
    others = {k: v for k, v in run.metrics.items() if k != "learning_rate" and v}
    fig, axes = _figure("Training curves", 2 if others else 1)
    epochs = np.arange(1, run.epochs_run + 1)
    axes[0].plot(epochs, run.losses, marker="o", ms=3, label="training loss")
    if run.val_losses:
        axes[0].plot(
            epochs[: len(run.val_losses)], run.val_losses, marker="s", ms=3, label="validation loss"
        )
    # The loss is in the units of the targets fit was given (standardized ones, say), which
    # need not be the units of the report's metrics (RMSE of the targets evaluated).
    axes[0].set(xlabel="epoch", ylabel="loss (units of the targets fit was given)",
                title="Loss")
    for name, values in others.items():
        axes[1].plot(epochs[: len(values)], values, marker="o", ms=3, label=f"training {name}")
        axes[1].set(xlabel="epoch", title="Training metrics")
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs, even for 2
        ax.grid(True, alpha=0.3)
        ax.legend()
    figs["training_curves"] = fig
    rates = run.metrics.get("learning_rate")
    if rates:
        fig, (ax,) = _figure("Learning-rate schedule")
        ax.plot(np.arange(1, len(rates) + 1), rates, marker="o", ms=3, label="learning rate")
        ax.set(xlabel="epoch", ylabel="learning rate")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        figs["learning_rate"] = fig
    return figs


def _classification(report: EvaluationReport) -> dict[str, Any]:
    names = [c["name"] for c in report.per_class]
    fig, (ax,) = _figure(f"Confusion matrix (accuracy {report.metrics['accuracy']:.2%})")
    matrix = np.array(report.confusion)
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    for (i, j), cell in np.ndenumerate(matrix):
        dark = cell > matrix.max() / 2
        ax.text(j, i, str(cell), ha="center", va="center", color="white" if dark else "black")
    ticks = np.arange(len(names))
    ax.set(
        xticks=ticks,
        yticks=ticks,
        xticklabels=names,
        yticklabels=names,
        xlabel="predicted",
        ylabel="true",
    )
    figs = {"confusion_matrix": fig}
    auc = report.metrics["roc_auc_ovr"]
    fig, (ax,) = _figure("ROC curves (one-vs-rest)" + (f", AUC {auc:.4f}" if auc else ""))
    for curve in report.roc:
        ax.plot(curve["fpr"], curve["tpr"], label=f"{curve['name']} (AUC {curve['auc'] or 0:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate")
    figs["roc"] = fig
    fig, (ax,) = _figure(f"Precision-recall (mean AP {report.metrics['average_precision']:.3f})")
    for curve in report.pr:
        ax.plot(
            curve["recall"], curve["precision"], label=f"{curve['name']} (AP {curve['ap']:.3f})"
        )
    ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02))
    figs["precision_recall"] = fig
    for key in ("roc", "precision_recall"):
        figs[key].axes[0].legend(fontsize="small", ncols=2 if len(report.roc) > 5 else 1)
        figs[key].axes[0].grid(True, alpha=0.3)
    return figs


def _regression(report: EvaluationReport) -> dict[str, Any]:
    from scipy import stats

    y_true, y_pred = np.array(report.y_true), np.array(report.y_pred)
    residuals = y_true - y_pred
    m = report.metrics
    fig, (ax,) = _figure(f"Predicted vs true (R² {m['r2']:.3f}, RMSE {m['rmse']:.3g})")
    ax.scatter(y_true, y_pred, s=12, alpha=0.7, label="samples")
    lo, hi = min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey", label="perfect")
    ax.set(xlabel="true", ylabel="predicted")
    figs = {"scatter": fig}
    fig, (ax,) = _figure(f"Residuals (MAE {m['mae']:.3g})")
    ax.scatter(y_pred, residuals, s=12, alpha=0.7, label="true - predicted")
    ax.axhline(0.0, ls="--", color="grey", label="zero")
    ax.set(xlabel="predicted", ylabel="residual")
    figs["residuals"] = fig
    (theory, ordered), (slope, intercept, r) = stats.probplot(residuals, dist="norm")
    fig, (ax,) = _figure(f"Normal Q-Q plot of the residuals (r {r:.3f})")
    ax.scatter(theory, ordered, s=12, alpha=0.7, label="residual quantiles")
    ax.plot(theory, slope * theory + intercept, color="grey", ls="--", label="normal fit")
    ax.set(xlabel="theoretical quantiles (normal)", ylabel="ordered residuals")
    figs["qq"] = fig
    for f in figs.values():
        f.axes[0].grid(True, alpha=0.3)
        f.axes[0].legend()
    return figs


def report_figures(report: EvaluationReport) -> dict[str, Any]:
    """Every plot of `report` as a matplotlib ``Figure``, by name, in Go-Metal's order.

    Example:
        >>> from gometal_keras.training.evaluation import regression_report
        >>> r = regression_report(np.array([1.0, 2.2, 2.9, 4.3]), [1.0, 2.0, 3.0, 4.0])
        >>> list(report_figures(r))
        ['scatter', 'residuals', 'qq']
    """
    require_matplotlib()
    body = _regression if report.problem_type == "regression" else _classification
    return {**_training(report), **body(report)}


def plot_report(
    report: EvaluationReport,
    folder: str | os.PathLike[str],
    model_name: str = "model",
    sidecar_url: str | None = None,
    timeout: float = 10.0,
) -> list[Path]:
    """Write every plot of `report` as ``folder/NAME.png`` with Go-Metal's PlotData beside
    it as ``folder/NAME.json`` (the folder is created).

    Args:
        report: The evaluation report.
        folder: Where to write.
        model_name: The model's name in the PlotData.
        sidecar_url: A Go-Metal sidecar dashboard's base URL: each PlotData is also posted
            there (`plotdata.push_plot_data`); None (the default) sends nothing.
        timeout: Seconds to wait for the sidecar, per plot.

    Returns:
        The PNG files written.
    """
    if sidecar_url is not None:
        sidecar_endpoint(sidecar_url, timeout)  # a bad URL refused before anything is written
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    plots = report_plot_data(report, model_name)
    for name, fig in report_figures(report).items():
        fig.savefig(folder / f"{name}.png", dpi=110)
        write_plot_data(plots[name], folder / f"{name}.json")
        written.append(folder / f"{name}.png")
    if sidecar_url is not None:
        for plot in plots.values():
            push_plot_data(plot, sidecar_url, timeout)
    return written


# ---------------------------------------------------------------------------------------
# Go-Metal's other nine plot kinds: each computes its numbers as a `PlotData`
# (`gometal_keras.reporting.plotdata`), which `draw` turns into a figure and `save_plot`
# into NAME.png beside Go-Metal's NAME.json.


def _histograms(
    values: dict[str, np.ndarray], bins: int, kind: str
) -> tuple[list[Series], dict[str, dict[str, float]]]:
    """A histogram series per array of `values` and its statistics (Go-Metal's
    ``ParameterStats`` / ``GradientStats`` / ``ActivationStats`` figures)."""

    bins = count("bins", bins)
    series, stats = [], {}
    for name, array in values.items():
        flat = np.asarray(array, dtype=np.float64).reshape(-1)
        counts, edges = np.histogram(flat, bins=bins)
        centers = (edges[:-1] + edges[1:]) / 2
        series.append(line(name, centers, counts, "histogram", width=float(edges[1] - edges[0])))
        stats[name] = {
            "mean": float(flat.mean()), "std": float(flat.std()), "min": float(flat.min()),
            "max": float(flat.max()), "count": int(flat.size),
        }
        if kind == "gradient":
            stats[name]["gradient_norm"] = float(np.linalg.norm(flat))
        if kind == "activation":
            stats[name]["sparsity_ratio"] = float(np.mean(flat == 0.0))
    return series, stats


def _keras_model(model_or_trainer: Any) -> Any:
    return getattr(model_or_trainer, "model", model_or_trainer)


def parameter_distribution(model_or_trainer: Any, bins: int = 30) -> PlotData:
    """Go-Metal's parameter distribution: a histogram of each trainable weight.

    Args:
        model_or_trainer: A `Trainer` or a built `keras.Model`.
        bins: Histogram bins per weight.

    Returns:
        A ``parameter_distribution`` `PlotData`: a ``histogram`` series per weight, named by
        its path (``dense/kernel``), ``x`` the bin centres and ``y`` the counts; ``metrics``
        holds each weight's ``mean``, ``std``, ``min``, ``max`` and ``count``.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")], name="m")
        >>> plot = parameter_distribution(m, bins=4)
        >>> [s.name for s in plot.series], int(plot.series[0].ys().sum())
        (['m/d/kernel', 'm/d/bias'], 6)
    """

    model = _keras_model(model_or_trainer)
    weights = {v.path: keras_numpy(v.value) for v in model.trainable_weights}
    series, stats = _histograms(weights, bins, "parameter")
    return PlotData("parameter_distribution", f"Parameter Distribution - {model.name}", series,
                    PlotConfig("Parameter Value", "Count"), model.name, stats)


def keras_numpy(value: Any) -> np.ndarray:
    """A Keras tensor or variable value on the host, as float64 numpy."""
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)


def gradients(trainer: Any, x: Any, y: Any) -> dict[str, np.ndarray]:
    """The gradient of the trainer's loss on one batch ``(x, y)``, per trainable weight.

    The trainer is not changed: a clone of its model (its weights copied) takes one plain
    SGD step of learning rate 1 on the batch with the trainer's loss through Keras'
    ``train_on_batch``, and the gradient is the weights' change (any backend, public Keras
    only; float32 rounding of ``w - (w - g)`` bounds its precision at about 1e-7 ``|w|``).

    Returns:
        The gradient by weight path, as float64 arrays.
    """
    import keras

    from gometal_keras.data.validation import as_features, as_targets
    from gometal_keras.engines.objectives import make_loss

    model = trainer.model
    xa = as_features(x, tuple(model.input_shape[1:]), "x", False)
    out = tuple(model.output_shape[1:])
    ya = as_targets(y, len(xa), trainer.config.loss, out[-1], out)
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    clone.compile(optimizer=keras.optimizers.SGD(1.0), loss=make_loss(trainer.config, model))
    before = [keras_numpy(v.value) for v in clone.trainable_weights]
    clone.train_on_batch(xa, ya)
    return {
        v.path: w - keras_numpy(v.value)
        for v, w in zip(clone.trainable_weights, before, strict=True)
    }


def gradient_histogram(trainer: Any, x: Any, y: Any, bins: int = 30) -> PlotData:
    """Go-Metal's gradient histogram: the loss gradient of each weight on the batch ``(x, y)``.

    Args:
        trainer: A `Trainer` (unchanged: `gradients` steps a clone).
        x: One batch of samples.
        y: Its labels.
        bins: Histogram bins per weight.

    Returns:
        A ``gradient_histogram`` `PlotData`: a ``histogram`` series per weight; ``metrics``
        holds each one's ``gradient_norm``, ``mean``, ``std``, ``min``, ``max``.
    """

    series, stats = _histograms(gradients(trainer, x, y), bins, "gradient")
    name = trainer.model.name
    return PlotData("gradient_histogram", f"Gradient Histogram - {name}", series,
                    PlotConfig("Gradient Value", "Count"), name, stats)


def activations(model_or_trainer: Any, x: Any) -> dict[str, np.ndarray]:
    """Each layer's output (inference mode) on the samples `x`, by layer name."""
    import keras

    from gometal_keras.data.validation import as_features

    model = _keras_model(model_or_trainer)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    xa = as_features(x, tuple(model.input_shape[1:]), "x", False)
    outputs = probe([xa], training=False)
    return {layer.name: keras_numpy(o) for layer, o in zip(layers, outputs, strict=True)}


def activation_pattern(model_or_trainer: Any, x: Any, bins: int = 30) -> PlotData:
    """Go-Metal's activation pattern: a histogram of each layer's outputs on `x`.

    Args:
        model_or_trainer: A `Trainer` or a built `keras.Model`.
        x: Samples (a few hundred say).
        bins: Histogram bins per layer.

    Returns:
        An ``activation_pattern`` `PlotData`: a ``histogram`` series per layer; ``metrics``
        holds each layer's ``mean``, ``std``, ``sparsity_ratio`` (share of exact zeros),
        ``min``, ``max``.
    """

    model = _keras_model(model_or_trainer)
    series, stats = _histograms(activations(model, x), bins, "activation")
    return PlotData("activation_pattern", f"Activation Pattern - {model.name}", series,
                    PlotConfig("Activation Value", "Count"), model.name, stats)


def as_estimator(trainer: Any) -> Any:
    """A trained `Trainer` as a fitted scikit-learn estimator, for ``sklearn.inspection``.

    ``fit`` does nothing (the trainer is trained already); ``predict`` (and, for
    classification, ``predict_proba``) read the trainer's outputs (`predict_rows`);
    ``score`` is accuracy or R², as sklearn's classifiers and regressors score.

    Args:
        trainer: A trained `Trainer` of a model over flat features.

    Returns:
        A scikit-learn classifier (with ``classes_``) or regressor.

    Example:
        >>> from gometal_keras import ModelBuilder, Trainer, TrainerConfig
        >>> t = Trainer(ModelBuilder([8, 3]).add_dense(2),
        ...             TrainerConfig(8, precision="float32", jit_compile=False))
        >>> as_estimator(t).predict_proba(np.zeros((4, 3))).shape
        (4, 2)
    """
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

    from gometal_keras.engines.objectives import outputs_probabilities, to_probabilities

    regression = trainer.config.problem_type == "regression"
    mixin = RegressorMixin if regression else ClassifierMixin

    class TrainerEstimator(mixin, BaseEstimator):
        def fit(self, x: Any, y: Any = None) -> Any:
            return self

        def __sklearn_is_fitted__(self) -> bool:
            return True

        def _outputs(self, x: Any) -> np.ndarray:
            return predict_rows(trainer, np.asarray(x, dtype=np.float32))

        def predict_proba(self, x: Any) -> np.ndarray:
            return to_probabilities(self._outputs(x), outputs_probabilities(trainer.model))

        def predict(self, x: Any) -> np.ndarray:
            if regression:
                out = self._outputs(x)
                return out.reshape(len(out), -1)[:, 0] if out.size == len(out) else out
            return self.predict_proba(x).argmax(axis=1)

    estimator = TrainerEstimator()
    if not regression:  # one sigmoid output: two classes
        estimator.classes_ = np.arange(max(2, int(trainer.model.output_shape[-1])))
    return estimator


def _names(n: int, names: Any) -> list[str]:
    names = [f"feature_{i}" for i in range(n)] if names is None else [str(s) for s in names]
    if len(names) != n:
        raise ValueError(f"{len(names)} feature names were given for {n} features; expected {n}.")
    return names


def feature_importance(
    trainer: Any, x: Any, y: Any, feature_names: Any = None, n_repeats: int = 5,
    seed: int = 0,
) -> PlotData:
    """Go-Metal's feature importance, as permutation importance (``sklearn.inspection``).

    Each feature's importance is how much the score (accuracy, or R² for regression) drops
    when that feature's column of `x` is shuffled, averaged over `n_repeats` shuffles.

    Args:
        trainer: A trained `Trainer` of a model over flat features ``(n, features)``.
        x: Held-out samples.
        y: Their labels or targets.
        feature_names: Names of the columns; ``feature_0``, ... by default.
        n_repeats: Shuffles per feature.
        seed: The shuffles' seed (``random_state``).

    Returns:
        A ``feature_importance`` `PlotData`: a horizontal ``bar`` series (``x`` the mean
        importance, ``y`` the rank, ``label`` the feature; most important first) and an
        ``errorbar`` series (``x`` 1.96 standard errors of the mean); ``metrics`` holds
        ``importances_mean`` and ``importances_std`` in column order and the top feature.
    """
    from sklearn.inspection import permutation_importance


    xa = np.asarray(x, dtype=np.float32)
    names = _names(xa.shape[1], feature_names)
    labels = np.asarray(y).reshape(len(xa), -1)
    labels = labels.argmax(1) if labels.shape[1] > 1 else labels[:, 0]
    result = permutation_importance(as_estimator(trainer), xa, labels,
                                    n_repeats=n_repeats, random_state=seed)
    mean, std = result.importances_mean, result.importances_std
    order = np.argsort(-np.abs(mean), kind="stable")
    margin = 1.96 * std / np.sqrt(n_repeats)
    bars = [Point(float(mean[i]), rank, label=names[i]) for rank, i in enumerate(order)]
    errors = [Point(float(margin[i]), rank) for rank, i in enumerate(order)]
    name = trainer.model.name
    return PlotData(
        "feature_importance", f"{name} - Feature Importance",
        [Series("Permutation Importance", "bar", bars, {"orientation": "horizontal"}),
         Series("95% Confidence Interval", "errorbar", errors)],
        PlotConfig("Score drop when shuffled", "Features", height=max(400, 40 * len(names)),
                   custom_options={"yTickLabels": [names[i] for i in order]}),
        name,
        {"importances_mean": mean.tolist(), "importances_std": std.tolist(),
         "num_features": len(names), "top_feature": names[int(order[0])]},
    )


def learning_curve(run: Any, metric: str | None = None) -> PlotData:
    """A learning curve from the run record: training against validation, per epoch.

    Args:
        run: A `TrainingRun` (with ``validation_data`` given to ``fit`` for the validation
            curve; with ``metric_history=True`` for a metric's).
        metric: None for the loss; else a metric name in ``run.metrics`` (training) and
            ``run.metric_history`` (validation), e.g. ``"accuracy"`` or ``"mae"``.

    Returns:
        A ``learning_curve`` `PlotData`: ``Training Score`` and ``Validation Score`` lines
        (``x`` the epoch); a side the run does not hold is left out.

    Raises:
        ValueError: The run holds `metric` on neither side.
    """

    if metric is None:
        train, val, label = run.losses, run.val_losses, "loss"
    else:
        train, val = run.metrics.get(metric, []), run.metric_history.get(metric, [])
        label = metric
        if not train and not val:
            known = sorted(set(run.metrics) | set(run.metric_history))
            raise ValueError(
                f"The run has no {metric!r} per epoch; expected one of {known} "
                "(validation metrics need fit(..., metric_history=True))."
            )
    series = [line(f"{side} Score", np.arange(1, len(v) + 1), np.asarray(v, dtype=float))
              for side, v in (("Training", train), ("Validation", val)) if v]
    return PlotData("learning_curve", f"Learning Curve ({label})", series,
                    PlotConfig("Epoch", label), metrics={"epochs": run.epochs_run})


def _score(trainer: Any, x: Any, y: Any) -> float:
    """Accuracy (classification) or R² (regression) of `trainer` on ``(x, y)``."""
    from gometal_keras.engines.objectives import outputs_probabilities
    from gometal_keras.training.evaluation import classification_metrics, regression_metrics

    out = predict_rows(trainer, x)
    if trainer.config.problem_type == "regression":
        return float(regression_metrics(out, y)["r2"])
    return float(classification_metrics(out, y, outputs_probabilities(trainer.model))["accuracy"])


def validation_curve(
    build: Any, values: Any, x: Any, y: Any, validation_data: tuple[Any, Any],
    parameter_name: str = "parameter", epochs: int = 5,
) -> PlotData:
    """Go-Metal's validation curve: training and validation score for each value of a setting.

    Args:
        build: ``build(value)`` returns a fresh `Trainer` for that value of the setting
            (a learning rate, a layer width, ...).
        values: The values, in plotting order (at least one).
        x: Training samples.
        y: Their labels or targets.
        validation_data: ``(x_val, y_val)``.
        parameter_name: The setting's name (the x axis).
        epochs: Epochs each trainer trains.

    Returns:
        A ``validation_curve`` `PlotData`: ``Training Score`` and ``Validation Score``
        lines (accuracy, or R² for regression), ``x`` the values (a log axis when they are
        positive and span a factor of 100 or more); ``metrics`` holds the best value.
    """

    values = list(values)
    if not values:
        raise ValueError("values is empty; expected at least one value of the setting.")
    train, val = [], []
    for value in values:
        trainer = build(value)
        trainer.fit(x, y, epochs=epochs)
        train.append(_score(trainer, x, y))
        val.append(_score(trainer, *validation_data))
    numeric = np.asarray(values, dtype=float)
    spread = numeric.min() > 0 and numeric.max() >= 100 * numeric.min()
    best = values[int(np.argmax(val))]
    return PlotData(
        "validation_curve", f"Validation Curve ({parameter_name})",
        [line("Training Score", numeric, train), line("Validation Score", numeric, val)],
        PlotConfig(parameter_name, "Score", x_axis_scale="log" if spread else "linear"),
        metrics={"best_value": best, "best_validation_score": max(val)},
    )


def prediction_interval(
    trainer: Any, x: Any, y: Any, feature: int = 0, confidence: float = 0.95
) -> PlotData:
    """Go-Metal's prediction interval of a regression model, from held-out residuals.

    The prediction interval is split conformal: predictions ± the
    ``ceil((n + 1) * confidence) / n`` quantile of the absolute residuals on ``(x, y)``
    (the held-out data), so at least `confidence` of those targets lie inside it. The
    confidence interval is that of the mean error: ± Student's t times the residuals'
    standard deviation over √n.

    Args:
        trainer: A trained regression `Trainer` (one output).
        x: Held-out samples ``(n, features)``.
        y: Their targets.
        feature: The column drawn on the x axis.
        confidence: The intervals' level, in (0, 1).

    Returns:
        A ``prediction_interval`` `PlotData`: ``Predictions`` (line) and ``Observed``
        (scatter) sorted by the feature, and ``fill`` polygons (upper edge, then the lower
        edge reversed, as Go-Metal writes them) for both intervals; ``metrics`` holds the
        half-widths, ``coverage`` and the average widths.
    """
    from scipy import stats


    if not 0 < confidence < 1:
        raise ValueError(f"confidence is {confidence!r}; expected a level in (0, 1).")
    xa = np.asarray(x, dtype=np.float64)
    pred = np.asarray(predict_rows(trainer, x), dtype=np.float64).reshape(-1)
    target = np.asarray(y, dtype=np.float64).reshape(-1)
    if pred.shape != target.shape or xa.ndim != 2 or not 0 <= feature < xa.shape[1]:
        raise ValueError(
            f"prediction_interval needs one output per sample and a feature column in "
            f"[0, {xa.shape[1] if xa.ndim == 2 else 0}); got {pred.size} outputs for "
            f"{target.size} targets and feature {feature}."
        )
    n, residuals = len(target), target - pred
    level = min(1.0, np.ceil((n + 1) * confidence) / n)
    half = float(np.quantile(np.abs(residuals), level, method="higher"))
    mean_half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * residuals.std(ddof=1)
                      / np.sqrt(n))
    order = np.argsort(xa[:, feature], kind="stable")
    xs, ps = xa[order, feature], pred[order]
    percent = f"{confidence:.0%}"

    def band(name: str, width: float) -> Series:
        return line(name, np.r_[xs, xs[::-1]], np.r_[ps + width, (ps - width)[::-1]], "fill",
                    alpha=0.3)

    return PlotData(
        "prediction_interval", f"Prediction Interval - {trainer.model.name}",
        [line("Predictions", xs, ps), line("Observed", xs, target[order], "scatter"),
         band(f"Confidence Interval ({percent})", mean_half),
         band(f"Prediction Interval ({percent})", half)],
        PlotConfig(f"feature {feature}", "Predictions"),
        trainer.model.name,
        {"confidence": confidence, "prediction_half_width": half,
         "confidence_half_width": mean_half, "avg_prediction_width": 2 * half,
         "avg_confidence_width": 2 * mean_half,
         "coverage": float(np.mean(np.abs(residuals) <= half))},
    )


def feature_correlation(x: Any, feature_names: Any = None) -> PlotData:
    """Go-Metal's feature correlation: the Pearson correlation of every pair of columns.

    Args:
        x: Samples ``(n, features)``.
        feature_names: Names of the columns; ``feature_0``, ... by default.

    Returns:
        A ``feature_correlation`` `PlotData`: one ``heatmap`` series (``x`` column, ``y``
        row, ``z`` the correlation; a constant column's is null); ``metrics`` holds the
        pairs beyond 0.7 in absolute value.
    """

    xa = np.asarray(x, dtype=np.float64)
    if xa.ndim != 2 or len(xa) < 2:
        raise ValueError(f"x has shape {xa.shape}; expected (samples >= 2, features).")
    names = _names(xa.shape[1], feature_names)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.corrcoef(xa, rowvar=False).reshape(xa.shape[1], xa.shape[1])
    strong = [
        [names[i], names[j], float(matrix[i, j])]
        for i in range(len(names)) for j in range(i + 1, len(names))
        if abs(matrix[i, j]) > 0.7
    ]
    series = heatmap("Correlation Matrix", matrix, names)
    return PlotData(
        "feature_correlation", "Feature Correlation Matrix",
        [dataclasses.replace(series, style={"colorscale": "RdBu_r", "zmin": -1.0, "zmax": 1.0})],
        PlotConfig("Features", "Features", show_legend=False, show_grid=False,
                   custom_options={"labels": names}),
        metrics={"strong_correlations": strong, "num_features": len(names)},
    )


def partial_dependence(
    trainer: Any, x: Any, features: Any = None, feature_names: Any = None,
    grid_resolution: int = 20, target: int = 0,
) -> PlotData:
    """Go-Metal's partial dependence: the mean prediction as one feature sweeps its range.

    ``sklearn.inspection.partial_dependence`` (``method="brute"``) over the trained model:
    for each grid value the feature's column of every sample of `x` is set to it and the
    predictions are averaged (probabilities for classification).

    Args:
        trainer: A trained `Trainer` of a model over flat features.
        x: Samples ``(n, features)``.
        features: Column indices (all by default).
        feature_names: Names of the columns.
        grid_resolution: Grid points per feature (sklearn's percentiles 5 to 95).
        target: Classification with more than two classes: the class whose probability is
            shown (two classes: class 1's).

    Returns:
        A ``partial_dependence`` `PlotData`: a line per feature, ``x`` the grid values and
        ``y`` the mean prediction; ``metrics`` holds each feature's effect range.
    """
    from sklearn.inspection import partial_dependence as sk_partial_dependence


    xa = np.asarray(x, dtype=np.float32)
    names = _names(xa.shape[1], feature_names)
    columns = list(range(xa.shape[1])) if features is None else [int(f) for f in features]
    estimator, series, ranges = as_estimator(trainer), [], {}
    for column in columns:
        result = sk_partial_dependence(estimator, xa, [column], grid_resolution=grid_resolution,
                                       method="brute", kind="average")
        average = result["average"]
        effect = average[target if len(average) > 1 else 0]
        series.append(line(names[column], result["grid_values"][0], effect))
        ranges[names[column]] = float(effect.max() - effect.min())
    return PlotData(
        "partial_dependence", f"Partial Dependence - {trainer.model.name}", series,
        PlotConfig("Feature Value", "Partial Dependence"), trainer.model.name,
        {"effect_range": ranges},
    )


def draw(plot: PlotData) -> Any:
    """A matplotlib ``Figure`` (Agg) of any `PlotData`, drawn from its series alone.

    Example:
        >>> from gometal_keras.reporting.plotdata import PlotData, line
        >>> fig = draw(PlotData("learning_curve", "t", [line("loss", [1, 2], [0.5, 0.3])]))
        >>> len(fig.axes[0].get_lines())
        1
    """
    require_matplotlib()
    fig, (ax,) = _figure(plot.title)
    config = plot.config
    ax.set(xscale=config.x_axis_scale, yscale=config.y_axis_scale)  # first: it resets ticks
    for series in plot.series:
        xs, ys, style = series.xs(), series.ys(), series.style
        if series.type == "line":
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=series.name,
                    ls="--" if style.get("line_style") == "dashed" else "-")
        elif series.type == "scatter":
            ax.scatter(xs, ys, s=12, alpha=0.7, label=series.name)
        elif series.type == "histogram":
            ax.stairs(ys, np.r_[xs - style["width"] / 2, xs[-1] + style["width"] / 2],
                      label=series.name)
        elif series.type == "fill":
            ax.fill(xs, ys, alpha=style.get("alpha", 0.3), label=series.name)
        elif series.type == "bar":
            ax.barh(ys, xs, label=series.name)
            ax.set_yticks(ys, [p.label for p in series.data])
            ax.invert_yaxis()
        elif series.type == "errorbar":
            bars = next(s for s in plot.series if s.type == "bar")
            ax.errorbar(bars.xs(), ys, xerr=xs, fmt="none", color="black", label=series.name)
        elif series.type == "heatmap":
            size = int(max(xs.max(), ys.max())) + 1
            grid = np.full((size, size), np.nan)
            for p in series.data:
                grid[p.y, p.x] = np.nan if p.z is None else p.z
            image = ax.imshow(grid, cmap="RdBu_r", vmin=style.get("zmin"), vmax=style.get("zmax"))
            fig.colorbar(image, ax=ax, shrink=0.8)
            labels = config.custom_options.get("labels")
            if labels:
                ax.set_xticks(range(size), labels, rotation=90)
                ax.set_yticks(range(size), labels)
    ax.set(xlabel=config.x_axis_label, ylabel=config.y_axis_label)
    if config.x_axis_label == "Epoch":
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if config.show_grid:
        ax.grid(True, alpha=0.3)
    if config.show_legend and len(plot.series) > 1:
        ax.legend(fontsize="small")
    return fig


def save_plot(
    plot: PlotData, folder: str | os.PathLike[str], name: str | None = None,
    sidecar_url: str | None = None, timeout: float = 10.0,
) -> list[Path]:
    """Write `plot` as ``folder/NAME.png`` and Go-Metal's ``folder/NAME.json``; push it to a
    sidecar only when `sidecar_url` is given.

    Args:
        plot: A `PlotData`.
        folder: Where to write (created).
        name: The file name; the plot type by default.
        sidecar_url: A Go-Metal sidecar's base URL (`plotdata.push_plot_data`); None sends
            nothing.
        timeout: Seconds to wait for the sidecar.

    Returns:
        The PNG and JSON files written.
    """

    if sidecar_url is not None:
        sidecar_endpoint(sidecar_url, timeout)  # a bad URL refused before anything is written
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or plot.plot_type
    draw(plot).savefig(folder / f"{name}.png", dpi=110)
    written = [folder / f"{name}.png", write_plot_data(plot, folder / f"{name}.json")]
    if sidecar_url is not None:
        push_plot_data(plot, sidecar_url, timeout)
    return written
