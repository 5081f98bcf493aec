"""Where the Trainer's time goes on JAX: the fused epoch with and without its extras.

Times, for a bench config and precision, the Trainer's compiled epoch as shipped (loss,
metrics, non-finite guard), then the same program without the guard, without metrics,
and without both, each over the same device-resident data after warm-up. The differences
attribute the gap to the hand-written reference loop. Run from the project root:

    KERAS_BACKEND=jax python bench/attribute_jax.py wide mixed_float16
"""

import dataclasses
import statistics
import sys
import time

import numpy as np

from gometal_keras import Trainer, TrainerConfig
from gometal_keras.bench import configs, runners
from gometal_keras.engines import Objective


def time_epochs(trainer, program, data, repeats=10):
    trainer._loop.program = program
    for _ in range(2):
        np.asarray(program.epoch(data.xs, data.ys))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(program.epoch(data.xs, data.ys))
        times.append(time.perf_counter() - start)
    return statistics.median(times) / data.steps


def main(name: str, precision: str) -> None:
    cfg = configs.configs()[name]
    x, y = runners.bench_data(cfg, 0)
    trainer = Trainer(cfg.builder(), TrainerConfig(batch_size=cfg.batch, precision=precision, seed=0))
    data = trainer._loop.arrange(x, y)
    full = trainer._objective
    variants = {
        "as shipped (guard + metrics)": full,
        "no guard": dataclasses.replace(full, guard=False),
        "no metrics": dataclasses.replace(full, metric_names=(), metrics=lambda a, b: []),
        "neither": Objective(full.loss, guard=False),
    }
    for label, objective in variants.items():
        program = trainer._engine.program(trainer.model, objective, trainer.optimizer, True)
        ms = time_epochs(trainer, program, data) * 1e3
        print(f"{name} {precision:15s} {label:30s} {ms:8.4f} ms/step", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
