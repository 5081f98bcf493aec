"""Step 2 of a benchmark run: run each planned cell through its registered runner.

Each config's data is made once (`runners.bench_data`) and given to every runner of it.
A runner that raises fails its own cell only: the `Measurement` keeps the error, and
the remaining cells run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from gometal_keras.bench.measurement import RunRequest, Timing
from gometal_keras.bench.planning import BenchPlan, Cell, Settings
from gometal_keras.bench.runners import RUNNERS, bench_data


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What one cell gave: its `Timing`, or the error that stopped it.

    Attributes:
        cell: The (config, precision, runner) measured.
        timing: The runner's result, or None when it failed.
        error: ``"ExceptionType: message"`` when it failed, else None.
    """

    cell: Cell
    timing: Timing | None
    error: str | None = None


def request_for(cell: Cell, data: tuple[np.ndarray, np.ndarray], settings: Settings) -> RunRequest:
    """Return the `RunRequest` of a cell: its config and precision, the settings' epochs."""
    return RunRequest(
        config=cell.config,
        precision=cell.precision,
        data=data,
        warmup=settings.warmup,
        repeats=settings.repeats,
        seed=settings.seed,
        devices=settings.devices,
    )


def measure_cell(cell: Cell, request: RunRequest, log: Callable[[str], None]) -> Measurement:
    """Run one cell's runner; an exception becomes the measurement's error (and is logged)."""
    log(f"{cell.config.name} / {cell.precision} / {cell.runner} ...")
    try:
        return Measurement(cell, RUNNERS[cell.runner].run(request))
    except Exception as exc:  # one failing cell must not lose the others
        error = f"{type(exc).__name__}: {exc}"
        log(f"  failed: {error}")
        return Measurement(cell, None, error)


def measure_cells(
    plan: BenchPlan, settings: Settings, log: Callable[[str], None] = print
) -> list[Measurement]:
    """Measure every cell of the plan, in order.

    Args:
        plan: The cells (from `planning.make_plan`).
        settings: The epochs and seed.
        log: Called with a line of progress per cell (and per failure).

    Returns:
        One `Measurement` per cell, in the plan's order.
    """
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    out = []
    for cell in plan.cells:
        name = cell.config.name
        if name not in data:
            data[name] = bench_data(cell.config, settings.seed)
        out.append(measure_cell(cell, request_for(cell, data[name], settings), log))
    return out
