"""The cost of two Apple-GPU protections, measured on this machine's CPU (docs/apple-silicon.md).

1. A plan's first run in a child process (`gometal_keras.planning.isolated.first_run`)
   against the same first run in this process (build, compile, one call of the trial's
   batches), interleaved, ``--rounds`` rounds each.
2. One periodic agreement check (`gometal_keras.training.agreement`: the trainer's state kept,
   `AGREEMENT_STEPS` steps replayed in float32 on the device and on the CPU) against one
   training epoch of the same model, interleaved; the first check (which builds its two
   programs) is reported apart.

No Mac here: both "device" and CPU are this CPU, so what is measured is the fixed cost
(process start and imports; building, copying and running the replays), not a GPU's speed.

Run: ``.venv/bin/python bench/apple_guards.py [--rounds 5] [--samples 1024]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from gometal_keras import ModelBuilder, Trainer, TrainerConfig, demo_dataset, engines
from gometal_keras.core.plan import Loop, Precision, RunPlan
from gometal_keras.engines.base import Placement
from gometal_keras.engines.tensorflow import CPUPlacement
from gometal_keras.planning import isolated
from gometal_keras.planning.trial_runner import TrialRunner
from gometal_keras.training import agreement


def seed_builder(batch: int) -> ModelBuilder:
    """Go-Metal's seed demo model (784-512-256-10 with dropout)."""
    return (ModelBuilder([batch, 784]).add_dense(512).add_relu().add_dropout(0.2)
            .add_dense(256).add_relu().add_dropout(0.2).add_dense(10))


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:.0f} ms (of {len(samples)}: " + ", ".join(
        f"{s * 1e3:.0f}" for s in samples) + ")"


def first_runs(rounds: int, batch: int) -> None:
    engine = engines.current()
    config = TrainerConfig(batch_size=batch, precision="float32", jit_compile=False, seed=0)
    plan, place = RunPlan(Precision.FLOAT32, False, Loop.FUSED), Placement(engine)
    builder = seed_builder(batch)

    def factory(p: Precision):
        return builder.compile(p.value, seed=0)

    here, child = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        TrialRunner(factory, config, engine, 0, None, None, 0.0)._runner(plan, place)[2]()
        here.append(time.perf_counter() - start)
        job = {"model": factory(plan.precision), "config": config, "engine": engine,
               "plan": plan, "place": place, "seed": 0}
        start = time.perf_counter()
        assert isolated.first_run(job, 600.0) is None
        child.append(time.perf_counter() - start)
    print(f"first run in this process:   {median_ms(here)}")
    print(f"first run in a child process: {median_ms(child)}")


def agreement_checks(rounds: int, batch: int, samples: int) -> None:
    engine = engines.current()
    config = TrainerConfig(batch_size=batch, precision="float32", jit_compile=False,
                           loop="fused", seed=0, decision_cache="never")
    trainer = Trainer(seed_builder(batch), config)
    x, y = demo_dataset(samples=samples)
    data = trainer.arrange(x, y)
    trainer.train_epoch(data)  # traced and warm
    batches = agreement.synthetic_batches(trainer.model, config, agreement.AGREEMENT_STEPS, 0)

    def replays():
        return tuple(agreement.Replay(trainer.model, config, trainer.plan, engine, where,
                                      batches) for where in (Placement(engine),
                                                             CPUPlacement(engine)))

    check = agreement.AgreementCheck(trainer.get_state, trainer.set_state, replays, 1,
                                     10**9, "this CPU", "none")
    check.set_model(trainer.model)
    start = time.perf_counter()
    check.on_epoch_end(0)
    first = time.perf_counter() - start
    epochs, checks = [], []
    for i in range(rounds):
        start = time.perf_counter()
        trainer.train_epoch(data)
        epochs.append(time.perf_counter() - start)
        start = time.perf_counter()
        check.on_epoch_end(i + 1)
        checks.append(time.perf_counter() - start)
    print(f"one epoch ({data.steps} steps of {batch}): {median_ms(epochs)}")
    print(f"first agreement check (builds its programs): {first * 1e3:.0f} ms")
    print(f"later agreement check: {median_ms(checks)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=1024)
    args = parser.parse_args()
    first_runs(args.rounds, args.batch)
    agreement_checks(args.rounds, args.batch, args.samples)


if __name__ == "__main__":
    main()
