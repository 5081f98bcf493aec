"""The ``streaming`` configuration: a CNN trained from a folder of PNG files on disk.

``python -m gometal_keras.bench --configs streaming`` writes N 32x32 RGB PNGs in 10 class
folders (50,000 by default, ``--images``; ``--quick`` 2,000), then, per precision
(``--precisions``, default float32 and mixed_bfloat16), times epoch against epoch in
`ROUNDS` interleaved rounds, in images per second:

- ``trainer-stream-epoch1``: the Trainer streaming from a `DataLoader`, decoding every
  file (its first epoch, compilation included);
- ``trainer-stream``: the same, later epochs (decoded images from the loader's cache):
  the second epoch of a two-epoch ``fit``, as a user's run has them;
- ``trainer-arrays``: the Trainer on the same images as in-memory arrays (the ceiling),
  timed the same way;
- ``keras-fit``: Keras ``fit`` on the best pipeline its users write: on TensorFlow
  ``tf.data`` (read, decode, resize, cache, shuffle, batch, prefetch); elsewhere the
  same `DataLoader` as a `keras.utils.PyDataset`.

Each row says whether it was input-bound or device-bound: a streamed Trainer row is
device-bound when it runs within 10 % of the in-memory Trainer (the same program, no
input), else the host's side (reading, staging, copying) held it back; other rows are
input-bound when their input pipeline alone, timed apart, is barely faster than the run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

import keras
import numpy as np

from gometal_keras.bench.configs import cnn
from gometal_keras.core.config import TrainerConfig
from gometal_keras.engines.objectives import make_loss, make_optimizer
from gometal_keras.reporting import environment
from gometal_keras.training.timing import EpochTimer
from gometal_keras.training.trainer import Trainer
from gometal_keras.vision import DataLoader, ImageFolderDataset

#: Within this share of its pipeline's own rate, a run is input-bound.
INPUT_BOUND = 0.8
#: Within this share of the in-memory Trainer's rate, a streamed run is device-bound.
DEVICE_BOUND = 0.9


def write_folder(root: str, images: int, size: int = 32, seed: int = 0) -> str:
    """Write `images` RGB PNGs of ``size x size`` in 10 class folders (kept if present).

    Example:
        >>> root = write_folder(tempfile.mkdtemp(), 20, size=4)
        >>> len(ImageFolderDataset(root)), ImageFolderDataset(root).num_classes
        (20, 10)
    """
    from PIL import Image

    marker = os.path.join(root, f".written-{images}-{size}")
    if os.path.exists(marker):
        return root

    def one(i: int) -> None:
        rng = np.random.default_rng([seed, i])
        label = i % 10
        base = np.array([25 * label, 255 - 25 * label, 128], np.float32)
        pixels = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, f"class{label}", f"{i:06d}.png"))

    for label in range(10):
        os.makedirs(os.path.join(root, f"class{label}"), exist_ok=True)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(one, range(images)))
    open(marker, "w").close()
    return root


class LoaderSequence(keras.utils.PyDataset):
    """A `DataLoader` as the `keras.utils.PyDataset` Keras ``fit`` takes on any backend."""

    def __init__(self, loader: DataLoader):
        super().__init__()
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.loader.get_batch(index)

    def on_epoch_end(self) -> None:
        self.loader.reset()


def tf_pipeline(root: str, batch: int, size: int) -> Any:
    """Keras users' tf.data input: read, decode, resize, scale, cache, shuffle, batch, prefetch."""
    import tensorflow as tf

    ds = ImageFolderDataset(root)
    files = tf.data.Dataset.from_tensor_slices((ds.paths, ds.labels))

    def load(path, label):
        image = tf.io.decode_png(tf.io.read_file(path), channels=3)
        return tf.image.resize(image, (size, size)) / 255.0, label

    auto = tf.data.AUTOTUNE
    files = files.map(load, num_parallel_calls=auto).cache().shuffle(4096, seed=0)
    return files.batch(batch, drop_remainder=True).prefetch(auto)


def _rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def _iterate(batches: Any) -> tuple[int, float]:
    """Images in one pass of `batches` and its seconds: the input pipeline alone."""
    t0, count = time.perf_counter(), 0
    for x, _ in batches:
        count += len(x)
    return count, time.perf_counter() - t0


