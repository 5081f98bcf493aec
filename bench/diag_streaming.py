"""Where a streamed epoch's time goes (a diagnostic for bench/RESULTS.md; JAX on a GPU).

``python bench/diag_streaming.py FOLDER PRECISION [ROUNDS] [--quick]``: for the bench CNN
on a cached image folder, bare epochs (`Trainer.train_epoch`, nothing read ahead) of the
in-memory Trainer and of streaming with 2, 3 and 4 device slots (`prefetch.SLOTS`),
interleaved over ROUNDS rounds (default 6): median epoch time, how long the first stage
took, and how long the training thread waited for later ones; then the host side alone:
reading and stacking stages, and also copying them to the device.
"""

import statistics
import sys
import time
from typing import ClassVar

import jax
import numpy as np

from gometal_keras import Trainer, TrainerConfig
from gometal_keras.bench.configs import cnn
from gometal_keras.data import prefetch, streaming
from gometal_keras.training import loop
from gometal_keras.vision import DataLoader, ImageFolderDataset

BATCH = 128


class TimedPrefetcher(prefetch.Prefetcher):
    """A `Prefetcher` that records how long each stage was waited for and then used."""

    waits: ClassVar[list[float]] = []  # over every instance: one epoch at a time
    calls: ClassVar[list[float]] = []

    def __iter__(self):
        stages = super().__iter__()
        while True:
            t0 = time.perf_counter()
            item = next(stages, None)
            if item is None:
                return
            self.waits.append(time.perf_counter() - t0)
            t1 = time.perf_counter()
            yield item
            self.calls.append(time.perf_counter() - t1)


def main() -> None:
    folder, precision = sys.argv[1], sys.argv[2]
    filters, hidden = ((16, 32, 64), 128) if "--quick" in sys.argv else ((32, 64, 128), 256)
    dataset = ImageFolderDataset(folder)
    loader = DataLoader(dataset, BATCH, image_size=32, max_cache_size=len(dataset),
                        use_multiprocessing=True)  # fmt: skip
    pixels = np.concatenate([x for x, _ in loader.pixel_batches()])  # decode once: cached
    labels = np.concatenate([y for _, y in loader.pixel_batches()])
    config = TrainerConfig(batch_size=BATCH, precision=precision, seed=0, jit_compile=True)
    trainer = Trainer(cnn(filters, hidden)(BATCH), config)
    streamed = trainer.arrange(loader)
    arrays = trainer.arrange(pixels.astype(np.float32) / 255, labels)
    trainer.train_epoch(streamed), trainer.train_epoch(arrays)  # compile
    loop.Prefetcher = TimedPrefetcher
    waits, calls = TimedPrefetcher.waits, TimedPrefetcher.calls
    variants = {"arrays": None, "slots 2": 2, "slots 3": 3, "slots 4": 4}
    times: dict[str, list[float]] = {name: [] for name in variants}
    waited: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3].isdigit() else 6):
        for name, slots in variants.items():
            if slots:
                loop.SLOTS = streaming.SLOTS = slots  # the loop's slots, the ring's buffers
            waits.clear(), calls.clear()
            t0 = time.perf_counter()
            trainer.train_epoch(streamed if slots else arrays)
            times[name].append(time.perf_counter() - t0)
            waited[name].append((waits[0], sum(waits[1:])) if waits else (0.0, 0.0))
    for name in variants:
        ms = statistics.median(times[name]) * 1e3
        first, later = (statistics.median(w) * 1e3 for w in zip(*waited[name], strict=True))
        print(f"{name:8s} epoch {ms:6.1f} ms (median), {len(pixels) / ms * 1e3:8.0f} images/s; "
              f"first stage after {first:5.1f} ms, later stages waited for {later:5.1f} ms")
    for put in (False, True):
        t0, n = time.perf_counter(), 0
        for (xs, _), _ in streaming.host_stages(streamed, 0, None):
            n += xs.shape[0] * xs.shape[1]
            if put:
                jax.block_until_ready(jax.device_put(xs))
        rate = n / (time.perf_counter() - t0)
        print(f"host stages{' + device_put' if put else ''}: {rate:.0f} images/s")


if __name__ == "__main__":  # the decoding worker processes import this script
    main()
