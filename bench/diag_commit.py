"""How a guarded step commits its state on JAX: element-wise selects or one lax.cond.

``KERAS_BACKEND=jax python bench/diag_commit.py seed wide [--rounds 40]``: per config and
precision, the Trainer built with `engines.jax.COMMIT` "where" (``jnp.where`` over every
variable, after the update's finiteness is known) and "cond" (``lax.cond`` choosing the new
or the old state), and the hand-written JAX loop (`bench/interleave_jax.py`'s reference), one
epoch of each per round in rotating order. Prints ms per step (medians) and each Trainer's
ratio to the reference (median, p10-p90).
"""

import argparse
import statistics
import sys
import time

sys.path.insert(0, "bench")

from interleave_jax import reference_epoch  # noqa: E402

from gometal_keras import Trainer, TrainerConfig  # noqa: E402
from gometal_keras.bench import configs, runners  # noqa: E402
from gometal_keras.engines import jax as jax_engine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--precisions", default="float32,mixed_float16")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    print("config precision       where ms  cond ms  ref ms  where/ref           cond/ref")
    for name in args.configs:
        cfg = configs.configs()[name]
        x, y = runners.bench_data(cfg, 42)
        for precision in args.precisions.split(","):
            config = TrainerConfig(batch_size=cfg.batch, precision=precision, seed=42,
                                   jit_compile=True, loop="fused")  # fmt: skip
            runs = {}
            for commit in ("where", "cond"):
                jax_engine.COMMIT = commit
                t = Trainer(cfg.builder(), config)
                runs[commit] = (lambda t, d: lambda: t.train_epoch(d))(t, t.arrange(x, y))
            jax_engine.COMMIT = "where"
            runs["reference"] = reference_epoch(cfg, precision, x, y, 42)
            for _ in range(3):
                for run in runs.values():
                    run()
            times: dict[str, list[float]] = {k: [] for k in runs}
            order = list(runs)
            for i in range(args.rounds):
                for key in order[i % 3 :] + order[: i % 3]:
                    start = time.perf_counter()
                    runs[key]()
                    times[key].append(time.perf_counter() - start)
            steps = len(x) // cfg.batch
            ms = {k: statistics.median(v) / steps * 1e3 for k, v in times.items()}
            cells = []
            for key in ("where", "cond"):
                ratios = [a / b for a, b in zip(times[key], times["reference"], strict=True)]
                q = statistics.quantiles(ratios, n=10)
                cells.append(f"{statistics.median(ratios):.3f} ({q[0]:.3f}-{q[-1]:.3f})")
            print(f"{name:6s} {precision:15s} {ms['where']:8.4f} {ms['cond']:8.4f}"
                  f" {ms['reference']:7.4f}  {cells[0]}  {cells[1]}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
