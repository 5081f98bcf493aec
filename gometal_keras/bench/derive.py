"""Step 3 of a benchmark run: the JSON ``results`` rows, derived from the measurements.

Per row: the work counts of its config, the roofline floor of the precision that ran
(for ``auto``, the one the Trainer chose; ``float32-full`` with its own matrix rate),
TFLOP/s and the ratio to the floor; then, across rows, the speedups of each row against
the same config and runner under ``float32`` and ``float32-full``. The formulas are
those of `gometal_keras.bench`.
"""

from __future__ import annotations

import math
from typing import Any

from gometal_keras.bench import configs as cfgs
from gometal_keras.bench import roofline
from gometal_keras.bench.measure import Measurement
from gometal_keras.bench.planning import Settings
from gometal_keras.bench.precisions import FULL, policy_of
from gometal_keras.core.plan import AUTO, Precision

#: The ``speedup_vs_*`` keys and the precision each is measured against.
SPEEDUPS = (
    (Precision.FLOAT32.value, "speedup_vs_float32"),
    (FULL, "speedup_vs_float32_full"),
)


def _finite(x: Any) -> float | None:
    return x if isinstance(x, float) and math.isfinite(x) else None


def precision_run(m: Measurement) -> str:
    """The Trainer precision a row ran: the one chosen for ``auto`` (if it ran)."""
    p = m.cell.precision
    return m.timing.precision if p == AUTO and m.timing is not None else policy_of(p)


def floor_fields(m: Measurement, rates: roofline.Rates) -> dict[str, Any]:
    """Work counts and the roofline floor of a row, from its config and precision run."""
    builder, ran = m.cell.config.builder(), precision_run(m)
    flops = cfgs.train_flops_per_step(builder)
    nbytes = cfgs.bytes_per_step(builder, ran)
    key = FULL if m.cell.precision == FULL else ran
    rate = rates.flops.get(key) or rates.flops.get(Precision.FLOAT32.value)
    return dict(
        flops_per_step=flops,
        bytes_per_step=nbytes,
        floor_seconds=roofline.floor_seconds(flops, nbytes, rate, rates.bandwidth),
        bound=roofline.bound(flops, nbytes, rate, rates.bandwidth),
        precision_run=ran,
    )


def timing_fields(m: Measurement, flops: int, floor: float) -> dict[str, Any]:
    """The measured figures of a row (None and empty where the cell failed)."""
    t = m.timing
    if t is None:
        return dict(
            seconds_per_step=None,
            epoch_seconds=[],
            tflops=None,
            ratio_to_floor=None,
            loss=None,
            detail="",
        )
    return dict(
        seconds_per_step=t.seconds_per_step,
        epoch_seconds=t.epoch_seconds,
        tflops=flops / t.seconds_per_step / 1e12,
        ratio_to_floor=t.seconds_per_step / floor,
        loss=_finite(t.loss),
        detail=t.detail,
    )


def row(m: Measurement, rates: roofline.Rates, settings: Settings) -> dict[str, Any]:
    """One ``results`` row, without the speedups (`add_speedups` needs every row)."""
    cell = m.cell
    out: dict[str, Any] = dict(
        config=cell.config.name,
        precision=cell.precision,
        runner=cell.runner,
        steps=cell.config.steps,
        error=m.error,
    )
    out.update(floor_fields(m, rates))
    out.update(timing_fields(m, out["flops_per_step"], out["floor_seconds"]))
    out["loss_after_steps"] = (settings.warmup + settings.repeats) * cell.config.steps
    return out


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """Set each row's ``speedup_vs_*``: the same config and runner's base time / its own.

    Example:
        >>> rows = [dict(config="c", runner="r", precision=p, seconds_per_step=s)
        ...         for p, s in (("float32", 2.0), ("mixed_float16", 0.5))]
        >>> add_speedups(rows)
        >>> [(r["speedup_vs_float32"], r["speedup_vs_float32_full"]) for r in rows]
        [(None, None), (4.0, None)]
    """
    seconds = {(r["config"], r["runner"], r["precision"]): r["seconds_per_step"] for r in rows}
    for r in rows:
        mine = r["seconds_per_step"]
        for base, key in SPEEDUPS:
            ref = seconds.get((r["config"], r["runner"], base))
            r[key] = ref / mine if ref and mine and r["precision"] != base else None


def results(
    measurements: list[Measurement], rates: roofline.Rates, settings: Settings
) -> list[dict[str, Any]]:
    """Return the JSON ``results``: one row per measurement, in order, speedups included.

    Args:
        measurements: From `gometal_keras.bench.measure.measure_cells`.
        rates: The ceilings measured in the same run.
        settings: The epochs (for ``loss_after_steps``).

    Returns:
        The rows, with the keys `gometal_keras.bench` lists.
    """
    rows = [row(m, rates, settings) for m in measurements]
    add_speedups(rows)
    return rows
