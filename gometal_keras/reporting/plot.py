"""Plots of a comparison: loss per epoch and time per epoch of both phases, side by side.

Needs matplotlib, the optional extra ``plot`` (``pip install 'gometal_keras[plot]'``). It
draws on a figure of its own with the non-interactive Agg canvas: no window opens, nothing
is shown, and matplotlib's global state (pyplot, the default backend) is left alone. It
only reads `TrainingRun` records.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from gometal_keras.reporting.compare import Comparison
from gometal_keras.reporting.text import label_for
from gometal_keras.training.record import TrainingRun

#: File types `plot_comparison` writes, by suffix.
FORMATS = (".png", ".svg", ".pdf")
#: What to install when matplotlib is missing.
INSTALL_HINT = "pip install 'gometal_keras[plot]'"


def require_matplotlib() -> None:
    """Raise ImportError naming the ``plot`` extra when matplotlib is not installed.

    Example:
        >>> require_matplotlib()  # silent when matplotlib is installed
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(f"Plotting needs matplotlib; install it with {INSTALL_HINT}.") from None


def check_plot_path(path: str | os.PathLike[str]) -> Path:
    """Return `path` as a Path if it names a writable PNG, SVG or PDF file; else ValueError.

    Example:
        >>> check_plot_path("curves.png").suffix
        '.png'
    """
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path} has no image suffix; expected one of {', '.join(FORMATS)}.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"The folder {folder} does not exist; create it or choose another path.")
    return path


def _labels(runs: Sequence[TrainingRun]) -> list[str]:
    labels = [label_for(run.precision) for run in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({i + 1})" for i, label in enumerate(labels)]
    return labels


def plot_runs(
    runs: Sequence[TrainingRun], path: str | os.PathLike[str], title: str | None = None
) -> Path:
    """Draw loss per epoch (left) and time per epoch in ms (right) of `runs` into `path`.

    Args:
        runs: The runs to draw, e.g. ``[fp32_run, mixed_run]``.
        path: The image to write (``.png``, ``.svg`` or ``.pdf``); its folder must exist.
        title: Figure title; default names the device of the first run.

    Returns:
        The path written.

    Raises:
        ImportError: If matplotlib is missing (the message names the ``plot`` extra).
        ValueError: If `runs` is empty or `path` is not a writable image path.

    Example:
        >>> import tempfile
        >>> a = TrainingRun("float32", [2.3, 1.2, 0.8], [0.30, 0.05, 0.05])
        >>> b = TrainingRun("mixed_bfloat16", [2.3, 1.3, 0.8], [0.40, 0.04, 0.04])
        >>> plot_runs([a, b], Path(tempfile.mkdtemp()) / "runs.png").suffix
        '.png'
    """
    if not runs:
        raise ValueError("runs is empty; expected at least one TrainingRun to plot.")
    path = check_plot_path(path)
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, time_ax = fig.subplots(1, 2)
    for run, label in zip(runs, _labels(runs), strict=True):
        epochs = list(range(1, run.epochs_run + 1))
        loss_ax.plot(epochs, run.losses, marker="o", markersize=3, label=label)
        if run.val_losses:
            loss_ax.plot(
                epochs[: len(run.val_losses)], run.val_losses, ls="--", label=f"{label} validation"
            )
        ms = [s * 1000.0 for s in run.epoch_seconds]
        time_ax.plot(range(1, len(ms) + 1), ms, marker="o", markersize=3, label=label)
    loss_ax.set(title="Training loss per epoch", xlabel="epoch", ylabel="loss")
    time_ax.set(title="Time per epoch (epoch 1 includes compilation)", xlabel="epoch", ylabel="ms")
    times = [s for run in runs for s in run.epoch_seconds]
    if times and min(times) > 0:
        time_ax.set_yscale("log")  # epoch 1 (compilation) can be 100x the others
    for ax in (loss_ax, time_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title or f"FP32 vs mixed precision on {runs[0].device}")
    fig.savefig(path, dpi=120)
    return path


def comparison_title(comparison: Comparison) -> str:
    """The default title of a comparison's plot: the figure every report prints.

    Example:
        >>> from gometal_keras.reporting.compare import compare_runs
        >>> a = TrainingRun("float32", [0.4], [1.0], device="CPU")
        >>> comparison_title(compare_runs(a, TrainingRun("float32", [0.4], [2.0])))
        'CPU: speedup -50.0%'
    """
    return f"{comparison.baseline.device}: speedup {comparison.headline()}"


def plot_comparison(
    comparison: Comparison, path: str | os.PathLike[str], title: str | None = None
) -> Path:
    """Draw a `Comparison`'s baseline and candidate runs into `path` (see `plot_runs`).

    Args:
        comparison: From `compare_runs`.
        path: The image to write (``.png``, ``.svg`` or ``.pdf``).
        title: Figure title; default includes the measured speedup.

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> from gometal_keras.reporting.compare import compare_runs
        >>> fp32_run = TrainingRun("float32", [2.3, 0.8], [0.30, 0.10], device="CPU")
        >>> mixed_run = TrainingRun("mixed_bfloat16", [2.3, 0.8], [0.40, 0.05], device="CPU")
        >>> out = Path(tempfile.mkdtemp()) / "comparison.svg"
        >>> path = plot_comparison(compare_runs(fp32_run, mixed_run), out)
        >>> "speedup +100.0%" in path.read_text()
        True
    """
    if title is None:
        title = comparison_title(comparison)
    return plot_runs([comparison.baseline, comparison.candidate], path, title)
