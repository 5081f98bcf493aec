"""Where a seed-MLP epoch's wall time goes, phase by phase, without a profiler's weight.

A Trainer whose JAX program stamps the clock at each phase of `epoch` (the same steps as
`JaxProgram.epoch`'s in-memory, committed path), and the hand-written loop stamped around
its dispatch; medians over many epochs, in microseconds. Run from the project root:

    KERAS_BACKEND=jax python bench/phases_jax.py seed --precision float32
"""

import argparse
import statistics
import sys
import time

sys.path.insert(0, "bench")

import keras
from interleave_jax import fused_trainer, reference_epoch

from gometal_keras.bench import configs, runners
from gometal_keras.engines.jax.program import JaxProgram

STAMPS: list[tuple[str, float]] = []


def stamp(label: str) -> None:
    STAMPS.append((label, time.perf_counter()))


class Phased(JaxProgram):
    def epoch(self, xs, ys, going=True, read_late=False):
        stamp("trainer and loop, to the program")
        going = self._start(going)
        first = self._state()
        stamp("read the variables")
        state, values, committed = self._optimistic_epoch(first, xs, ys, going)
        self._kept = None
        stamp("dispatch")
        self._write_back(state)
        self._hold(committed)
        stamp("write back (device busy)")
        host = keras.ops.convert_to_numpy(values)
        stamp("wait for the device")
        assert self._committed(host)
        stamp("verdict")
        self._kept = first  # as `JaxProgram.epoch` does for a small state
        del first, state, values, committed
        stamp("drop the rest")
        return host


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    cfg = configs.configs()[args.config]
    x, y = runners.bench_data(cfg, 42)
    trainer, data = fused_trainer(cfg, args.precision, Phased)
    ref = reference_epoch(cfg, args.precision, x, y, 42)
    for _ in range(5):
        trainer.train_epoch(data), ref()
    phases: dict[str, list[float]] = {}
    totals: dict[str, list[float]] = {"trainer": [], "reference": []}
    for i in range(args.calls):
        for who in ("trainer", "reference") if i % 2 == 0 else ("reference", "trainer"):
            STAMPS.clear()
            start = time.perf_counter()
            if who == "trainer":
                trainer.train_epoch(data)
                stamp("back to the caller")
                last = start
                for label, t in STAMPS:
                    phases.setdefault(label, []).append((t - last) * 1e6)
                    last = t
            else:
                ref()
            totals[who].append((time.perf_counter() - start) * 1e6)
    for label, ts in phases.items():
        print(f"{statistics.median(ts):8.1f} us  {label}")
    for who, ts in totals.items():
        print(f"{statistics.median(ts):8.1f} us  {who} epoch in all")


if __name__ == "__main__":
    main()
