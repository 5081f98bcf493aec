"""A Go-Metal builder CNN trained from image files on disk, in float32 and mixed precision.

Go-Metal's flagship example trains a CNN on a cats-vs-dogs image folder through its
``vision/dataset`` and ``vision/dataloader``; this is the same on Keras. Give a folder with
``--data PATH``: one sub-folder per class (Go-Metal's ``data/cat``, ``data/dog``; any
classes), or Kaggle's flat ``cat.0.jpg``/``dog.0.jpg`` files. Without ``--data`` it first
writes a small folder of real PNG and JPEG files made from scikit-learn's bundled digits
(nothing is downloaded).

The files are split 80/20 into two `DataLoader`s sharing one decoded-image cache (Go-Metal's
`CreateSharedDataLoaders`); the Trainer streams them (decoding in parallel workers in the
first epoch, from the cache after), once in float32 and once in mixed precision, and prints
validation accuracy, images per second and the cache statistics.

Run: python examples/image_folder_cnn.py [--data PATH] [--epochs 8] [--image-size 32]
     [--xla off|on|auto] (auto, the default: the trainer times XLA on and off)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence

import numpy as np

from gometal_keras import ModelBuilder, Trainer, TrainerConfig
from gometal_keras.vision import (
    CatsDogsDataset,
    ImageFolderDataset,
    create_shared_data_loaders,
)

BATCH = 32


def write_digits(root: str, per_class: int = 0) -> str:
    """Write scikit-learn's 8x8 digits as 16x16 RGB files, PNG and JPEG alternately.

    Args:
        root: Folder to fill, one sub-folder per digit.
        per_class: At most this many images per digit (0 = all, about 180).

    Returns:
        `root`.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    written = dict.fromkeys(range(10), 0)
    for i, (image, label) in enumerate(zip(data.images, data.target, strict=True)):
        if per_class and written[label] >= per_class:
            continue
        os.makedirs(os.path.join(root, str(label)), exist_ok=True)
        grey = Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((16, 16))
        ext = "png" if i % 2 else "jpg"
        grey.convert("RGB").save(os.path.join(root, str(label), f"{i:04d}.{ext}"))
        written[label] += 1
    return root


def open_folder(path: str) -> ImageFolderDataset:
    """Class sub-folders as they are; Kaggle's flat cats-vs-dogs files as two classes."""
    has_folders = any(e.is_dir() for e in os.scandir(path))
    return ImageFolderDataset(path) if has_folders else CatsDogsDataset(path)


def builder(size: int, classes: int) -> ModelBuilder:
    """The CNN as a Go-Metal builder chain, input [batch, channels, height, width]."""
    return (
        ModelBuilder([BATCH, 3, size, size])
        .AddConv2D(16, 3, 1, 1, True, "conv1")
        .AddReLU("relu1")
        .AddMaxPool2D(2, 2, "pool1")
        .AddConv2D(32, 3, 1, 1, True, "conv2")
        .AddReLU("relu2")
        .AddMaxPool2D(2, 2, "pool2")
        .AddDense(64, True, "dense")
        .AddReLU("relu3")
        .AddDense(classes, True, "output")
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Train float32 and mixed from the folder; print accuracy, images/s and the cache."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="image folder (default: write the digits as files)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=None, help="default 16, 64 with --data")
    parser.add_argument("--per-class", type=int, default=0, help="digits per class (0 = all)")
    parser.add_argument("--out", help="where the digits' files go (default a temporary folder)")
    parser.add_argument("--mixed", default="mixed_bfloat16", help="the second run's precision")
    parser.add_argument("--on-error", choices=("skip", "raise"), default="skip")
    parser.add_argument("--xla", choices=("off", "on", "auto"), default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--processes", action="store_true", help="decode in worker processes (many cores)"
    )
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be a positive integer.")
    out = args.out or tempfile.mkdtemp(prefix="digits-")
    path = args.data or write_digits(out, args.per_class)
    size = args.image_size or (64 if args.data else 16)
    dataset = open_folder(path)
    print(dataset.summary())
    train, val = dataset.split(0.8, shuffle=True, seed=args.seed)
    train_loader, val_loader = create_shared_data_loaders(
        train,
        val,
        batch_size=BATCH,
        image_size=size,
        max_cache_size=len(dataset),
        seed=args.seed,
        on_error=args.on_error,
        use_multiprocessing=args.processes,
    )
    not_images = train_loader.verify() + val_loader.verify()
    if not_images:
        print(f"{len(not_images)} files are not images, e.g. {not_images[0]}")
    for n, precision in enumerate(("float32", args.mixed)):
        config = TrainerConfig(
            batch_size=BATCH,
            learning_rate=2e-3,
            precision=precision,
            seed=args.seed,
            jit_compile={"off": False, "on": True, "auto": None}[args.xla],
        )
        trainer = Trainer(builder(size, dataset.num_classes), config)
        run = trainer.fit(train_loader, epochs=args.epochs, validation_data=val_loader)
        labels = np.concatenate([y for _, y in val_loader])
        accuracy = float((trainer.predict(val_loader).argmax(-1) == labels).mean())
        images = (len(train) - len(train_loader.skipped)) // BATCH * BATCH
        first = images / run.epoch_seconds[0]
        later = run.epoch_seconds[1:] or run.epoch_seconds
        print(
            f"{precision:>14} -> {trainer.precision:<14} validation accuracy {accuracy:.2%}  "
            f"{first:.0f} images/s in epoch 1 ({'compiling' + (', decoding' if n == 0 else '')}), "
            f"{images / statistics.median(later):.0f} images/s after (cached)"
        )
    print(train_loader.stats())
    skipped = train_loader.skipped + val_loader.skipped
    if skipped:
        print(f"skipped {len(skipped)} unreadable files, e.g. {skipped[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