def run(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Measure every row; return the JSON-ready result."""
    root = args.folder or os.path.join(tempfile.gettempdir(), f"gometal-stream-{args.images}")
    t0 = time.perf_counter()
    write_folder(root, args.images)
    log(f"folder {root}: {args.images} PNGs ({time.perf_counter() - t0:.1f} s)")
    ds, b, size = ImageFolderDataset(root), args.batch_size, 32
    filters, hidden = ((16, 32, 64), 128) if args.quick else ((32, 64, 128), 256)
    builder = cnn(filters, hidden)(b)
    config = TrainerConfig(batch_size=b, precision=args.precision, seed=0)
    steps = len(ds) // b
    used = steps * b

    cold = DataLoader(ds, b, image_size=size, max_cache_size=0, use_multiprocessing=True)
    decode_rate = _rate(*_iterate(cold))
    log(f"input alone, decoding: {decode_rate:.0f} images/s")
    loader = DataLoader(
        ds, b, image_size=size, max_cache_size=len(ds), seed=0, use_multiprocessing=True
    )
    streamer = Trainer(builder, config)
    t1 = time.perf_counter()
    streamer.fit(loader, epochs=1)
    epoch1 = time.perf_counter() - t1
    cached_rate = _rate(*_iterate(loader.pixel_batches()))  # bytes, as the Trainer reads them
    log(f"streaming epoch 1 {used / epoch1:.0f} images/s; input alone, cached: {cached_rate:.0f}")

    ordered = DataLoader(ds, b, shuffle=False, image_size=size, cache=loader.cache)
    x = np.concatenate([bx for bx, _ in ordered])
    y = np.concatenate([by for _, by in ordered])
    arrays = Trainer(cnn(filters, hidden)(b), config)
    arranged = arrays.arrange(x, y)
    arrays.train_epoch(arranged)  # compiles

    keras_model, keras_input, pipeline = _keras(args, root, loader, builder, config)
    timer = EpochTimer(time_steps=False)
    keras_model.fit(keras_input, epochs=1, verbose=0, callbacks=[timer])
    keras_epoch1 = timer.epoch_seconds[-1]
    keras_input_rate = _rate(*_iterate(keras_input))

    times: dict[str, list[float]] = {"trainer-stream": [], "trainer-arrays": [], "keras-fit": []}
    for r in range(args.rounds):  # each Trainer row: the second epoch of a two-epoch fit
        streamed, resident = streamer.fit(loader, epochs=2), arrays.fit(x, y, epochs=2)
        times["trainer-stream"].append(streamed.epoch_seconds[-1])
        times["trainer-arrays"].append(resident.epoch_seconds[-1])
        keras_model.fit(keras_input, epochs=1, verbose=0, callbacks=[timer])
        times["keras-fit"].append(timer.epoch_seconds[-1])
        log(f"round {r + 1}: " + ", ".join(f"{k} {used / v[-1]:.0f}" for k, v in times.items()))

    rows = [
        _row("trainer-stream-epoch1", used, [epoch1], decode_rate, "DataLoader, decoding"),
        _row("trainer-stream", used, times["trainer-stream"], cached_rate, streamed.loop),
        _row("trainer-arrays", used, times["trainer-arrays"], None, resident.loop),
        _row("keras-fit-epoch1", used, [keras_epoch1], None, pipeline + ", first epoch"),
        _row("keras-fit", used, times["keras-fit"], keras_input_rate, pipeline),
    ]
    rate = {row["name"]: row["images_per_s"] for row in rows}
    rows[1]["bound"] = (
        "device-bound"
        if rate["trainer-stream"] >= DEVICE_BOUND * rate["trainer-arrays"]
        else "input-bound"
    )
    return dict(
        schema="gometal_keras.bench.streaming/1",
        command=" ".join([sys.executable, "-m", "gometal_keras.bench", *sys.argv[1:]]),
        date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        machine=platform.platform(),
        backend=keras.backend.backend(),
        versions=environment.versions(),
        images=len(ds),
        batch_size=b,
        precision=streamer.plan.label(),
        cache=str(loader.cache_stats()),
        rows=rows,
        stream_vs_arrays=rate["trainer-stream"] / rate["trainer-arrays"],
        stream_vs_keras=rate["trainer-stream"] / rate["keras-fit"],
    )


def _keras(
    args: argparse.Namespace, root: str, loader: DataLoader, builder: Any, config: TrainerConfig
) -> tuple[keras.Model, Any, str]:
    """Keras' own model, compiled as its users do, and its best input pipeline."""
    model = builder.compile(config.precision, seed=0)
    model.compile(
        optimizer=make_optimizer(config, config.loss_scaling_for(config.precision)),
        loss=make_loss(config, model),
        jit_compile=keras.backend.backend() != "torch",
        steps_per_execution=16 if keras.backend.backend() != "torch" else 1,
    )
    if keras.backend.backend() == "tensorflow":
        return model, tf_pipeline(root, args.batch_size, 32), "tf.data cache+prefetch"
    sequence = LoaderSequence(
        DataLoader(loader.dataset, args.batch_size, image_size=32, cache=loader.cache)
    )
    return model, sequence, "DataLoader as PyDataset"


def _row(name: str, images: int, seconds: list[float], pipeline: float | None, how: str):
    rate = _rate(images, statistics.median(seconds))
    bound = (
        None
        if pipeline is None
        else ("input-bound" if rate >= INPUT_BOUND * pipeline else "device-bound")
    )
    return dict(
        name=name,
        images_per_s=rate,
        seconds=seconds,
        pipeline_images_per_s=pipeline,
        bound=bound,
        how=how,
    )


#: Interleaved rounds of the streaming configuration (each a two-epoch ``fit`` per row).
ROUNDS = 3


def run_all(args: argparse.Namespace, log: Any = print) -> list[dict[str, Any]]:
    """Run the configuration once per precision of ``args.streaming_precisions``; print each.

    Args:
        args: The benchmark's flags (`gometal_keras.bench.__main__.parse_args`): ``images``,
            ``folder``, ``quick``, ``streaming_precisions``.
        log: Called with lines of progress.

    Returns:
        One JSON-ready result per precision (schema ``gometal_keras.bench.streaming/1``).
    """
    out = []
    for precision in args.streaming_precisions:
        one = argparse.Namespace(
            images=args.images or (2000 if args.quick else 50000),
            batch_size=64 if args.quick else 128,
            precision=precision,
            rounds=ROUNDS,
            folder=args.folder,
            quick=args.quick,
        )
        result = run(one, log)
        show(result)
        out.append(result)
    return out


def show(result: dict[str, Any]) -> None:
    """Print a streaming result: one line per row, then the two ratios."""
    print(
        f"streaming: {result['images']} images, batch {result['batch_size']}, "
        f"{result['precision']}, {result['backend']}; {result['cache']}"
    )
    for row in result["rows"]:
        bound = row["bound"] or "-"
        print(f"{row['name']:<22} {row['images_per_s']:>10.0f} images/s  {bound:<13} {row['how']}")
    print(
        f"cached streaming / in-memory Trainer: {result['stream_vs_arrays']:.2f}; "
        f"/ Keras fit: {result['stream_vs_keras']:.2f}"
    )
