"""How the JAX fused epoch's non-finite checks cost, variants interleaved with the reference.

Issue 10 asks the Trainer to stay within 1.1x of the hand-written JAX loop; issue 16's
guard checks every new weight and optimizer value each step. Variants of `JaxProgram`,
each a Trainer built with it, timed epoch by epoch in rounds with the reference loop
(`bench/interleave_jax.py`'s), the order rotating each round:

- ``head``: the program at the commit or in the file given (``--head``; every step
  checks its writes and is committed by a select);
- ``tree``: the program in this tree (optimistic: cheap checks each step, the weights and
  optimizer values checked once at the end of the call, which keeps its first state
  when a check fails and is run again guarded);
- ``noguard``: this tree's program with the guard off (float32, bfloat16): the floor;

Session 8 also timed, on intermediate trees patched by earlier versions of this script,
the rerun chosen on the device by a `lax.cond`, on the host before the write-back, and
two unsafe endings (`bench/RESULTS.md`).

Run from the project root: ``KERAS_BACKEND=jax python bench/diag_optimistic.py seed wide``.
"""

import argparse
import dataclasses
import statistics
import subprocess
import sys
import types

sys.path.insert(0, "bench")

from interleave_jax import reference_epoch, spread, timed

from gometal_keras import Trainer, TrainerConfig, engines
from gometal_keras.bench import configs, runners
from gometal_keras.engines import jax_program as tree_module


def module_from(source: str, name: str) -> types.ModuleType:
    module = sys.modules[name] = types.ModuleType(name)  # dataclasses look it up
    exec(compile(source, name, "exec"), module.__dict__)
    return module


def source(head: str, path: str) -> str:
    if head.endswith(".py"):  # a copy of the file (where there is no git history)
        with open(head) as f:
            return f.read()
    return subprocess.run(
        ["git", "show", f"{head}:gometal_keras/{path}"], capture_output=True, text=True
    ).stdout


def programs(head: str, head_late: str) -> dict[str, type]:
    old = source(head, "engines/jax.py")
    if head_late:  # the head's own late_checks module (its interface changed since)
        module_from(source(head_late, "engines/late_checks.py"), "head_late_checks")
        old = old.replace("gometal_keras.engines.late_checks", "head_late_checks")

    class NoGuard(tree_module.JaxProgram):
        def __init__(self, model, objective, optimizer, plan, placement):
            plan = dataclasses.replace(plan, guard=False)
            super().__init__(model, objective, optimizer, plan, placement)

    return {
        "head": module_from(old, "head").JaxProgram,
        "tree": tree_module.JaxProgram,
        "noguard": NoGuard,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--precisions", default="float32,mixed_float16,mixed_bfloat16")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--head", default="HEAD")
    parser.add_argument("--head-late", default="", help="the head's engines/late_checks.py")
    parser.add_argument("--variants", default="head,tree,noguard")
    args = parser.parse_args()
    made = programs(args.head, args.head_late)
    variants = {k: v for k, v in made.items() if k in args.variants.split(",")}
    engine_class = type(engines.current())
    print("config precision       variant  ms/step  / reference (median of rounds, p10-p90)")
    for name in args.configs:
        cfg = configs.configs()[name]
        x, y = runners.bench_data(cfg, 42)
        for precision in args.precisions.split(","):
            runs, steps = {}, 0
            for label, program in variants.items():
                if label == "noguard" and precision == "mixed_float16":
                    continue  # loss-scaled: no guard to turn off
                engine_class.program_class = program
                config = TrainerConfig(batch_size=cfg.batch, precision=precision, seed=42)
                trainer = Trainer(cfg.builder(), config)
                data = trainer.arrange(x, y)
                runs[label], steps = (lambda t=trainer, d=data: t.train_epoch(d)), data.steps
            engine_class.program_class = tree_module.JaxProgram
            runs["reference"] = reference_epoch(cfg, precision, x, y, 42)
            for run in runs.values():
                for _ in range(3):  # compile and warm up
                    run()
            times = {label: [] for label in runs}
            order = list(runs)
            for i in range(args.rounds):
                turn = order[i % len(order) :] + order[: i % len(order)]
                for label in turn:
                    times[label].append(timed(runs[label]))
            ref = times["reference"]
            for label, ts in times.items():
                ratios = [t / r for t, r in zip(ts, ref, strict=True)]
                ms = statistics.median(ts) / steps * 1e3
                print(f"{name:6s} {precision:15s} {label:9s} {ms:7.4f}  {spread(ratios)}")


if __name__ == "__main__":
    main()
