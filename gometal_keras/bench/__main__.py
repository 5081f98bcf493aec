"""Command line of the benchmark; see `gometal_keras.bench` for what it measures."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

import keras

from gometal_keras import engines
from gometal_keras.bench import configs as cfgs
from gometal_keras.bench import derive, measure, planning, roofline, table
from gometal_keras.bench.planning import Settings
from gometal_keras.bench.precisions import PRECISIONS
from gometal_keras.bench.runners import RUNNERS
from gometal_keras.core.plan import Precision
from gometal_keras.reporting import environment

SCHEMA = "gometal_keras.bench/2"
#: The named configurations: the models timed through ``fit``, ``streaming``,
#: ``apple-guards`` (what the Apple-GPU protections cost, `gometal_keras.bench.guards`) and
#: ``first-step`` (time to first step in fresh processes, `gometal_keras.bench.first_step`).
TRAINED = tuple(cfgs.configs())
CONFIGS = (*TRAINED, "streaming", "apple-guards", "first-step")


def _csv(valid: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in valid]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{bad or text!r}: expected some of {','.join(valid)}")
        return items

    return parse


def _add_selection(p: argparse.ArgumentParser) -> None:
    """The flags that choose the cells: configs, precisions, runners and devices."""
    p.add_argument(
        "--configs",
        "--config",
        type=_csv(CONFIGS),
        default=list(cfgs.DEFAULT),
        help=f"comma list of the named configurations {','.join(CONFIGS)} (default "
        f"{','.join(cfgs.DEFAULT)}; streaming: a CNN trained from a folder of PNGs, "
        "gometal_keras.bench.streaming; apple-guards: a trial's first run in a child process "
        "and the periodic CPU agreement check against their costs without, "
        "gometal_keras.bench.guards; first-step: time to first step in fresh processes "
        "against Keras fit, gometal_keras.bench.first_step)",
    )
    p.add_argument(
        "--precisions",
        type=_csv(PRECISIONS),
        default=None,
        help=f"comma list of {','.join(PRECISIONS)} (default all; float32-full only where "
        "the device uses TF32; auto: the Trainer only; streaming: float32,mixed_bfloat16)",
    )
    p.add_argument(
        "--runners",
        type=_csv(tuple(RUNNERS)),
        default=list(RUNNERS),
        help=f"comma list of {','.join(RUNNERS)} (default "
        "all; jax-reference on the JAX backend, torch runners only on a CUDA GPU)",
    )
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        help="train the gometal and keras runners data-parallel over N local devices, each "
        "with the config's batch (global batch = batch x N); default: one device",
    )


def _add_sizes(p: argparse.ArgumentParser) -> None:
    """The flags of sizes, epochs, seed and output."""
    p.add_argument("--quick", action="store_true", help="small sizes and few repeats, for a CPU")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="steps per epoch for every config (default each config's own: seed 15, wide "
        "64, wide-4096 16, cnn 32; quick: 15, 8, 4, 4)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed rounds, one call of every runner each, interleaved (default 20; quick 3)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per call, e.g. one Trainer.fit(x, y, epochs=N); the first of each call "
        "is not counted (default 5; quick 3)",
    )
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 1)")
    p.add_argument(
        "--no-predict",
        dest="predict",
        action="store_false",
        help="do not time one prediction over the data per runner and round",
    )
    p.add_argument("--seed", type=int, default=42, help="weights, dropout and data seed")
    p.add_argument("--images", type=int, default=None, help="streaming: PNGs (default 50000; "
                   "quick 2000)")  # fmt: skip
    p.add_argument("--folder", help="streaming: where the PNGs go (default a temporary folder)")
    p.add_argument("--json", metavar="PATH", help="write the full result as JSON here")
    p.add_argument(
        "--max-batch",
        action="store_true",
        help="instead of timing: the largest batch that trains per config and precision "
        "(growth then bisection, each probe a fresh process), with peak memory",
    )
    p.add_argument("--max-batch-limit", type=int, default=2**21, help="largest batch tried")
    p.add_argument(
        "--max-batch-start", type=int, default=0, help="grow from here (a known-good batch)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the benchmark's flags, filling the defaults of ``--repeats`` and ``--warmup``.

    Args:
        argv: The arguments (None: ``sys.argv[1:]``).

    Returns:
        The parsed flags; argparse exits with a message on a bad one.

    Example:
        >>> args = parse_args(["--quick", "--config", "seed,cnn"])
        >>> args.configs, args.repeats, args.epochs, args.warmup, args.predict
        (['seed', 'cnn'], 3, 3, 1, True)
    """
    p = argparse.ArgumentParser(
        prog="python -m gometal_keras.bench",
        description="Time the gometal Trainer's fit and predict as users call them, beside "
        "plain keras.Model.fit, a hand-written JAX loop and PyTorch AMP, interleaved round "
        "by round, per named configuration and precision, against a roofline floor measured "
        "in the same run.",
        epilog="--quick (for a small CPU): the wide MLPs scaled to 784-1024-512-10 at batch 256 "
        "and 1024, the CNN to 16/32/64 filters and dense 128 at batch 64, 3 rounds of 3-epoch "
        "calls, smaller ceiling measurements. float32-full runs only where float32 products "
        "would be TF32 (a recent NVIDIA GPU).",
    )
    _add_selection(p)
    _add_sizes(p)
    args = p.parse_args(argv)
    for name, least in (("steps", 1), ("repeats", 1), ("warmup", 0), ("devices", 1),
                        ("epochs", 2), ("images", 1)):  # fmt: skip
        value = getattr(args, name)
        if value is not None and value < least:
            p.error(f"--{name} must be at least {least}")
    args.repeats = args.repeats or (3 if args.quick else 20)
    args.epochs = args.epochs or (3 if args.quick else 5)
    args.warmup = args.warmup if args.warmup is not None else 1
    args.streaming_precisions = args.precisions or ["float32", "mixed_bfloat16"]
    args.precisions = args.precisions or list(PRECISIONS)
    return args


