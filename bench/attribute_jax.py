"""Where the Trainer's time goes on JAX: the fused epoch with and without its extras.

Times, for a bench config and precision, the Trainer's compiled epoch as shipped (loss,
metrics, non-finite guard), then the same program without the guard, without metrics,
and without both, each over the same device-resident data after warm-up. The variants
differ only in their `RunPlan` (guard) and `Objective` (metrics), built with the same
public pieces the Trainer uses. Run from the project root:

    KERAS_BACKEND=jax python bench/attribute_jax.py wide mixed_float16
"""

import dataclasses
import statistics
import sys
import time

import keras

from gometal_keras import Trainer, TrainerConfig, engines
from gometal_keras.bench import configs, runners
from gometal_keras.engines.objectives import make_objective, make_optimizer


def seconds_per_step(program, xs, ys, steps: int, repeats: int = 10) -> float:
    for _ in range(2):
        keras.ops.convert_to_numpy(program.epoch(xs, ys))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(program.epoch(xs, ys))
        times.append(time.perf_counter() - start)
    return statistics.median(times) / steps


def main(name: str, precision: str) -> None:
    cfg = configs.configs()[name]
    x, y = runners.bench_data(cfg, 0)
    config = TrainerConfig(batch_size=cfg.batch, precision=precision, seed=0)
    shipped = Trainer(cfg.builder(), config)  # the plan and layout a user gets
    data = shipped.arrange(x, y)
    engine = engines.current()
    for label, guard, metrics in (
        ("as shipped (guard + metrics)", shipped.plan.guard, True),
        ("no guard", False, True),
        ("no metrics", shipped.plan.guard, False),
        ("neither", False, False),
    ):
        model = cfg.builder().compile(shipped.plan.policy, seed=0)
        objective = make_objective(config, model)
        if not metrics:
            objective = dataclasses.replace(objective, metric_names=(), metrics=lambda a, b: [])
        optimizer = make_optimizer(config, shipped.plan.loss_scaling)
        program = engine.program(model, objective, optimizer, shipped.plan.replace(guard=guard))
        ms = seconds_per_step(program, data.xs, data.ys, data.steps) * 1e3
        print(f"{name} {precision:15s} {label:30s} {ms:8.4f} ms/step", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
