"""Step 3 of a benchmark run: the JSON ``results`` rows, derived from the measurements.

Per row: the work counts of its config, the roofline floor of the precision that ran
(for ``auto``, the one the Trainer chose; ``float32-full`` with its own matrix rate),
TFLOP/s and the ratio to the floor; then, across rows, the speedups of each row against
the same config and runner under ``float32`` and ``float32-full``, and the interleaved
ratios: each row's round times over the hand-written JAX loop's of the same rounds
(``vs_reference``), and ``fit``'s over the bare epochs' (``fit_over_epoch``). The
formulas are those of `gometal_keras.bench`.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from gometal_keras.bench import configs as cfgs
from gometal_keras.bench import roofline
from gometal_keras.bench.measure import Measurement
from gometal_keras.bench.planning import Settings
from gometal_keras.bench.precisions import AUTO, FULL, policy_of
from gometal_keras.core.plan import Precision

#: The runner every other row's ``vs_reference`` is taken against.
REFERENCE = "jax-reference"

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
            round_seconds=[],
            tflops=None,
            ratio_to_floor=None,
            call_overhead_seconds=None,
            predict_samples_per_s=None,
            loss=None,
            detail="",
        )
    samples = m.cell.config.samples
    return dict(
        seconds_per_step=t.seconds_per_step,
        epoch_seconds=t.epoch_seconds,
        round_seconds=t.round_seconds,
        tflops=flops / t.seconds_per_step / 1e12,
        ratio_to_floor=t.seconds_per_step / floor,
        call_overhead_seconds=t.call_overhead_seconds,
        predict_samples_per_s=samples / t.predict_seconds if t.predict_seconds else None,
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
    calls = settings.warmup + settings.repeats
    out["loss_after_steps"] = calls * settings.epochs * cell.config.steps
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


def round_ratio(mine: list[float], base: list[float]) -> dict[str, float] | None:
    """Median and 10th-90th percentiles of ``mine[r] / base[r]`` over paired rounds.

    Example:
        >>> round_ratio([1.1, 1.2, 1.0, 1.3], [1.0, 1.0, 1.0, 1.0])
        {'ratio': 1.15, 'p10': 1.03, 'p90': 1.27, 'rounds': 4}
        >>> round_ratio([], [1.0]) is None
        True
    """
    pairs = [a / b for a, b in zip(mine, base, strict=False) if b > 0]
    if not pairs:
        return None
    cuts = statistics.quantiles(pairs, n=10, method="inclusive") if len(pairs) > 1 else pairs * 9
    return dict(
        ratio=round(statistics.median(pairs), 4),
        p10=round(cuts[0], 4),
        p90=round(cuts[-1], 4),
        rounds=len(pairs),
    )


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Set each row's interleaved ratios: ``vs_reference`` (the hand-written JAX loop's
    rounds of the same config and precision) and, on ``gometal`` rows, ``fit_over_epoch``
    (the same Trainer's bare ``train_epoch`` rounds); None where there is no such row.

    Example:
        >>> rows = [dict(config="c", precision="p", runner=r, round_seconds=s)
        ...         for r, s in (("gometal", [2.2]), ("gometal-epoch", [2.0]),
        ...                      ("jax-reference", [2.0]))]
        >>> add_ratios(rows)
        >>> rows[0]["vs_reference"]["ratio"], rows[0]["fit_over_epoch"]["ratio"]
        (1.1, 1.1)
    """
    rounds = {(r["config"], r["precision"], r["runner"]): r["round_seconds"] for r in rows}
    for r in rows:
        key = (r["config"], r["precision"])
        ref = rounds.get((*key, REFERENCE))
        mine = r["round_seconds"]
        r["vs_reference"] = round_ratio(mine, ref) if ref and r["runner"] != REFERENCE else None
        bare = rounds.get((*key, "gometal-epoch"))
        r["fit_over_epoch"] = round_ratio(mine, bare) if bare and r["runner"] == "gometal" else None


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
    add_ratios(rows)
    return rows
