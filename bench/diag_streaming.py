"""Where a streamed epoch's time goes (a diagnostic for bench/RESULTS.md; JAX on a GPU).

``python bench/diag_streaming.py FOLDER PRECISION``: for the bench CNN on a cached image
folder, per epoch: seconds to the first staged stage, seconds the training thread waited
for stages, seconds it spent in device calls (dispatch to values read); and the host side
alone: reading and stacking stages, then also copying them to the device.
"""

import sys
import time

import numpy as np

from gometal_keras import Trainer, TrainerConfig, loop, streaming
from gometal_keras.bench.configs import cnn
from gometal_keras.vision import DataLoader, ImageFolderDataset



def main() -> None:
    folder, precision = sys.argv[1], sys.argv[2]
    filters, hidden = ((16, 32, 64), 128) if "--quick" in sys.argv else ((32, 64, 128), 256)
    b = 128
    loader = DataLoader(
        ImageFolderDataset(folder), b, image_size=32, max_cache_size=10**6, use_multiprocessing=True
    )
    list(loader.pixel_batches())
    config = TrainerConfig(batch_size=b, precision=precision, seed=0, jit_compile=True)
    t = Trainer(cnn(filters, hidden)(b), config)
    data = t.arrange(loader)
    t.train_epoch(data)
    waits: list[float] = []
    calls: list[float] = []


    class Timed(streaming.Prefetcher):
        def __iter__(self):
            it = super().__iter__()
            while True:
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                waits.append(time.perf_counter() - t0)
                t1 = time.perf_counter()
                yield item
                calls.append(time.perf_counter() - t1)


    loop.Prefetcher = Timed
    for epoch in range(3):
        waits.clear(), calls.clear()
        t0 = time.perf_counter()
        t.train_epoch(data)
        total = time.perf_counter() - t0
        print(f"epoch {epoch}: {total * 1e3:.1f} ms; first stage after {waits[0] * 1e3:.1f} ms; "
              f"waited {sum(waits[1:]) * 1e3:.1f} ms more over {len(waits) - 1} stages; device calls "
              f"{sum(calls) * 1e3:.1f} ms ({', '.join(f'{c * 1e3:.1f}' for c in calls)})")
    for put in (False, True):
        t0 = time.perf_counter()
        n = 0
        for (xs, ys), _ in streaming.host_stages(data, 0, None):
            n += xs.shape[0] * xs.shape[1]
            if put:
                import jax

                jax.block_until_ready(jax.device_put(xs))
        dt = time.perf_counter() - t0
        print(f"host stages{' + device_put' if put else ''}: {n / dt:.0f} images/s")
    x = np.zeros((56, b, 32, 32, 3), np.uint8)
    import jax  # noqa: E402

    for _ in range(3):
        t0 = time.perf_counter()
        jax.block_until_ready(jax.device_put(x))
        print(f"device_put of one stage ({x.nbytes / 2**20:.0f} MiB): {(time.perf_counter() - t0) * 1e3:.1f} ms")


if __name__ == "__main__":  # the decoding workers import this script
    main()
