"""`precision="auto"` against every fixed precision, their epochs interleaved (issue 12).

The benchmark times each runner one after the other, so on a small model the machine's
drift between blocks can exceed the 3 % being checked. Here, per configuration, four
Trainers are built first (float32, mixed_float16, mixed_bfloat16, and auto with fresh
trials, no decision cache); each round then runs one epoch of each, the order rotated
every round. Printed per configuration: each Trainer's median ms/step, the fastest fixed
precision, and auto's time over the fastest's per round (median, p10-p90). Run from the
project root:

    KERAS_BACKEND=jax python bench/interleave_auto.py seed wide cnn --rounds 60
"""

import argparse
import statistics
import time

from gometal_keras import Trainer, TrainerConfig
from gometal_keras.bench import configs, runners

FIXED = ("float32", "mixed_float16", "mixed_bfloat16")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for name in args.configs:
        cfg = configs.configs(args.quick)[name]
        x, y = runners.bench_data(cfg, 42)
        runs = {}
        for precision in (*FIXED, "auto"):
            config = TrainerConfig(batch_size=cfg.batch, precision=precision, seed=42)
            trainer = Trainer(cfg.builder(), config.replace(decision_cache="always"))
            data = trainer.arrange(x, y)
            runs[precision] = (trainer, data)
            for _ in range(3):  # compile and warm up
                trainer.train_epoch(data)
        times: dict[str, list[float]] = {p: [] for p in runs}
        order = list(runs)
        for i in range(args.rounds):
            for precision in order[i % 4 :] + order[: i % 4]:
                trainer, data = runs[precision]
                start = time.perf_counter()
                trainer.train_epoch(data)  # returns host values: the device has finished
                times[precision].append(time.perf_counter() - start)
        steps = runs["auto"][1].steps
        medians = {p: statistics.median(t) / steps * 1e3 for p, t in times.items()}
        fastest = min(FIXED, key=medians.get)
        ratios = [a / f for a, f in zip(times["auto"], times[fastest], strict=True)]
        q = statistics.quantiles(ratios, n=10)
        each = ", ".join(f"{p} {medians[p]:.4f}" for p in FIXED)
        auto = runs["auto"][0]
        print(f"{name}: ms/step {each}; auto {medians['auto']:.4f} running "
              f"{auto.plan.label()} (trials {auto.decision.trial_seconds:.1f} s: "
              f"{auto.decision.reason})", flush=True)  # fmt: skip
        verdict = "within" if statistics.median(ratios) <= 1.03 else "NOT within"
        print(f"{name}: auto / fastest fixed ({fastest}) = {statistics.median(ratios):.3f} "
              f"(p10-p90 {q[0]:.3f}-{q[-1]:.3f}) over {args.rounds} rounds: {verdict} 3 %",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
