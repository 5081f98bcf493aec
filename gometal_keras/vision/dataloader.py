"""`DataLoader`: Go-Metal's `vision/dataloader`: batches of decoded images from a data set.

Each batch is decoded by Pillow in a pool of worker threads (`concurrent.futures`;
Pillow releases the GIL while it decodes and resizes), resized to ``image_size``, scaled
to [0, 1] and given channels-last, ``(batch, H, W, C)``: the layout of the model a
`ModelBuilder([batch, C, H, W])` builds. Decoded images are kept in an `ImageCache`, so
later epochs read memory, not files; `create_shared_data_loaders` gives a train and a
validation loader one cache (Go-Metal's `CreateSharedDataLoaders`).

The epoch order is a permutation drawn from ``(seed, epoch)``: the same seed gives the
same order in every run, and a run resumed at epoch ``e`` (`set_epoch`) sees epoch e's.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from gometal_keras.vision.cache import CacheStats, ImageCache
from gometal_keras.vision.decode import UnreadableImageError, decode_image

#: What to do with a file Pillow cannot decode.
POLICIES = ("raise", "skip")


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
        num_workers: Decoding threads (default: the CPU count, at most 8).
        channels: 3 (RGB) or 1 (grey).
        seed: Seed of the epoch orders.
        on_error: ``"raise"`` (default): a file that cannot be decoded raises
            `UnreadableImageError` naming it; ``"skip"``: it is left out of its batch,
            counted in `skipped` and never read again.
        cache: An `ImageCache` to share; default a new one of `max_cache_size`.

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
        channels: int = 3,
        seed: int = 0,
        on_error: str = "raise",
        cache: ImageCache | None = None,
    ):
        for name, value in (("batch_size", batch_size), ("image_size", image_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} is {value!r}; expected an int of at least 1.")
        if on_error not in POLICIES:
            raise ValueError(f"on_error is {on_error!r}; expected one of {POLICIES}.")
        if channels not in (1, 3):
            raise ValueError(f"channels is {channels!r}; expected 1 (grey) or 3 (RGB).")
        if len(dataset) == 0:
            raise ValueError("The data set is empty; expected at least one image.")
        self.dataset, self.batch_size, self.shuffle = dataset, batch_size, shuffle
        self.image_size, self.channels, self.seed, self.on_error = (
            image_size,
            channels,
            seed,
            on_error,
        )
        self.cache = cache if cache is not None else ImageCache(max_cache_size)
        self.num_workers = num_workers or min(8, os.cpu_count() or 1)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.num_workers, thread_name_prefix="gometal-decode"
        )
        self.skipped: list[str] = []
        self._bad: set[str] = set()
        self.epoch, self._position = 0, 0
        self._order = self._epoch_order(0)

    @property
    def samples(self) -> int:
        """Images per epoch (before any skipped file)."""
        return len(self.dataset)

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
        while self._position < len(self._order):
            take = self._order[self._position : self._position + self.batch_size]
            self._position += len(take)
            batch = self._load([self.dataset.get_item(int(i)) for i in take])
            if batch is not None:
                return batch
        return None

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The batches of the current epoch from its start; the next epoch follows."""
        self._position = 0
        while (batch := self.next_batch()) is not None:
            yield batch
        self.reset()

    def get_batch(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch `index` of this epoch's order, in any order (what `keras.utils.PyDataset`
        asks for); it does not move `progress`.

        Raises:
            IndexError: `index` is not below ``len(loader)``.
            UnreadableImageError: A file cannot be decoded and `on_error` is ``"raise"``.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} is outside an epoch of {len(self)} batches.")
        take = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        batch = self._load([self.dataset.get_item(int(i)) for i in take])
        if batch is None:
            raise UnreadableImageError(f"Every image of batch {index} was skipped as unreadable.")
        return batch

    def _load(self, items: list[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray] | None:
        keys = [(path, self.image_size, self.channels) for path, _ in items]
        images: list[Any] = [None if k[0] in self._bad else self.cache.get(k) for k in keys]
        missing = [i for i, img in enumerate(images) if img is None and keys[i][0] not in self._bad]
        decoded = self._pool.map(self._decode, [keys[i][0] for i in missing])
        for i, image in zip(missing, decoded, strict=True):
            if isinstance(image, UnreadableImageError):
                if self.on_error == "raise":
                    raise image
                self._bad.add(keys[i][0])
                self.skipped.append(keys[i][0])
                continue
            self.cache.put(keys[i], image)
            images[i] = image
        keep = [i for i, img in enumerate(images) if img is not None]
        if not keep:
            return None
        labels = np.fromiter((items[i][1] for i in keep), np.int32, len(keep))
        return np.stack([images[i] for i in keep]), labels

    def _decode(self, path: str) -> np.ndarray | UnreadableImageError:
        try:
            return decode_image(path, self.image_size, self.channels)
        except UnreadableImageError as err:
            return err

    def verify(self) -> list[str]:
        """Open every file's header (no decoding): the ones that are not images, listed.

        Cheap enough to run before training, so a folder with a stray non-image file is
        answered before any step; a file whose header is good but whose body is broken
        is only found when decoded (raised or skipped then, by `on_error`).
        """
        from PIL import Image

        def bad(path: str) -> bool:
            try:
                with Image.open(path):
                    return False
            except Exception:
                return True

        paths = [self.dataset.get_item(i)[0] for i in range(len(self.dataset))]
        return [p for p, b in zip(paths, self._pool.map(bad, paths), strict=True) if b]

    def cache_stats(self) -> CacheStats:
        """The cache's size, hits, misses and hit rate (shared caches count every loader)."""
        return self.cache.stats()

    def stats(self) -> str:
        """Go-Metal's `Stats()` line, e.g. ``Cache: 5/1000 items, Hits: 0, ...``."""
        return str(self.cache_stats())

    def close(self) -> None:
        """Stop the worker threads (the loader cannot load after this)."""
        self._pool.shutdown(wait=False)

    NextBatch = next_batch
    Reset = reset
    Progress = progress
    Stats = stats


def create_shared_data_loaders(
    train: Dataset, validation: Dataset, **options: Any
) -> tuple[DataLoader, DataLoader]:
    """A train and a validation `DataLoader` sharing one image cache.

    Args:
        train: The training data set (shuffled unless ``shuffle=False`` is given).
        validation: The validation data set (never shuffled).
        **options: `DataLoader` arguments (``batch_size``, ``image_size``,
            ``max_cache_size``, ...), for both.

    Returns:
        ``(train_loader, validation_loader)``.
    """
    cache = options.pop("cache", None) or ImageCache(options.pop("max_cache_size", 1000))
    options.pop("max_cache_size", None)
    val_options = {**options, "shuffle": False}
    train_loader = DataLoader(train, cache=cache, **options)
    return train_loader, DataLoader(validation, cache=cache, **val_options)


CreateSharedDataLoaders = create_shared_data_loaders
