"""Go-Metal's `PlotData`: one plot as JSON, for files and for its sidecar dashboard.

Go-Metal (`training/visualization.go`) describes every plot in one JSON shape, which its
plotting client (`training/plotting_service.go`) sends to the sidecar dashboard
(tsawler/go-metal-sidecar-plots) with ``POST {url}/api/plot``. `PlotData` is that shape,
field for field: ``plot_type``, ``title``, ``timestamp`` (RFC 3339), ``model_name``,
``series`` (each ``name``, ``type``, ``data`` points ``x``, ``y`` and optional ``z``,
``label``, ``color``; optional ``style``), ``config`` (axis labels and scales, legend, grid,
size, ``interactive``, optional ``custom_options``) and optional ``metrics``; empty optional
fields are left out as Go's ``omitempty`` leaves them. `write_plot_data` writes it;
`push_plot_data` sends it, only when called with a URL (nothing is ever sent by default),
with the standard library's urllib and a timeout. `report_plot_data` gives the PlotData
of every plot of an `EvaluationReport`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gometal_keras.core.jsondata import json_safe
from gometal_keras.training.evaluation import EvaluationReport

#: Go-Metal's 17 plot types (its ``PlotType`` strings), by this package's figure name.
PLOT_TYPES = {
    "training_curves": "training_curves",
    "learning_rate": "learning_rate_schedule",
    "roc": "roc_curve",
    "precision_recall": "precision_recall",
    "confusion_matrix": "confusion_matrix",
    "parameter_distribution": "parameter_distribution",
    "gradient_histogram": "gradient_histogram",
    "activation_pattern": "activation_pattern",
    "scatter": "regression_scatter",
    "residuals": "residual_plot",
    "qq": "qq_plot",
    "feature_importance": "feature_importance",
    "learning_curve": "learning_curve",
    "validation_curve": "validation_curve",
    "prediction_interval": "prediction_interval",
    "feature_correlation": "feature_correlation",
    "partial_dependence": "partial_dependence",
}
#: The series types Go-Metal's sidecar draws.
SERIES_TYPES = ("line", "scatter", "histogram", "heatmap", "bar", "fill", "errorbar")


def _omit_empty(data: dict[str, Any], optional: Sequence[str]) -> dict[str, Any]:
    """`data` without the `optional` keys whose value is empty (Go's ``omitempty``)."""
    return {k: v for k, v in data.items() if k not in optional or v not in (None, "", {}, [])}


@dataclasses.dataclass(frozen=True)
class Point:
    """One data point (Go-Metal's ``DataPoint``): ``z`` for heatmaps, ``label`` for names."""

    x: Any
    y: Any
    z: Any = None
    label: str = ""
    color: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The point as Go-Metal's JSON object."""
        data = {"x": self.x, "y": self.y, "z": self.z, "label": self.label, "color": self.color}
        return _omit_empty(data, ("z", "label", "color"))


@dataclasses.dataclass(frozen=True)
class Series:
    """One data series (Go-Metal's ``SeriesData``).

    Attributes:
        name: The legend's name.
        type: One of `SERIES_TYPES`.
        data: Its points.
        style: Drawing hints (``color``, ``line_style``, ``alpha``, ...).
    """

    name: str
    type: str
    data: tuple[Point, ...]
    style: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in SERIES_TYPES:
            raise ValueError(
                f"Series type {self.type!r} is not Go-Metal's; expected one of "
                f"{', '.join(SERIES_TYPES)}."
            )
        object.__setattr__(self, "data", tuple(self.data))

    def xs(self) -> np.ndarray:
        """The points' ``x`` values."""
        return np.array([p.x for p in self.data])

    def ys(self) -> np.ndarray:
        """The points' ``y`` values."""
        return np.array([p.y for p in self.data])

    def to_dict(self) -> dict[str, Any]:
        """The series as Go-Metal's JSON object."""
        data = {"name": self.name, "type": self.type,
                "data": [p.to_dict() for p in self.data], "style": dict(self.style)}
        return _omit_empty(data, ("style",))


@dataclasses.dataclass(frozen=True)
class PlotConfig:
    """How to draw a plot (Go-Metal's ``PlotConfig``)."""

    x_axis_label: str = ""
    y_axis_label: str = ""
    z_axis_label: str = ""
    x_axis_scale: str = "linear"
    y_axis_scale: str = "linear"
    show_legend: bool = True
    show_grid: bool = True
    width: int = 800
    height: int = 600
    interactive: bool = True
    custom_options: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as Go-Metal's JSON object."""
        data = dataclasses.asdict(self)
        return _omit_empty(data, ("z_axis_label", "custom_options"))


@dataclasses.dataclass(frozen=True)
class PlotData:
    """One plot in Go-Metal's JSON form (``PlotData``).

    Attributes:
        plot_type: Go-Metal's plot type string (a value of `PLOT_TYPES`).
        title: The plot's title.
        series: Its data series.
        config: How it is drawn.
        model_name: The model it shows.
        metrics: Figures of the plot (e.g. ``{"sample_size": 40}``).
        timestamp: When it was made (UTC, now by default).

    Example:
        >>> p = PlotData("learning_curve", "Loss", [Series("loss", "line", [Point(1, 0.5)])])
        >>> d = p.to_dict()
        >>> d["plot_type"], d["series"][0]["data"], "metrics" in d
        ('learning_curve', [{'x': 1, 'y': 0.5}], False)
    """

    plot_type: str
    title: str
    series: tuple[Series, ...]
    config: PlotConfig = dataclasses.field(default_factory=PlotConfig)
    model_name: str = "model"
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    timestamp: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
    )

    def __post_init__(self) -> None:
        if self.plot_type not in PLOT_TYPES.values():
            raise ValueError(
                f"plot_type {self.plot_type!r} is not one of Go-Metal's 17 plot types; "
                f"expected one of {', '.join(sorted(set(PLOT_TYPES.values())))}."
            )
        object.__setattr__(self, "series", tuple(self.series))

    def series_named(self, name: str) -> Series:
        """The series called `name` (KeyError naming the ones there are)."""
        for series in self.series:
            if series.name == name:
                return series
        raise KeyError(f"No series {name!r}; the plot has {[s.name for s in self.series]}.")

    def to_dict(self) -> dict[str, Any]:
        """The plot as Go-Metal's JSON object (strict JSON: non-finite numbers are null)."""
        data = {
            "plot_type": self.plot_type,
            "title": self.title,
            "timestamp": self.timestamp.isoformat(),
            "model_name": self.model_name,
            "series": [s.to_dict() for s in self.series],
            "config": self.config.to_dict(),
            "metrics": dict(self.metrics),
        }
        return json_safe(_omit_empty(data, ("metrics",)))

    def to_json(self) -> str:
        """`to_dict` as a JSON text (Go-Metal's ``ToJSON``)."""
        return json.dumps(self.to_dict(), indent=1, allow_nan=False)


