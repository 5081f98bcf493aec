"""The Trainer against the hand-written JAX loop, their epochs interleaved (ABAB...).

The benchmark times each runner's epochs one runner after the other; on a tiny model (the
seed MLP's epoch is about 2 ms) the machine's drift between the two blocks can exceed the
difference being measured. Here both are built first, then each round runs one epoch of
each, alternating which goes first, and the ratio of each round's two times is kept. The
median ratio and its spread over rounds are printed. Run from the project root:

    KERAS_BACKEND=jax python bench/interleave_jax.py seed wide --rounds 60
"""

import argparse
import dataclasses
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from gometal_keras import Trainer, TrainerConfig, engines
from gometal_keras.bench import configs, reference, runners


def reference_epoch(cfg, precision: str, x, y, seed: int, dynamic: bool = False):
    builder = cfg.builder()
    params = jax.device_put(reference.init_params(builder, seed))
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = [(params, zeros, zeros, jnp.float32(0), jax.random.key(seed))]
    if dynamic and precision == "mixed_float16":  # the loss scale and its good-step count
        state[0] += (jnp.float32(reference.DYNAMIC_START), jnp.int32(0))
    steps = len(x) // cfg.batch
    xs = jax.device_put(x[: steps * cfg.batch].reshape(steps, cfg.batch, *x.shape[1:]))
    ys = jax.device_put(y[: steps * cfg.batch].reshape(steps, cfg.batch))
    epoch = reference.make_epoch(builder, precision, dynamic=dynamic)

    def run() -> np.ndarray:
        state[0], losses = epoch(state[0], xs, ys)
        return np.asarray(losses)  # waits for the device

    return run


def fused_trainer(cfg, precision: str, program: type | None = None):
    """A Trainer on the config's bench data, whole-epoch loop, and its arranged data.

    `program`: a `JaxProgram` subclass to build it with (a diagnostic's), else the engine's.
    """
    x, y = runners.bench_data(cfg, 42)
    engine_class = type(engines.current())
    default, engine_class.program_class = (
        engine_class.program_class,
        program or engine_class.program_class,
    )
    try:
        config = TrainerConfig(batch_size=cfg.batch, precision=precision, seed=42, loop="fused")
        trainer = Trainer(cfg.builder(), config)
    finally:
        engine_class.program_class = default
    return trainer, trainer.arrange(x, y)


def spread(ratios: list[float]) -> str:
    """The median ratio and its 10th-90th percentile over rounds, as printed."""
    q = statistics.quantiles(ratios, n=10)
    return f"{statistics.median(ratios):.3f} ({q[0]:.3f}-{q[-1]:.3f})"


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--precisions", default="float32,mixed_float16,mixed_bfloat16")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--steps", type=int, default=0, help="steps an epoch (0: the config's)")
    parser.add_argument(
        "--dynamic", action="store_true", help="float16: the reference scales the loss dynamically"
    )
    args = parser.parse_args()
    print("config precision        trainer ms/step  reference ms/step  ratio (median, p10-p90)")
    for name in args.configs:
        cfg = configs.configs()[name]
        if args.steps:
            cfg = dataclasses.replace(cfg, steps=args.steps)
        x, y = runners.bench_data(cfg, 42)
        for precision in args.precisions.split(","):
            config = TrainerConfig(batch_size=cfg.batch, precision=precision, seed=42)
            trainer = Trainer(cfg.builder(), config)
            data = trainer.arrange(x, y)
            ours = lambda: trainer.train_epoch(data)  # noqa: E731
            theirs = reference_epoch(cfg, precision, x, y, 42, args.dynamic)
            for _ in range(3):  # compile and warm up both
                ours(), theirs()
            a, b, ratios = [], [], []
            for i in range(args.rounds):
                first, second = (ours, theirs) if i % 2 == 0 else (theirs, ours)
                t1, t2 = timed(first), timed(second)
                ta, tb = (t1, t2) if i % 2 == 0 else (t2, t1)
                a.append(ta), b.append(tb), ratios.append(ta / tb)
            print(
                f"{name:6s} {precision:15s} {statistics.median(a) / data.steps * 1e3:15.4f}"
                f" {statistics.median(b) / data.steps * 1e3:18.4f}"
                f"  {spread(ratios)}  {trainer.plan.label()}",
                flush=True,
            )


if __name__ == "__main__":
    main()
