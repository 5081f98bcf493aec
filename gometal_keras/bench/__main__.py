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

SCHEMA = "gometal_keras.bench/1"
CONFIGS = tuple(cfgs.configs())


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
        type=_csv(CONFIGS),
        default=list(CONFIGS),
        help=f"comma list of {','.join(CONFIGS)} (default all)",
    )
    p.add_argument(
        "--precisions",
        type=_csv(PRECISIONS),
        default=list(PRECISIONS),
        help=f"comma list of {','.join(PRECISIONS)} "
        "(default all; float32-full only where the device uses TF32; auto: the Trainer only)",
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
        help="steps per timed epoch (default per config: seed 15, wide 64/8, cnn 32/4)",
    )
    p.add_argument("--repeats", type=int, default=None, help="timed epochs (default 10; quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up epochs (default 2; quick 1)")
    p.add_argument("--seed", type=int, default=42, help="weights, dropout and data seed")
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
        >>> args = parse_args(["--quick", "--configs", "seed,cnn"])
        >>> args.configs, args.repeats, args.warmup
        (['seed', 'cnn'], 3, 1)
    """
    p = argparse.ArgumentParser(
        prog="python -m gometal_keras.bench",
        description="Time the gometal Trainer against plain keras.Model.fit and PyTorch AMP, "
        "per model and precision, against a roofline floor measured in the same run.",
        epilog="--quick (for a small CPU): wide MLP scaled to 784-1024-512-10 at batch 256, "
        "CNN to 16/32/64 filters and dense 128 at batch 64, 1 warm-up epoch, 3 repeats, "
        "smaller ceiling measurements. float32-full runs only where float32 products would "
        "be TF32 (a recent NVIDIA GPU).",
    )
    _add_selection(p)
    _add_sizes(p)
    args = p.parse_args(argv)
    for name in ("steps", "repeats", "warmup", "devices"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            p.error(f"--{name} must be positive")
    args.repeats = args.repeats or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    return args


def run_bench(settings: Settings, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Plan, measure and derive every selected (config, precision, runner).

    Args:
        settings: What to run (`Settings.from_args` of `parse_args`).
        log: Called with each line of progress.

    Returns:
        The JSON-ready result (schema ``gometal_keras.bench/1``, see `gometal_keras.bench`).
    """
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    device = engines.current().describe_device()
    plan = planning.make_plan(settings, device, keras.backend.backend())
    log(f"measuring ceilings on {device.describe()} ...")
    rates = roofline.measure(
        list(plan.precisions), device.kind != "cpu", settings.quick, xla=device.xla
    )
    results = derive.results(measure.measure_cells(plan, settings, log), rates, settings)
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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["streaming"]:  # the image-folder configuration (gometal_keras.bench.streaming)
        from gometal_keras.bench import streaming

        return streaming.main(argv[1:])
    args = parse_args(argv)
    if args.max_batch:
        return _max_batch(args)
    settings = Settings.from_args(args)
    result = run_bench(settings, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    table.show(result)
    print(f"wall time {result['wall_seconds']:.1f} s")
    return 0


def _max_batch(args: argparse.Namespace) -> int:
    """``--max-batch``: search, write ``--json`` (schema ``gometal_keras.max-batch/1``), print."""
    from gometal_keras.bench import max_batch

    names = {precision.value for precision in Precision}  # not "auto", nor "float32-full"
    policies = [p for p in args.precisions if p in names]
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    rows = max_batch.max_batch(
        args.configs, policies, args.max_batch_limit, args.quick, log, start=args.max_batch_start
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
