"""Go-Metal's evaluation plots of an `EvaluationReport`, drawn with matplotlib to PNG.

Training curves (loss with validation loss, and the training metrics), the learning-rate
schedule, and then for classification the confusion matrix, ROC curves (one-vs-rest, with
the chance line) and precision-recall curves; for regression predicted-vs-true scatter,
residuals against predictions, and a normal Q-Q plot of the residuals (quantiles from
``scipy.stats.probplot``). Each is a figure of its own on the non-interactive Agg canvas;
pyplot and matplotlib's global state are left alone. It only reads the report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from gometal_keras.reporting.plot import require_matplotlib
from gometal_keras.training.evaluation import EvaluationReport


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
    for (i, j), count in np.ndenumerate(matrix):
        dark = count > matrix.max() / 2
        ax.text(j, i, str(count), ha="center", va="center", color="white" if dark else "black")
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


def plot_report(report: EvaluationReport, folder: str | os.PathLike[str]) -> list[Path]:
    """Write every plot of `report` as ``folder/NAME.png`` (the folder is created).

    Returns:
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in report_figures(report).items():
        fig.savefig(folder / f"{name}.png", dpi=110)
        written.append(folder / f"{name}.png")
    return written
