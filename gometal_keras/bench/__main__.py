"""Command line of the benchmark; see `gometal_keras.bench` for what it measures."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import math
import platform
import shlex
import sys
import time
from typing import Any

import keras

from gometal_keras import engines
from gometal_keras.bench import configs as cfgs
from gometal_keras.bench import roofline, runners, table, torch_runner

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "float32-full", "auto")
SCHEMA = "gometal_keras.bench/1"


def _csv(valid: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in valid]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{bad or text!r}: expected some of {','.join(valid)}")
        return items

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m gometal_keras.bench",
        description="Time the gometal Trainer against plain keras.Model.fit and PyTorch AMP, "
        "per model and precision, against a roofline floor measured in the same run.",
        epilog="--quick (for a small CPU): wide MLP scaled to 784-1024-512-10 at batch 256, "
        "CNN to 16/32/64 filters and dense 128 at batch 64, 1 warm-up epoch, 3 repeats, "
        "smaller ceiling measurements. float32-full runs only where float32 products would "
        "be TF32 (a recent NVIDIA GPU).",
    )
    p.add_argument(
        "--configs",
        type=_csv(("seed", "wide", "cnn")),
        default=["seed", "wide", "cnn"],
        help="comma list of seed,wide,cnn (default all)",
    )
    p.add_argument(
        "--precisions",
        type=_csv(PRECISIONS),
        default=list(PRECISIONS),
        help="comma list of float32,mixed_float16,mixed_bfloat16,float32-full,auto "
        "(default all; float32-full only where the device uses TF32; auto: the Trainer only)",
    )
    p.add_argument(
        "--runners",
        type=_csv(runners.RUNNERS),
        default=list(runners.RUNNERS),
        help="comma list of gometal,keras,jax-reference,torch-eager,torch-compile (default "
        "all; jax-reference on the JAX backend, torch runners only on a CUDA GPU)",
    )
    p.add_argument(
        "--devices",
        type=int,
        default=None,
        help="train the gometal and keras runners data-parallel over N local devices, each "
        "with the config's batch (global batch = batch x N); default: one device",
    )
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
    args = p.parse_args(argv)
    for name in ("steps", "repeats", "warmup", "devices"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            p.error(f"--{name} must be positive")
    args.repeats = args.repeats or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    return args


def versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (nothing is imported)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("numpy", "keras", "tensorflow", "jax", "jaxlib", "torch", "gometal_keras"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _finite(x: float) -> float | None:
    return x if isinstance(x, float) and math.isfinite(x) else None


def run_bench(args: argparse.Namespace, log=print) -> dict[str, Any]:
    """Run every selected (config, precision, runner); return the JSON-ready result."""
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    device = engines.current().describe_device()
    gpu = device.kind != "cpu"
    skipped: list[dict[str, str]] = []
    precisions = []
    for p in args.precisions:
        if p == "float32-full" and not device.tf32:
            skipped.append(
                dict(
                    config="*",
                    precision=p,
                    runner="*",
                    reason="float32 already runs full precision here (no TF32)",
                )
            )
        else:
            precisions.append(p)
    torch_reason = (
        torch_runner.torch_cuda() if any(r.startswith("torch") for r in args.runners) else None
    )
    names = []
    for r in args.runners:
        if r.startswith("torch") and torch_reason:
            skipped.append(dict(config="*", precision="*", runner=r, reason=torch_reason))
        else:
            names.append(r)
    log(f"measuring ceilings on {device.describe()} ...")
    rates = roofline.measure(precisions, gpu, args.quick)
    all_cfgs = cfgs.configs(args.quick)
    chosen = {n: all_cfgs[n] for n in args.configs}
    if args.steps:
        chosen = {n: dataclasses.replace(c, steps=args.steps) for n, c in chosen.items()}
    if args.devices:  # same per-device batch as one device: the global batch grows
        chosen = {
            n: dataclasses.replace(c, batch=c.batch * args.devices) for n, c in chosen.items()
        }
    results, info = [], {}
    for name, cfg in chosen.items():
        b = cfg.builder()
        info[name] = dict(
            batch=cfg.batch,
            steps=cfg.steps,
            samples=cfg.samples,
            parameters=b.total_parameters,
            train_flops_per_step=cfgs.train_flops_per_step(b),
            layers=[f"{s.kind} {s.output_shape}" for s in b.layers],
            note=cfg.note,
        )
        data = runners.bench_data(cfg, args.seed)
        for p in precisions:
            flops = cfgs.train_flops_per_step(b)
            for r in names:
                why = runners.unsupported(r, p, keras.backend.backend(), args.devices)
                if why:
                    skipped.append(dict(config=name, precision=p, runner=r, reason=why))
                    continue
                log(f"{name} / {p} / {r} ...")
                row = dict(config=name, precision=p, runner=r, steps=cfg.steps, error=None)
                try:
                    t = runners.run(
                        r, cfg, p, data, args.warmup, args.repeats, args.seed, args.devices
                    )
                except Exception as exc:  # one failing cell must not lose the others
                    t = None
                    row.update(
                        error=f"{type(exc).__name__}: {exc}",
                        seconds_per_step=None,
                        epoch_seconds=[],
                        tflops=None,
                        ratio_to_floor=None,
                        loss=None,
                        detail="",
                    )
                    log(f"  failed: {row['error']}")
                # The floor of the precision that ran ("auto" rows: the one it chose).
                ran = runners.policy_of(p if p != "auto" or t is None else t.precision)
                rate = rates.flops.get(ran if p != "float32-full" else p) or rates.flops.get(
                    "float32"
                )
                nbytes = cfgs.bytes_per_step(b, ran)
                floor = roofline.floor_seconds(flops, nbytes, rate, rates.bandwidth)
                row.update(
                    flops_per_step=flops,
                    bytes_per_step=nbytes,
                    floor_seconds=floor,
                    bound="compute" if flops / rate >= nbytes / rates.bandwidth else "memory",
                    precision_run=ran,
                )
                if t is not None:
                    row.update(
                        seconds_per_step=t.seconds_per_step,
                        epoch_seconds=t.epoch_seconds,
                        tflops=flops / t.seconds_per_step / 1e12,
                        ratio_to_floor=t.seconds_per_step / floor,
                        loss=_finite(t.loss),
                        detail=t.detail,
                    )
                row["loss_after_steps"] = (args.warmup + args.repeats) * cfg.steps
                results.append(row)
    for row in results:
        for base, key in (
            ("float32", "speedup_vs_float32"),
            ("float32-full", "speedup_vs_float32_full"),
        ):
            ref = next(
                (
                    o["seconds_per_step"]
                    for o in results
                    if o["precision"] == base
                    and o["config"] == row["config"]
                    and o["runner"] == row["runner"]
                ),
                None,
            )
            mine = row["seconds_per_step"]
            row[key] = ref / mine if ref and mine and row["precision"] != base else None
    return dict(
        schema=SCHEMA,
        date=started.isoformat(timespec="seconds"),
        command=" ".join(
            shlex.quote(a) for a in [sys.executable, "-m", "gometal_keras.bench", *sys.argv[1:]]
        ),
        wall_seconds=time.perf_counter() - t0,
        backend=keras.backend.backend(),
        device=dataclasses.asdict(device) | {"description": device.describe()},
        versions=versions(),
        settings=dict(
            quick=args.quick,
            steps=args.steps,
            repeats=args.repeats,
            warmup=args.warmup,
            seed=args.seed,
            configs=args.configs,
            precisions=args.precisions,
            runners=args.runners,
            devices=args.devices,
        ),
        rates=rates.to_dict(),
        configs=info,
        results=results,
        skipped=skipped,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run_bench(args, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    table.show(result)
    print(f"wall time {result['wall_seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
