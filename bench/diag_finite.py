"""The guard's finiteness check in three forms, interleaved with the hand-written JAX loop.

``KERAS_BACKEND=jax python bench/diag_finite.py seed wide [--rounds 30]``: Trainers whose
programs were traced with `guard.all_finite` as it is (one ``all(isfinite)`` per value), as
one reduction over all values concatenated, and as ``isfinite(sum(v * 0))`` per value, and
the reference, one epoch of each per round in rotating order; ms a step and ratios to the
reference (medians). A diagnostic for bench/RESULTS.md (session 7); nothing here is used
by the library.
"""
import argparse
import statistics
import sys
import time

sys.path.insert(0, "bench")
import keras
from interleave_jax import reference_epoch

from gometal_keras import Trainer, TrainerConfig
from gometal_keras.bench import configs, runners
from gometal_keras.engines import guard

per_value = guard.all_finite

def concatenated(values):
    ops = keras.ops
    flat = [ops.reshape(ops.cast(v, "float32"), (-1,)) for v in values if v is not None and guard.is_float(v)]
    if not flat:
        return ops.convert_to_tensor(True)
    return ops.all(ops.isfinite(ops.concatenate(flat)))

def summed(values):
    ops = keras.ops
    parts = [ops.sum(ops.cast(v, "float32") * 0.0) for v in values if v is not None and guard.is_float(v)]
    if not parts:
        return ops.convert_to_tensor(True)
    return ops.isfinite(ops.sum(ops.stack(parts)))

p = argparse.ArgumentParser(); p.add_argument("configs", nargs="+"); p.add_argument("--rounds", type=int, default=30)
p.add_argument("--precisions", default="float32,mixed_float16")
a = p.parse_args()
print("config precision  per-value  concat  summed  ref   ratios to ref (median)")
for name in a.configs:
    cfg = configs.configs()[name]
    x, y = runners.bench_data(cfg, 42)
    for prec in a.precisions.split(","):
        config = TrainerConfig(batch_size=cfg.batch, precision=prec, seed=42, jit_compile=True, loop="fused")
        runs = {}
        for key, fn in (("per-value", per_value), ("concat", concatenated), ("summed", summed)):
            guard.all_finite = fn
            t = Trainer(cfg.builder(), config)
            d = t.arrange(x, y)
            t.train_epoch(d)  # traced with this check
            runs[key] = (lambda t, d: lambda: t.train_epoch(d))(t, d)
        guard.all_finite = per_value
        runs["ref"] = reference_epoch(cfg, prec, x, y, 42)
        for _ in range(2):
            for r in runs.values(): r()
        times = {k: [] for k in runs}; order = list(runs)
        for i in range(a.rounds):
            for k in order[i % 4:] + order[:i % 4]:
                s = time.perf_counter(); runs[k](); times[k].append(time.perf_counter() - s)
        steps = len(x) // cfg.batch
        ms = {k: statistics.median(v) / steps * 1e3 for k, v in times.items()}
        rat = {k: statistics.median([p / q for p, q in zip(times[k], times["ref"])]) for k in ("per-value", "concat", "summed")}
        print(f"{name:6s} {prec:15s} {ms['per-value']:.4f} {ms['concat']:.4f} {ms['summed']:.4f} {ms['ref']:.4f}  "
              + " ".join(f"{k} {v:.3f}" for k, v in rat.items()), flush=True)
