"""``python -m gometal_keras.bench --max-batch``: the largest batch that trains, per precision.

The seed says mixed precision's "lower memory usage allows larger batches"; this measures
it. For each configuration and precision, batches grow from the configuration's own batch
by `GROWTH` until one fails (or `--max-batch-limit` is reached), then bisection narrows the
gap between the largest that trained and the smallest that failed to `RESOLUTION`. Each
probe is a fresh process (``python -m gometal_keras.bench.max_batch CONFIG PRECISION
BATCH``): a failed allocation cannot leave memory or state behind for the next, and the
peak memory it prints (`gometal_keras.training.memory`) is that batch's alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

#: Batch growth per probe until the first failure, and the ratio bisection stops at.
GROWTH, RESOLUTION = 4, 1.2
#: Seconds a probe may take (a probe that outlasts it counts as a failure).
PROBE_TIMEOUT = 240.0
#: Training steps per probe (two epochs of this many steps: compile, then run).
PROBE_STEPS = 2


def search(
    trains: Callable[[int], bool], start: int, limit: int, good: int = 0
) -> tuple[int, int | None]:
    """The largest batch ``trains`` accepts: grow by `GROWTH`, then bisect to `RESOLUTION`.

    Args:
        trains: Whether a batch trains (a probe).
        start: The first batch tried.
        limit: The largest batch tried.
        good: A batch below `start` known to train (0: none); bisection starts from it
            when `start` fails.

    Returns:
        ``(largest that trained, smallest that failed)``: 0 when even `start` failed;
        None as the second when nothing up to `limit` failed.

    Example:
        >>> search(lambda b: b <= 3000, start=64, limit=10**6)[0] / 3000 > 1 / RESOLUTION
        True
    """
    bad = None
    batch = start
    while batch <= limit:
        if not trains(batch):
            bad = batch
            break
        good, batch = batch, batch * GROWTH
    if bad is None and good < limit and good:
        if trains(limit):
            return limit, None
        bad = limit
    while bad is not None and good and bad / good > RESOLUTION:
        middle = (good + bad) // 2
        if middle in (good, bad):
            break
        if trains(middle):
            good = middle
        else:
            bad = middle
    return good, bad


def probe(config: str, precision: str, batch: int, quick: bool = False) -> dict[str, Any]:
    """Train `config` at `batch` under `precision` in this process; what happened, as data.

    Example:
        >>> probe("seed", "float32", 8, quick=True)["ok"]
        True
    """
    import numpy as np

    from gometal_keras.bench.configs import configs
    from gometal_keras.core.config import TrainerConfig
    from gometal_keras.engines import current
    from gometal_keras.training.trainer import Trainer

    start = time.perf_counter()
    try:
        builder = configs(quick)[config].make(batch)
        # The fused epoch, with XLA where the device has it (as chosen on a CUDA GPU; Metal
        # and the torch backend have none, and would refuse every probe): no trials of
        # other plans at this size.
        xla = current().describe_device().xla
        settings = TrainerConfig(batch_size=batch, precision=precision, seed=0, jit_compile=xla,
                                 loop="fused", decision_cache="never")  # fmt: skip
        trainer = Trainer(builder, settings)
        rng = np.random.default_rng(0)
        shape = (batch * PROBE_STEPS, *trainer.model.input_shape[1:])
        x = np.empty(shape, np.float32)  # one random sample throughout: memory is what counts,
        x[...] = rng.standard_normal(shape[1:], dtype=np.float32)  # and huge batches fill fast
        y = rng.integers(0, trainer.model.output_shape[-1], len(x))
        run = trainer.fit(x, y, epochs=2)
    except Exception as error:  # an allocation failure, most likely: this batch does not train
        text = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        return {"batch": batch, "ok": False, "error": text, "seconds": time.perf_counter() - start}
    return {
        "batch": batch,
        "ok": True,
        "plan": trainer.plan.label(),
        "peak_memory_bytes": run.peak_memory_bytes,
        "memory_kind": run.memory_kind,
        "seconds": time.perf_counter() - start,
    }


def probe_process(config: str, precision: str, batch: int, quick: bool) -> dict[str, Any]:
    """`probe` in a fresh Python process; a crash or timeout is a failed probe."""
    command = [sys.executable, "-m", "gometal_keras.bench.max_batch", config, precision,
               str(batch), *(["--quick"] if quick else [])]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PROBE_TIMEOUT)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if lines:
            return json.loads(lines[-1])
        error = f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1][:300]}"
    except subprocess.TimeoutExpired:
        error = f"did not finish within {PROBE_TIMEOUT:g} s"
    return {"batch": batch, "ok": False, "error": error, "seconds": time.perf_counter() - start}


def max_batch(
    configs: list[str],
    precisions: list[str],
    limit: int,
    quick: bool = False,
    log: Callable[[str], None] = print,
    run_probe: Callable[..., dict[str, Any]] = probe_process,
    start: int = 0,
) -> list[dict[str, Any]]:
    """Search the largest batch of each (config, precision); one row each, probes included.

    The configuration's own batch is probed first (its peak memory is the row's); the
    growth then starts there, or at `start` when that is larger (a known-good batch from
    an earlier search saves the probes below it).

    Example:
        >>> fake = lambda c, p, b, q: {"batch": b, "ok": b <= 100, "peak_memory_bytes": b}
        >>> row = max_batch(["seed"], ["float32"], 10**4, True, lambda _: None, fake)[0]
        >>> row["largest_batch"] > 100 / RESOLUTION, row["peak_memory_bytes"]
        (True, 64)
    """
    from gometal_keras.bench.configs import configs as all_configs

    rows = []
    for name in configs:
        own = all_configs(quick)[name].batch
        for precision in precisions:
            probes: list[dict[str, Any]] = []

            def trains(batch: int, name=name, precision=precision, probes=probes) -> bool:
                found = run_probe(name, precision, batch, quick)
                probes.append(found)
                how = "ok" if found["ok"] else f"failed ({found.get('error', '?')})"
                peak = found.get("peak_memory_bytes")
                mib = f", peak {peak / 2**20:.0f} MiB" if peak else ""
                log(f"{name} {precision} batch {batch}: {how}{mib}")  # a cut run keeps these
                return bool(found["ok"])

            if start > own:
                largest, failed = search(trains, start, limit, own) if trains(own) else (0, own)
            else:
                largest, failed = search(trains, own, limit)
            first = probes[0] if probes and probes[0]["ok"] else {}
            rows.append({"config": name, "precision": precision, "largest_batch": largest,
                         "first_failed_batch": failed, "config_batch": own,
                         "peak_memory_bytes": first.get("peak_memory_bytes"),
                         "memory_kind": first.get("memory_kind"), "probes": probes})
    return rows


def show(rows: list[dict[str, Any]], print_line: Callable[[str], None] = print) -> None:
    """Print one line per row: the largest batch and the peak memory at the config's batch."""
    print_line(f"{'config':<6} {'precision':<15} {'largest batch':>13} {'peak MiB @ batch':>22}")
    for r in rows:
        peak = r["peak_memory_bytes"]
        mem = "n/a" if peak is None else f"{peak / 2**20:.1f} @ {r['config_batch']}"
        largest = f"{r['largest_batch']}{'' if r['first_failed_batch'] else '+'}"
        print_line(f"{r['config']:<6} {r['precision']:<15} {largest:>13} {mem:>22}")


if __name__ == "__main__":  # one probe: CONFIG PRECISION BATCH [--quick]; prints one JSON line
    args = sys.argv[1:]
    found = probe(args[0], args[1], int(args[2]), quick="--quick" in args)
    print(json.dumps(found), flush=True)
