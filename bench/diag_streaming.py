"""Where a streamed epoch's time goes (a diagnostic for bench/RESULTS.md; JAX on a GPU).

``python bench/diag_streaming.py FOLDER PRECISION [--quick]``: for the bench CNN on a
cached image folder, per bare epoch (`Trainer.train_epoch`, nothing read ahead): seconds
to the first staged stage, seconds the training thread waited for later stages, seconds in
device calls (dispatch to values read); then the host side alone: reading and stacking
stages, and also copying them to the device.
"""

import sys
import time
from typing import ClassVar

import jax
import numpy as np

from gometal_keras import Trainer, TrainerConfig, loop, streaming
from gometal_keras.bench.configs import cnn
from gometal_keras.vision import DataLoader, ImageFolderDataset

BATCH = 128


class TimedPrefetcher(streaming.Prefetcher):
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
    list(loader.pixel_batches())  # decode once: later epochs read the cache
    config = TrainerConfig(batch_size=BATCH, precision=precision, seed=0, jit_compile=True)
    trainer = Trainer(cnn(filters, hidden)(BATCH), config)
    data = trainer.arrange(loader)
    trainer.train_epoch(data)  # compiles
    loop.Prefetcher = TimedPrefetcher
    waits, calls = TimedPrefetcher.waits, TimedPrefetcher.calls
    for epoch in range(3):
        waits.clear(), calls.clear()
        t0 = time.perf_counter()
        trainer.train_epoch(data)
        total = time.perf_counter() - t0
        each = ", ".join(f"{c * 1e3:.1f}" for c in calls)
        print(f"epoch {epoch}: {total * 1e3:.1f} ms; first stage after {waits[0] * 1e3:.1f} ms; "
              f"waited {sum(waits[1:]) * 1e3:.1f} ms more over {len(waits) - 1} stages; "
              f"device calls {sum(calls) * 1e3:.1f} ms ({each})")  # fmt: skip
    for put in (False, True):
        t0, n = time.perf_counter(), 0
        for (xs, _), _ in streaming.host_stages(data, 0, None):
            n += xs.shape[0] * xs.shape[1]
            if put:
                jax.block_until_ready(jax.device_put(xs))
        rate = n / (time.perf_counter() - t0)
        print(f"host stages{' + device_put' if put else ''}: {rate:.0f} images/s")
    stage = np.zeros((56, BATCH, 32, 32, 3), np.uint8)
    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(jax.device_put(stage))
        ms = (time.perf_counter() - t0) * 1e3
        print(f"device_put of one stage ({stage.nbytes / 2**20:.0f} MiB): {ms:.1f} ms")


if __name__ == "__main__":  # the decoding worker processes import this script
    main()