def run_bench(
    settings: Settings,
    log: Callable[[str], None] = print,
    partial: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Plan, measure and derive every selected (config, precision, runner).

    Args:
        settings: What to run (`Settings.from_args` of `parse_args`).
        log: Called with each line of progress.
        partial: Called with the result so far after each configuration.

    Returns:
        The JSON-ready result (schema ``gometal_keras.bench/2``, see `gometal_keras.bench`).
    """
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    device = engines.current().describe_device()
    plan = planning.make_plan(settings, device, keras.backend.backend())
    log(f"measuring ceilings on {device.describe()} ...")
    rates = roofline.measure(
        list(plan.precisions), device.kind != "cpu", settings.quick, xla=device.xla
    )

    def result(measurements: list[measure.Measurement]) -> dict[str, Any]:
        return _result(started, t0, device, settings, rates, plan, measurements)

    def so_far(measurements: list[measure.Measurement]) -> None:
        if partial is not None:
            partial(result(measurements))

    return result(measure.measure_cells(plan, settings, log, so_far))


def _result(
    started: datetime.datetime,
    t0: float,
    device: Any,
    settings: Settings,
    rates: roofline.Rates,
    plan: planning.BenchPlan,
    measurements: list[measure.Measurement],
) -> dict[str, Any]:
    """The JSON-ready result of `measurements` (schema `SCHEMA`)."""
    results = derive.results(measurements, rates, settings)
    return dict(
        schema=SCHEMA,
        date=started.isoformat(timespec="seconds"),
        command=" ".join(
            shlex.quote(a) for a in [sys.executable, "-m", "gometal_keras.bench", *sys.argv[1:]]
        ),
        wall_seconds=time.perf_counter() - t0,
        backend=keras.backend.backend(),
        device=environment.device_dict(device),
        versions=environment.versions(),
        settings=settings.to_dict(),
        rates=rates.to_dict(),
        configs={name: cfgs.describe(cfg) for name, cfg in plan.configs.items()},
        results=results,
        skipped=[dataclasses.asdict(s) for s in plan.skipped],
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write ``--json``, print the table; return the exit status 0."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.max_batch:
        return _max_batch(args)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    out: dict[str, Any] = {}
    trained = [name for name in args.configs if name in TRAINED]
    if trained:
        settings = Settings.from_args(argparse.Namespace(**{**vars(args), "configs": trained}))
        out = run_bench(settings, log, partial=lambda so_far: _write(args.json, so_far))
        table.show(out)
        print(f"wall time {out['wall_seconds']:.1f} s")
    if "streaming" in args.configs:
        from gometal_keras.bench import streaming

        out["streaming"] = streaming.run_all(args, log)
    if "apple-guards" in args.configs:
        from gometal_keras.bench import guards

        out["apple-guards"] = guards.run_all(args, log)
    if "first-step" in args.configs:
        from gometal_keras.bench import first_step

        out["first-step"] = first_step.run_all(args, log)
    _write(args.json, out)
    return 0


def _write(path: str | None, result: dict[str, Any]) -> None:
    """Write `result` as JSON to `path` (nothing when None)."""
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)


def _max_batch(args: argparse.Namespace) -> int:
    """``--max-batch``: search, write ``--json`` (schema ``gometal_keras.max-batch/1``), print."""
    from gometal_keras.bench import max_batch

    names = {precision.value for precision in Precision}  # not "auto", nor "float32-full"
    policies = [p for p in args.precisions if p in names]
    trained = [c for c in args.configs if c in TRAINED]
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    rows = max_batch.max_batch(
        trained, policies, args.max_batch_limit, args.quick, log, start=args.max_batch_start
    )
    if args.json:
        device = environment.device_dict(engines.current().describe_device())
        data = {"schema": "gometal_keras.max-batch/1", "device": device, "rows": rows,
                "versions": environment.versions(), "limit": args.max_batch_limit}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
    max_batch.show(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