def line(name: str, xs: Any, ys: Any, kind: str = "line", **style: Any) -> Series:
    """A series of `kind` through the points ``(xs[i], ys[i])`` (plain Python numbers).

    Example:
        >>> line("loss", [1, 2], np.array([0.5, 0.25])).to_dict()["data"][1]
        {'x': 2, 'y': 0.25}
    """
    xs, ys = np.asarray(xs).tolist(), np.asarray(ys).tolist()
    return Series(name, kind, [Point(a, b) for a, b in zip(xs, ys, strict=True)], style)


def heatmap(name: str, matrix: Any, labels: Sequence[str] | None = None) -> Series:
    """A heatmap series: one point per cell, ``x`` the column, ``y`` the row, ``z`` the value.

    Example:
        >>> heatmap("m", [[1, 2]]).to_dict()["data"][1]
        {'x': 1, 'y': 0, 'z': 2}
    """
    matrix = np.asarray(matrix)
    points = []
    for (row, col), value in np.ndenumerate(matrix):
        label = f"{labels[row]} / {labels[col]}" if labels is not None else ""
        z = value.item() if np.isfinite(value) else None  # JSON null, as Go-Metal cannot say NaN
        points.append(Point(col, row, z, label))
    return Series(name, "heatmap", points)


def write_plot_data(plot: PlotData, path: str | os.PathLike[str]) -> Path:
    """Write `plot` as Go-Metal's PlotData JSON to `path` and return the path.

    Raises:
        ValueError: The folder of `path` does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"The folder {path.parent} does not exist; create it or choose another.")
    path.write_text(plot.to_json() + "\n", encoding="utf-8")
    return path


def sidecar_endpoint(url: str, timeout: float) -> str:
    """The sidecar's ``/api/plot`` address for its base `url`, both arguments checked.

    Raises:
        ValueError: `url` is not an http(s) URL or `timeout` is not a positive number.

    Example:
        >>> sidecar_endpoint("http://localhost:8080/", 10)
        'http://localhost:8080/api/plot'
    """
    parts = urllib.parse.urlsplit(url if isinstance(url, str) else "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"url is {url!r}; expected the sidecar's http(s) base URL.")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout is {timeout!r}; expected a positive number of seconds.")
    return url.rstrip("/") + "/api/plot"


def push_plot_data(plot: PlotData, url: str, timeout: float = 10.0) -> dict[str, Any]:
    """Send `plot` to a Go-Metal sidecar dashboard: ``POST {url}/api/plot``, JSON both ways.

    Args:
        plot: The plot.
        url: The sidecar's base URL, e.g. ``"http://localhost:8080"`` (Go-Metal's default).
        timeout: Seconds to wait for the sidecar, connection and answer together.

    Returns:
        The sidecar's answer (Go-Metal's ``PlottingResponse``: ``success``, ``message``,
        ``plot_id``, ``plot_url``, ``view_url``, ...).

    Raises:
        ValueError: `url` is not an http(s) URL or `timeout` is not positive; the sidecar
            answered with an error status, with something other than a JSON object, or
            with ``success`` false.
        ConnectionError: The sidecar could not be reached or did not answer in `timeout`.
    """
    endpoint = sidecar_endpoint(url, timeout)
    request = urllib.request.Request(
        endpoint,
        data=json.dumps(plot.to_dict(), allow_nan=False).encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "gometal-keras"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ConnectionError(
            f"The plot sidecar at {endpoint} could not be reached or did not answer in "
            f"{timeout} s ({reason})."
        ) from None
    try:
        answer = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        answer = None
    if status != 200 or not isinstance(answer, dict) or answer.get("success") is False:
        message = answer.get("message") if isinstance(answer, dict) else body[:80]
        raise ValueError(
            f"The plot sidecar at {endpoint} refused the {plot.plot_type} plot "
            f"(HTTP {status}: {message!r}); expected HTTP 200 with a JSON success answer."
        )
    return answer


def _report_series(report: EvaluationReport) -> dict[str, tuple[list[Series], PlotConfig]]:
    """The series and configuration of each plot of `report`, by figure name."""
    plots: dict[str, tuple[list[Series], PlotConfig]] = {}
    run = report.run
    if run is not None and run.losses:
        epochs = np.arange(1, run.epochs_run + 1)
        series = [line("Training Loss", epochs, run.losses)]
        if run.val_losses:
            series.append(line("Validation Loss", epochs[: len(run.val_losses)], run.val_losses,
                               line_style="dashed"))
        for name, values in run.metrics.items():
            if name != "learning_rate" and values:
                series.append(line(f"Training {name}", epochs[: len(values)], values))
        plots["training_curves"] = (series, PlotConfig("Epoch", "Loss / Metric"))
        rates = run.metrics.get("learning_rate")
        if rates:
            series = [line("Learning Rate", np.arange(1, len(rates) + 1), rates)]
            plots["learning_rate"] = (series, PlotConfig("Epoch", "Learning Rate",
                                                         y_axis_scale="log", height=400))
    if report.problem_type == "classification":
        names = [c["name"] for c in report.per_class]
        plots["confusion_matrix"] = (
            [heatmap("Confusion Matrix", report.confusion, names)],
            PlotConfig("Predicted Class", "True Class", show_legend=False, show_grid=False,
                       width=600, custom_options={"class_names": names}),
        )
        roc = [line(f"ROC {c['name']}", c["fpr"], c["tpr"]) for c in report.roc]
        roc.append(line("Random Classifier", [0, 1], [0, 1], line_style="dashed"))
        plots["roc"] = (roc, PlotConfig("False Positive Rate", "True Positive Rate", width=600))
        pr = [line(f"PR {c['name']}", c["recall"], c["precision"]) for c in report.pr]
        plots["precision_recall"] = (pr, PlotConfig("Recall", "Precision", width=600))
        return plots
    y_true, y_pred = np.array(report.y_true), np.array(report.y_pred)
    lo, hi = float(min(y_true.min(), y_pred.min())), float(max(y_true.max(), y_pred.max()))
    plots["scatter"] = (
        [line("Predictions", y_true, y_pred, "scatter"),
         line("Perfect Prediction", [lo, hi], [lo, hi], line_style="dashed")],
        PlotConfig("True Values", "Predicted Values", width=600),
    )
    plots["residuals"] = (
        [line("Residuals", y_pred, y_true - y_pred, "scatter"),
         line("Zero Line", [float(y_pred.min()), float(y_pred.max())], [0, 0])],
        PlotConfig("Predicted Values", "Residuals", width=600),
    )
    from scipy import stats

    (theory, ordered), (slope, intercept, _) = stats.probplot(y_true - y_pred, dist="norm")
    plots["qq"] = (
        [line("Sample Quantiles", theory, ordered, "scatter"),
         line("Normal Reference Line", theory, slope * theory + intercept)],
        PlotConfig("Theoretical Quantiles", "Sample Quantiles", width=600),
    )
    return plots


def report_plot_data(report: EvaluationReport, model_name: str = "model") -> dict[str, PlotData]:
    """Go-Metal's PlotData of every plot `evalplots.report_figures` draws of `report`.

    Args:
        report: An evaluation report.
        model_name: The name the dashboard shows.

    Returns:
        PlotData by figure name (``roc``, ``confusion_matrix``, ...), the same names and
        order as `report_figures`; ``metrics`` holds the report's scalar metrics.

    Example:
        >>> from gometal_keras.training.evaluation import regression_report
        >>> r = regression_report(np.array([1.0, 2.2, 2.9]), [1.0, 2.0, 3.0])
        >>> [p.plot_type for p in report_plot_data(r).values()]
        ['regression_scatter', 'residual_plot', 'qq_plot']
    """
    titles = {
        "training_curves": "Training Curves", "learning_rate": "Learning Rate Schedule",
        "confusion_matrix": "Confusion Matrix", "roc": "ROC Curve",
        "precision_recall": "Precision-Recall Curve", "scatter": "Regression Scatter Plot",
        "residuals": "Residual Plot", "qq": "Q-Q Plot",
    }
    return {
        name: PlotData(PLOT_TYPES[name], f"{titles[name]} - {model_name}", series, config,
                       model_name, dict(report.metrics))
        for name, (series, config) in _report_series(report).items()
    }
