"""mixed_float16 with the loss scaler as selects against Keras' own conds, interleaved.

``KERAS_BACKEND=jax python bench/diag_loss_scale.py seed wide [--rounds 40]``: for each
config, three programs over the same device-resident data, one epoch of each per round in
rotating order: the Trainer as it is (its loss-scale step as element-wise selects,
`gometal_keras.engines.loss_scale`), the Trainer built with Keras'
`LossScaleOptimizer.stateless_apply` in its place (two ``ops.cond`` a step), and the
hand-written JAX loop (`bench/interleave_jax.py`'s reference: a static loss scale). Prints
ms per step (medians) and each Trainer's ratio to the reference (median, p10-p90).
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


def keras_conds(optimizer, values, grads, trainable, unscaled=()):
    return optimizer.stateless_apply(values, grads, trainable)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    print("config  selects ms/step  conds ms/step  reference ms/step  selects/ref  conds/ref")
    for name in args.configs:
        cfg = configs.configs()[name]
        x, y = runners.bench_data(cfg, 42)
        config = TrainerConfig(batch_size=cfg.batch, precision="mixed_float16", seed=42,
                               jit_compile=True, loop="fused")  # fmt: skip
        selects = Trainer(cfg.builder(), config)
        kept, jax_engine.scaled_apply = jax_engine.scaled_apply, keras_conds
        try:
            conds = Trainer(cfg.builder(), config)
        finally:
            jax_engine.scaled_apply = kept
        runs = {
            "selects": (lambda t, d: lambda: t.train_epoch(d))(selects, selects.arrange(x, y)),
            "conds": (lambda t, d: lambda: t.train_epoch(d))(conds, conds.arrange(x, y)),
            "reference": reference_epoch(cfg, "mixed_float16", x, y, 42),
        }
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
        for key in ("selects", "conds"):
            ratios = [a / b for a, b in zip(times[key], times["reference"], strict=True)]
            q = statistics.quantiles(ratios, n=10)
            cells.append(f"{statistics.median(ratios):.3f} ({q[0]:.3f}-{q[-1]:.3f})")
        print(f"{name:6s} {ms['selects']:15.4f} {ms['conds']:14.4f} {ms['reference']:18.4f}"
              f"  {cells[0]}  {cells[1]}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
