"""Step 2 of a benchmark run: every planned cell's session, called in interleaved rounds.

Per configuration, its data is made once (`runners.bench_data`) and every cell of it
(each precision and runner) gets its `Session` from its runner. Each session is called
``warmup`` times untimed (compilation), then ``repeats`` rounds follow: in each round
every session makes one call (``epochs`` epochs, as its user calls it) and one
prediction, in an order that rotates from round to round. So a drift of the machine hits
every runner alike, and the Trainer and a reference of the same round can be compared
round by round (`derive`). A runner that raises fails its own cell only: the
`Measurement` keeps the error, and the other sessions go on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from gometal_keras.bench.measurement import Call, RunRequest, Session, Timing, timing_of
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
        epochs=settings.epochs,
        seed=settings.seed,
        devices=settings.devices,
    )


@dataclasses.dataclass
class _Running:
    """A cell's session and what it measured so far (or the error that stopped it)."""

    cell: Cell
    session: Session | None = None
    calls: list[Call] = dataclasses.field(default_factory=list)
    predicts: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None

    def attempt(self, what: Callable[[], None], log: Callable[[str], None]) -> None:
        """Run `what`; an exception becomes this cell's error (logged), ending its session."""
        try:
            what()
        except Exception as exc:  # one failing cell must not lose the others
            self.error, self.session = f"{type(exc).__name__}: {exc}", None
            log(f"  {self.cell.config.name} / {self.cell.precision} / {self.cell.runner} "
                f"failed: {self.error}")  # fmt: skip

    def round(self, predict: bool, timed: bool) -> None:
        assert self.session is not None
        call = self.session.call()
        seconds = self.session.predict() if predict else None
        if timed:
            self.calls.append(call)
            if seconds is not None:
                self.predicts.append(seconds)

    def measurement(self) -> Measurement:
        if self.error is not None or self.session is None:
            return Measurement(self.cell, None, self.error or "no session")
        s = self.session
        timing = timing_of(self.calls, self.cell.config.steps, s.detail, s.precision, self.predicts)
        return Measurement(self.cell, timing)


def measure_config(
    cells: list[Cell], settings: Settings, log: Callable[[str], None] = print
) -> list[Measurement]:
    """Measure the cells of one configuration in interleaved rounds (see the module).

    Args:
        cells: Cells of one configuration.
        settings: The calls, epochs per call and seed.
        log: Called with a line of progress per session and round (and per failure).

    Returns:
        One `Measurement` per cell, in the cells' order.
    """
    data = bench_data(cells[0].config, settings.seed)
    running = [_Running(cell) for cell in cells]
    for r in running:
        log(f"{r.cell.config.name} / {r.cell.precision} / {r.cell.runner}: building ...")

        def prepare(r: _Running = r) -> None:
            r.session = RUNNERS[r.cell.runner].prepare(request_for(r.cell, data, settings))

        r.attempt(prepare, log)
    for i in range(settings.warmup + settings.repeats):
        timed = i >= settings.warmup
        live = [r for r in running if r.session is not None]
        shift = i % len(live) if live else 0
        for r in live[shift:] + live[:shift]:
            r.attempt(lambda r=r, t=timed: r.round(settings.predict, t), log)
        what = f"round {i - settings.warmup + 1}/{settings.repeats}" if timed else "warm-up"
        log(f"{cells[0].config.name}: {what} done")
    return [r.measurement() for r in running]


def measure_cells(
    plan: BenchPlan,
    settings: Settings,
    log: Callable[[str], None] = print,
    measured: Callable[[list[Measurement]], None] | None = None,
) -> list[Measurement]:
    """Measure every cell of the plan, configuration by configuration.

    Args:
        plan: The cells (from `planning.make_plan`).
        settings: The calls, epochs and seed.
        log: Called with lines of progress.
        measured: Called after each configuration with every measurement so far (so
            that a run cut short keeps them).

    Returns:
        One `Measurement` per cell, in the plan's order.
    """
    by_config: dict[str, list[Cell]] = {}
    for cell in plan.cells:
        by_config.setdefault(cell.config.name, []).append(cell)
    found = {}
    for cells in by_config.values():
        for m in measure_config(cells, settings, log):
            found[m.cell] = m
        if measured is not None:
            measured([found[cell] for cell in plan.cells if cell in found])
    return [found[cell] for cell in plan.cells]
