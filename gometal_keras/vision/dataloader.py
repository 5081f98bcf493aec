"""`DataLoader`: Go-Metal's `vision/dataloader`: batches of decoded images from a data set.

Each batch is decoded by Pillow in a pool of workers (`vision.decoder`: threads, or
processes with ``use_multiprocessing=True``; the next batches' files are submitted before
this one is waited for), resized to ``image_size``, scaled to [0, 1] and given channels-last,
``(batch, H, W, C)``: the layout of the model a `ModelBuilder([batch, C, H, W])` builds.
Decoded images are kept in an `ImageCache` as bytes, so later epochs read memory, not
files, a whole batch per read; `create_shared_data_loaders` gives a train and a validation
loader one cache (Go-Metal's `CreateSharedDataLoaders`). `pixel_batches` gives the bytes
themselves, which the Trainer stages and scales on the device (`gometal_keras.core.pixels`).

The epoch order is a permutation drawn from ``(seed, epoch)``: the same seed gives the
same order in every run, and a run resumed at epoch ``e`` (`set_epoch`) sees epoch e's.

``augment=Augmentation(...)`` (`vision.augment`; off by default) crops, flips and jitters the
training batches (`pixel_batches`, iteration, `next_batch`, `get_batch`), drawn from
``(augment.seed, epoch, batch)``; they are then float32 in [0, 1]. `file_batches` (what
`Trainer.predict` reads) and the validation loader of `create_shared_data_loaders` are never
augmented.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from gometal_keras.core import pixels
from gometal_keras.core.integers import count
from gometal_keras.data.validation import warn_caller
from gometal_keras.vision.augment import Augmentation
from gometal_keras.vision.cache import CacheStats, ImageCache
from gometal_keras.vision.check import unreadable_files
from gometal_keras.vision.decode import UnreadableImageError
from gometal_keras.vision.decoder import CHUNK, Decoder
from gometal_keras.vision.reader import POLICIES, BatchReader

#: Bytes of pixels read at once by `DataLoader.pixel_batches` (whole batches, one at
#: least): small images are read many batches at a time, large ones a batch at a time.
READ_BYTES = 4 * 2**20
#: Most reads whose files are submitted ahead of the one handed out.
MAX_AHEAD = 8
#: Unreadable files a message names (the rest are counted).
NAMED = 3


class Dataset(Protocol):
    """Go-Metal's `Dataset` interface: a length and ``get_item(i) -> (path, label)``."""

    def __len__(self) -> int: ...

    def get_item(self, index: int) -> tuple[str, int]: ...


