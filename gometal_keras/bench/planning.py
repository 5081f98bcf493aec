"""Step 1 of a benchmark run: what to measure (`Cell`) and what not, with why (`Skip`).

`make_plan` turns the command line's `Settings` and the device into a `BenchPlan`: the
configs (with ``--steps`` and ``--devices`` applied), the precisions that run here, the
(config, precision, runner) cells in the order they run, and the skipped ones, each with
its reason, in the order the JSON ``skipped`` list gives them.
"""

from __future__ import annotations

import argparse
import dataclasses

from gometal_keras.bench import configs as cfgs
from gometal_keras.bench.configs import BenchConfig
from gometal_keras.bench.precisions import FULL
from gometal_keras.bench.runners import RUNNERS
from gometal_keras.core.device import DeviceInfo

#: The wildcard of a skip that holds for every config, precision or runner.
ANY = "*"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the command line asked for (the JSON ``settings``, in its order).

    Attributes:
        quick: Small sizes for a CPU (`gometal_keras.bench.configs.configs`).
        steps: Steps per epoch for every config (None: each config's own).
        repeats: Timed rounds: one call of every session each (`gometal_keras.bench.measure`).
        warmup: Untimed calls of every session first.
        seed: Weights, dropout and data seed.
        configs: Config names, in order.
        precisions: Bench precision names, in order.
        runners: Runner names, in order.
        devices: Local devices to train the data-parallel runners over (None: one).
        epochs: Epochs per call (the first of each is not counted).
        predict: Also time one prediction over the data per session and round.
    """

    quick: bool
    steps: int | None
    repeats: int
    warmup: int
    seed: int
    configs: list[str]
    precisions: list[str]
    runners: list[str]
    devices: int | None = None
    epochs: int = 5
    predict: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        """Return the settings of parsed command-line arguments."""
        return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict:
        """Return the JSON ``settings``."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One (config, precision, runner) to measure."""

    config: BenchConfig
    precision: str
    runner: str


@dataclasses.dataclass(frozen=True)
class Skip:
    """A (config, precision, runner) not measured (`ANY` for all), and why."""

    config: str
    precision: str
    runner: str
    reason: str


@dataclasses.dataclass(frozen=True)
class BenchPlan:
    """What a run measures.

    Attributes:
        configs: The chosen configs by name, ``--steps`` and ``--devices`` applied.
        precisions: The precisions that run on this device, in order.
        cells: Every cell to measure, config by config, precision by precision.
        skipped: Every skipped cell or group, with its reason.
    """

    configs: dict[str, BenchConfig]
    precisions: tuple[str, ...]
    cells: tuple[Cell, ...]
    skipped: tuple[Skip, ...]


def chosen_configs(settings: Settings) -> dict[str, BenchConfig]:
    """The configs asked for; ``--devices N`` keeps the per-device batch (global x N).

    Example:
        >>> s = Settings(True, 4, 1, 0, 0, ["seed"], ["float32"], ["gometal"], devices=2)
        >>> c = chosen_configs(s)["seed"]
        >>> c.batch, c.steps
        (128, 4)
    """
    every = cfgs.configs(settings.quick)
    chosen = {name: every[name] for name in settings.configs}
    if settings.steps:
        chosen = {n: dataclasses.replace(c, steps=settings.steps) for n, c in chosen.items()}
    if settings.devices:
        batch = {n: c.batch * settings.devices for n, c in chosen.items()}
        chosen = {n: dataclasses.replace(c, batch=batch[n]) for n, c in chosen.items()}
    return chosen


def _device_precisions(precisions: list[str], device: DeviceInfo) -> tuple[list[str], list[Skip]]:
    """The precisions this device runs, and a skip for float32-full where there is no TF32."""
    if device.tf32 or FULL not in precisions:
        return list(precisions), []
    reason = "float32 already runs full precision here (no TF32)"
    return [p for p in precisions if p != FULL], [Skip(ANY, FULL, ANY, reason)]


def _machine_runners(names: list[str]) -> tuple[list[str], list[Skip]]:
    """The runners that can run on this machine at all, and a skip for each other."""
    reasons = {name: RUNNERS[name].available() for name in names}
    skips = [Skip(ANY, ANY, name, why) for name, why in reasons.items() if why]
    return [name for name, why in reasons.items() if not why], skips


def make_plan(settings: Settings, device: DeviceInfo, backend: str) -> BenchPlan:
    """Return every cell to measure and every skip, with its reason.

    Args:
        settings: What the command line asked for.
        device: The device (whether float32 runs as TF32 there).
        backend: The Keras backend in use.

    Returns:
        The `BenchPlan`.

    Example:
        >>> from gometal_keras.core.device import DeviceInfo
        >>> cpu = DeviceInfo("tensorflow", "cpu", "CPU", True, False, False)
        >>> s = Settings(True, None, 1, 0, 0, ["seed"], ["float32-full", "auto"],
        ...              ["gometal", "keras"])
        >>> plan = make_plan(s, cpu, "tensorflow")
        >>> [(c.precision, c.runner) for c in plan.cells]
        [('auto', 'gometal')]
        >>> [(k.precision, k.runner) for k in plan.skipped]
        [('float32-full', '*'), ('auto', 'keras')]
    """
    precisions, skipped = _device_precisions(settings.precisions, device)
    runners, machine_skips = _machine_runners(settings.runners)
    skipped += machine_skips
    configs = chosen_configs(settings)
    cells = []
    for cfg in configs.values():
        for p in precisions:
            for r in runners:
                why = RUNNERS[r].unsupported(p, backend, settings.devices)
                if why:
                    skipped.append(Skip(cfg.name, p, r, why))
                else:
                    cells.append(Cell(cfg, p, r))
    return BenchPlan(configs, tuple(precisions), tuple(cells), tuple(skipped))
