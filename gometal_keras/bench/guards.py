"""The ``apple-guards`` configuration: what two Apple-GPU protections cost.

``python -m gometal_keras.bench --configs apple-guards`` times, on the machine it runs on
(docs/apple-silicon.md gives the figures):

1. A plan's first run in a child process (`gometal_keras.planning.isolated.first_run`,
   what trials do on Apple Silicon so that a plan that aborts the process cannot end the
   user's program) against the same first run in this process (build, compile, one call
   of the trial's batches), interleaved, `ROUNDS` rounds each (``--quick``: 2).
2. One periodic agreement check (`gometal_keras.training.agreement`: the trainer's state
   kept, `agreement.AGREEMENT_STEPS` steps replayed in float32 on the device and on the
   CPU) against one training epoch of the same model, interleaved; the first check (which
   builds its two programs) is reported apart.

Off a Mac both "device" and CPU are this machine's default device and its CPU, so what is
measured is the fixed cost (a process start and its imports; building, copying and running
the replays), not an Apple GPU's speed. The model is Go-Metal's seed MLP.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from gometal_keras.bench.configs import configs
from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.plan import Loop, Precision, RunPlan
from gometal_keras.data.synthetic import demo_dataset
from gometal_keras.engines import current
from gometal_keras.engines.base import Placement
from gometal_keras.planning import isolated
from gometal_keras.planning.trial_runner import TrialRunner
from gometal_keras.training import agreement
from gometal_keras.training.trainer import Trainer

#: Interleaved rounds of each pair (``--quick``: 2).
ROUNDS = 5
#: Go-Metal's seed MLP (784-512-256-10 with dropout): the ``seed`` configuration's model.
seed_mlp = configs()["seed"].make


def first_runs(rounds: int, batch: int) -> dict[str, list[float]]:
    """Seconds of a plan's first run here and in a child process, interleaved.

    Args:
        rounds: Rounds; each runs one of each.
        batch: The trial's batch size.

    Returns:
        ``{"here": [...], "child": [...]}``, seconds per round.
    """
    engine = current()
    config = TrainerConfig(batch_size=batch, precision="float32", jit_compile=False, seed=0)
    plan, place = RunPlan(Precision.FLOAT32, False, Loop.FUSED), Placement(engine)
    builder = seed_mlp(batch)

    def factory(p: Precision) -> Any:
        return builder.compile(p.value, seed=0)

    here, child = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        TrialRunner(factory, config, engine, 0, None, None, 0.0)._runner(plan, place)[2]()
        here.append(time.perf_counter() - start)
        job = {"model": factory(plan.precision), "config": config, "engine": engine,
               "plan": plan, "place": place, "seed": 0}
        start = time.perf_counter()
        failure = isolated.first_run(job, 600.0)
        if failure is not None:
            raise RuntimeError(f"The child-process first run failed: {failure}")
        child.append(time.perf_counter() - start)
    return {"here": here, "child": child}


def agreement_checks(rounds: int, batch: int, samples: int) -> dict[str, Any]:
    """Seconds of one training epoch and of one agreement check after it, interleaved.

    Args:
        rounds: Rounds; each runs one epoch and one check.
        batch: Batch size.
        samples: Samples per epoch.

    Returns:
        ``{"steps": ..., "epoch": [...], "first_check": s, "check": [...]}``.
    """
    engine = current()
    config = TrainerConfig(batch_size=batch, precision="float32", jit_compile=False,
                           loop="fused", seed=0, decision_cache="never")
    trainer = Trainer(seed_mlp(batch), config)
    x, y = demo_dataset(samples=samples)
    data = trainer.arrange(x, y)
    trainer.train_epoch(data)  # traced and warm
    batches = agreement.synthetic_batches(trainer.model, config, agreement.AGREEMENT_STEPS, 0)

    def replays() -> tuple[agreement.Replay, agreement.Replay]:
        return tuple(agreement.Replay(trainer.model, config, trainer.plan, engine, where, batches)
                     for where in (Placement(engine), engine.cpu_placement() or Placement(engine)))

    check = agreement.AgreementCheck(trainer.get_state, trainer.set_state, replays, 1,
                                     10**9, "this machine", "none")
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
    return {"steps": data.steps, "epoch": epochs, "first_check": first, "check": checks}


def run_all(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Run both measurements and print them.

    Args:
        args: The benchmark's flags (`gometal_keras.bench.__main__.parse_args`): ``quick``.
        log: Called with lines of progress.

    Returns:
        A JSON-ready result (schema ``gometal_keras.bench.guards/1``), seconds throughout.
    """
    rounds, batch = (2, 64) if args.quick else (ROUNDS, 64)
    log(f"apple-guards: {rounds} rounds of first runs (here / child process)")
    runs = first_runs(rounds, batch)
    log("apple-guards: agreement checks against epochs")
    checks = agreement_checks(rounds, batch, 1024)
    result = {"schema": "gometal_keras.bench.guards/1", "batch_size": batch,
              "first_run": runs, "agreement": checks}
    show(result)
    return result


def _ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:.0f} ms (of {len(samples)}: " + ", ".join(
        f"{s * 1e3:.0f}" for s in samples) + ")"


def show(result: dict[str, Any]) -> None:
    """Print an ``apple-guards`` result, medians first."""
    runs, checks = result["first_run"], result["agreement"]
    print(f"first run in this process:    {_ms(runs['here'])}")
    print(f"first run in a child process: {_ms(runs['child'])}")
    print(f"one epoch ({checks['steps']} steps of {result['batch_size']}): "
          f"{_ms(checks['epoch'])}")
    print(f"first agreement check (builds its programs): {checks['first_check'] * 1e3:.0f} ms")
    print(f"later agreement check: {_ms(checks['check'])}")
