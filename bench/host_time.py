"""Where a Trainer epoch's wall time goes on the host: cProfile over many `train_epoch`
calls, beside the hand-written JAX loop's epochs (issue 10's seed MLP, 15 steps an epoch).

The wait for the device shows as the array read (``_value``/``__bool__``); everything
else a call spends in Python before that is host work the reference does not do.

    KERAS_BACKEND=jax python bench/host_time.py seed --precision float32
"""

import argparse
import cProfile
import pstats
import statistics
import sys

sys.path.insert(0, "bench")

from interleave_jax import fused_trainer, reference_epoch, timed

from gometal_keras.bench import configs, runners


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    cfg = configs.configs()[args.config]
    x, y = runners.bench_data(cfg, 42)
    trainer, data = fused_trainer(cfg, args.precision)
    runs = {"trainer": lambda: trainer.train_epoch(data)}
    runs["reference"] = reference_epoch(cfg, args.precision, x, y, 42)
    for run in runs.values():
        for _ in range(5):
            run()
    for label, run in runs.items():
        ms = statistics.median(timed(run) for _ in range(args.calls)) * 1e3
        print(f"{label}: {ms:.3f} ms an epoch (median of {args.calls})")
    for label, run in runs.items():
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.calls):
            run()
        profile.disable()
        print(f"--- {label}: per call, by own time")
        stats = pstats.Stats(profile)
        rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:30]
        for (file, line, fn), (_, nc, tt, ct, _) in rows:
            where = f"{file.split('site-packages/')[-1].split('/work/')[-1]}:{line}({fn})"
            print(
                f"{tt / args.calls * 1e6:9.1f} us own {ct / args.calls * 1e6:9.1f} us cum "
                f"{nc / args.calls:6.1f}x  {where}"
            )


if __name__ == "__main__":
    main()