class DataLoader:
    """Batches of decoded, resized, [0, 1]-scaled images with their labels.

    Args:
        dataset: An `ImageFolderDataset` (or anything with ``len`` and ``get_item``).
        batch_size: Images per batch (the last batch of an epoch may be smaller).
        shuffle: Draw a new order each epoch (from `seed` and the epoch number).
        image_size: Height and width of every image after resizing.
        max_cache_size: Most decoded images kept in memory (0 = none).
        num_workers: Decoding workers (default: the CPU count, at most 8).
        use_multiprocessing: Decode in worker processes, which scale with the cores
            (threads share one core's worth of Pillow's Python). As with Keras'
            `PyDataset`, a script doing so must start under ``if __name__ ==
            "__main__":`` (each worker imports it).
        channels: 3 (RGB) or 1 (grey).
        seed: Seed of the epoch orders.
        on_error: ``"raise"`` (default): a file that cannot be decoded raises
            `UnreadableImageError` naming it; ``"skip"``: it is left out of its batch,
            counted in `skipped` and never read again. Before the first batch, every
            file's first and last bytes are checked (`check_files`), so an empty, cut
            or non-image file is answered before any is decoded.
        cache: An `ImageCache` to share; default a new one of `max_cache_size`.
        augment: An `Augmentation` of the training batches (None: off, the batches are
            the decoded images exactly).

    Example:
        >>> import os, tempfile
        >>> from PIL import Image
        >>> from gometal_keras.vision import ImageFolderDataset
        >>> root = tempfile.mkdtemp()
        >>> for i in range(5):
        ...     os.makedirs(os.path.join(root, f"c{i % 2}"), exist_ok=True)
        ...     Image.new("RGB", (9, 7), (255, 0, 0)).save(os.path.join(root, f"c{i % 2}/{i}.png"))
        >>> loader = DataLoader(ImageFolderDataset(root), batch_size=2, image_size=4)
        >>> images, labels = loader.next_batch()
        >>> images.shape, images.dtype, float(images[..., 0].max()), loader.progress()
        ((2, 4, 4, 3), dtype('float32'), 1.0, (2, 5))
        >>> sum(len(y) for _, y in loader), loader.cache_stats().size
        (5, 5)
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 32,
        shuffle: bool = True,
        image_size: int = 224,
        max_cache_size: int = 1000,
        num_workers: int | None = None,
        use_multiprocessing: bool = False,
        channels: int = 3,
        seed: int = 0,
        on_error: str = "raise",
        cache: ImageCache | None = None,
        augment: Augmentation | None = None,
    ):
        batch_size, image_size = count("batch_size", batch_size), count("image_size", image_size)
        if on_error not in POLICIES:
            raise ValueError(f"on_error is {on_error!r}; expected one of {POLICIES}.")
        if channels not in (1, 3):
            raise ValueError(f"channels is {channels!r}; expected 1 (grey) or 3 (RGB).")
        if len(dataset) == 0:
            raise ValueError("The data set is empty; expected at least one image.")
        if augment is not None and not isinstance(augment, Augmentation):
            raise TypeError(f"augment is {augment!r}; expected None or an Augmentation.")
        if augment is not None:
            augment.check(image_size)
        self.augment = augment if augment is not None and augment.active else None
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.image_size, self.channels, self.seed, self.on_error = (
            image_size,
            channels,
            seed,
            on_error,
        )
        self.cache = cache if cache is not None else ImageCache(max_cache_size)
        items = [dataset.get_item(i) for i in range(len(dataset))]
        self.num_workers = num_workers or min(8, os.cpu_count() or 1)
        decoder = Decoder(self.num_workers, bool(use_multiprocessing))
        self._reader = BatchReader(items, self.cache, decoder, image_size, channels, on_error)
        self.epoch, self._position = 0, 0
        self._order = self._epoch_order(0)
        self._checked = False

    @property
    def skipped(self) -> list[str]:
        """The files left out as unreadable (``on_error="skip"``), in the order found."""
        return self._reader.skipped

    @property
    def samples(self) -> int:
        """Images per epoch: the data set's, less the files skipped as unreadable so far."""
        return len(self.dataset) - len(self._reader.skipped)

    @property
    def num_classes(self) -> int | None:
        """The data set's class count, where it has one."""
        return getattr(self.dataset, "num_classes", None)

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.dataset))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch`'s order from its beginning (the Trainer calls this)."""
        self.epoch, self._position = int(epoch), 0
        self._order = self._epoch_order(self.epoch)

    def reset(self) -> None:
        """Start the next epoch (a new order when shuffling), Go-Metal's `Reset`."""
        self.set_epoch(self.epoch + 1)

    def progress(self) -> tuple[int, int]:
        """``(images handed out this epoch, images per epoch)``."""
        return self._position, len(self._order)

    def __len__(self) -> int:
        return -(-len(self.dataset) // self.batch_size)

    def next_batch(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The next ``(images, labels)`` of this epoch, or None once the epoch is done.

        Raises:
            UnreadableImageError: A file cannot be decoded and `on_error` is ``"raise"``.
        """
        self.check_files()
        while self._position < len(self._order):
            take = self._order[self._position : self._position + self.batch_size]
            index = self._position // self.batch_size
            self._position += len(take)
            batch = self._read(take)
            if batch is not None:
                return pixels.to_unit(self._augmented(batch[0], index)), batch[1]
        return None

    def _augmented(self, images: np.ndarray, index: int) -> np.ndarray:
        """Batch `index` of this epoch through `augment` (as it is when augment is off)."""
        if self.augment is None:
            return images
        return self.augment.apply(pixels.to_unit(images), self.epoch, index)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of the current epoch from its start; the next epoch follows."""
        for images, labels in self.pixel_batches():
            yield pixels.to_unit(images), labels

    def pixel_batches(self, epoch: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of epoch `epoch` (default: the current one) as decoded pixels.

        What the Trainer streams: ``uint8`` bytes for 8-bit images (float32 in [0, 1]
        where a batch holds a 16-bit image), scaled on the device; iterating the loader
        gives the same batches as floats (`gometal_keras.core.pixels.to_unit`). The files of
        the next few batches are submitted to the workers before this one is waited for.
        The next epoch follows.

        Files are read about `READ_BYTES` of pixels at a time (whole batches), handed
        out as batches: a file skipped as unreadable shortens the last batch of its read.
        With `augment` on, the batches are augmented, float32 in [0, 1].

        Raises:
            UnreadableImageError: A file cannot be decoded and `on_error` is ``"raise"``.
        """
        for index, (images, labels, _) in enumerate(self._reads(epoch)):
            yield self._augmented(images, index), labels

    def file_batches(
        self, epoch: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
        """The batches of epoch `epoch` as ``(images, labels, files)``: each row's file.

        The batches `iter(loader)` gives (float32 in [0, 1]), with the path of the file
        each row was decoded from: a file skipped as unreadable has no row, so rows and
        files stay tied. What `Trainer.predict` reads to name each output's file.

        Example:
            >>> import os, tempfile
            >>> from PIL import Image
            >>> from gometal_keras.vision import ImageFolderDataset
            >>> root = tempfile.mkdtemp()
            >>> for name in ("a/1.png", "a/2.png", "b/3.png"):
            ...     os.makedirs(os.path.join(root, os.path.dirname(name)), exist_ok=True)
            ...     Image.new("L", (5, 5), 9).save(os.path.join(root, name))
            >>> with open(os.path.join(root, "b/4.png"), "w") as fh:
            ...     _ = fh.write("not an image")
            >>> loader = DataLoader(ImageFolderDataset(root), 2, False, 4, on_error="skip")
            >>> import warnings; warnings.simplefilter("ignore")
            >>> [[os.path.basename(f) for f in files] for _, _, files in loader.file_batches()]
            [['1.png', '2.png'], ['3.png']]
        """
        for images, labels, items in self._reads(epoch):
            yield pixels.to_unit(images), labels, self._reader.paths(items)

    def _reads(self, epoch: int | None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(pixels, labels, items)`` batches of an epoch (see `pixel_batches`)."""
        self.check_files()
        if epoch is not None:
            self.set_epoch(epoch)
        order, b, ahead = self._order, self.batch_size, collections.deque()
        image_bytes = self.image_size**2 * self.channels
        unit = b * max(1, READ_BYTES // (image_bytes * b))
        depth = max(1, min(MAX_AHEAD, 2 * self.num_workers * CHUNK // unit))
        self._position = 0
        for start in range(0, len(order) + unit * depth, unit):
            if start < len(order):
                ahead.append(self._reader.start(order[start : start + unit]))
            if len(ahead) > depth or (start >= len(order) and ahead):
                started = ahead.popleft()
                read = self._reader.finish_items(started)
                for i in range(0, 0 if read is None else len(read[1]), b):
                    batch = read[0][i : i + b], read[1][i : i + b], read[2][i : i + b]
                    self._position += len(batch[1])
                    yield batch
                self._position += started.size - (0 if read is None else len(read[1]))
        self.reset()

    def get_batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch `index` of this epoch's order, in any order (what `keras.utils.PyDataset`
        asks for); it does not move `progress`.

        Raises:
            IndexError: `index` is not below ``len(loader)``.
            UnreadableImageError: A file cannot be decoded and `on_error` is ``"raise"``.
        """
        self.check_files()
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} is outside an epoch of {len(self)} batches.")
        take = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = self._read(take)
        if batch is None:
            raise UnreadableImageError(f"Every image of batch {index} was skipped as unreadable.")
        return pixels.to_unit(self._augmented(batch[0], index)), batch[1]

    def _read(self, take: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        return self._reader.finish(self._reader.start(take))

    def verify(self) -> list[str]:
        """The files that cannot be decoded, found by their first and last bytes.

        Each file's head and tail are read (`gometal_keras.vision.check`: a few
        microseconds a file, about a second for 100,000); a file that fails is decoded
        once to confirm. Empty, cut and non-image files are found; a file whose ends are
        good but whose body is broken is found only when decoded (raised or skipped then,
        by `on_error`). Nothing is left out or raised: `check_files` does that.

        Returns:
            The unreadable files, in the data set's order.
        """
        return list(self._unreadable())

    def _unreadable(self) -> dict[str, str]:
        paths = [self.dataset.get_item(i)[0] for i in range(len(self.dataset))]
        return unreadable_files(paths, min(self.image_size, 8), self.channels)

    def check_files(self) -> list[str]:
        """Answer the unreadable files before any is decoded (once per loader; the
        Trainer calls it before the first step of `fit`, `evaluate` and `predict`).

        With ``on_error="raise"`` they raise one sentence naming them; with ``"skip"``
        they are left out (listed in `skipped`), and a warning says so once.

        Returns:
            The files found unreadable and left out (empty when all look readable, and
            on every call after the first that passed).

        Raises:
            UnreadableImageError: Files cannot be decoded and `on_error` is ``"raise"``
                (the check runs again on the next call, so a fixed folder passes).
        """
        if self._checked:
            return []
        found = self._unreadable()
        total = len(self.dataset)
        if found and self.on_error == "raise":
            raise UnreadableImageError(
                f"{_count(found, total)} cannot be decoded, found by their first and last "
                f"bytes before any step: {_named(found)}; expected readable images, or "
                'on_error="skip" to leave them out.'
            )
        self._checked = True
        if found:
            self._reader.leave_out(list(found))
            warn_caller(
                f"{_count(found, total)} cannot be decoded and are left out "
                f'(on_error="skip"): {_named(found)}; loader.skipped lists them.'
            )
        return list(found)

    def cache_stats(self) -> CacheStats:
        """The cache's size, hits, misses and hit rate (shared caches count every loader)."""
        return self.cache.stats()

    def stats(self) -> str:
        """Go-Metal's `Stats()` line, e.g. ``Cache: 5/1000 items, Hits: 0, ...``."""
        return str(self.cache_stats())

    def close(self) -> None:
        """Stop the decoding workers (a later batch starts new ones)."""
        self._reader.decoder.close()

    NextBatch = next_batch
    Reset = reset
    Progress = progress
    Stats = stats


def _count(found: dict[str, str], total: int) -> str:
    """``"1 of 24 image files"``."""
    return f"{len(found)} of {total} image file{'s' if total != 1 else ''}"


def _named(found: dict[str, str]) -> str:
    """The first `NAMED` files with their reasons, and how many more."""
    named = [f"{path!r} ({reason})" for path, reason in list(found.items())[:NAMED]]
    more = len(found) - len(named)
    return ", ".join(named) + (f" and {more} more" if more else "")


def create_shared_data_loaders(
    train: Dataset, validation: Dataset, **options: Any
) -> tuple[DataLoader, DataLoader]:
    """A train and a validation `DataLoader` sharing one image cache.

    Args:
        train: The training data set (shuffled unless ``shuffle=False`` is given).
        validation: The validation data set (never shuffled).
        **options: `DataLoader` arguments (``batch_size``, ``image_size``,
            ``max_cache_size``, ...), for both; ``augment`` for the training loader only.

    Returns:
        ``(train_loader, validation_loader)``.
    """
    cache = options.pop("cache", None) or ImageCache(options.pop("max_cache_size", 1000))
    options.pop("max_cache_size", None)
    val_options = {**options, "shuffle": False, "augment": None}
    train_loader = DataLoader(train, cache=cache, **options)
    return train_loader, DataLoader(validation, cache=cache, **val_options)
