"""`BatchReader`: one batch of image files read through the cache and the decoder.

A read has two halves, so a loader can begin the next batches before it waits for this
one: `start` takes every cached image of the batch in one read and submits the rest to
the `Decoder`; `finish` waits for them, caches them, and puts the batch together in its
order. An unreadable file raises (naming it) or, with ``on_error="skip"``, is left out of
its batch, listed in `skipped` and never read again.

The items' cache keys are made and numbered by the cache once (`ImageCache.ids`), and a
batch's numbers picked by one array index: a cached read costs little more than copying
its pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from gometal_keras.core import pixels
from gometal_keras.vision.cache import ImageCache
from gometal_keras.vision.decode import UnreadableImageError
from gometal_keras.vision.decoder import Decoder, Pending

#: What to do with a file Pillow cannot decode.
POLICIES = ("raise", "skip")


@dataclasses.dataclass
class Started:
    """A batch begun: its cache hits read, its misses submitted to the decoder.

    Attributes:
        size: Items asked for (unreadable ones included).
        items: The items read (positions in the data set; known-unreadable ones left out).
        labels: Their labels.
        found: Positions in `items` the cache had (an int array).
        hits: Their pixels (None when none hit).
        missing: Positions being decoded.
        pending: The decoding.
    """

    size: int
    items: np.ndarray
    labels: np.ndarray
    found: np.ndarray
    hits: np.ndarray | None
    missing: list[int]
    pending: Pending


class BatchReader:
    """Reads batches of a data set's ``(path, label)`` items as pixels and labels.

    Args:
        items: Every item of the data set, in its order.
        cache: Where decoded images are kept.
        decoder: The pool that decodes the others.
        image_size: Height and width of every image.
        channels: 3 (RGB) or 1 (grey).
        on_error: ``"raise"`` or ``"skip"`` (see the module).

    Example:
        >>> import os, tempfile
        >>> from PIL import Image
        >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> Image.new("L", (3, 3), 255).save(path)
        >>> items = [(path, 1), ("/no/such.png", 0)]
        >>> reader = BatchReader(items, ImageCache(4), Decoder(1, False), 2, 1, "skip")
        >>> x, y = reader.finish(reader.start(np.array([0, 1])))
        >>> x.dtype, x.shape, y.tolist(), reader.skipped
        (dtype('uint8'), (1, 2, 2, 1), [1], ['/no/such.png'])
    """

    def __init__(
        self,
        items: Sequence[tuple[str, int]],
        cache: ImageCache,
        decoder: Decoder,
        image_size: int,
        channels: int,
        on_error: str,
    ):
        self.cache, self.decoder = cache, decoder
        self.image_size, self.channels, self.on_error = image_size, channels, on_error
        self.skipped: list[str] = []
        self._bad: set[str] = set()
        self._paths = np.array([path for path, _ in items], dtype=object)
        self._labels = np.fromiter((label for _, label in items), np.int32, len(items))
        settings = f"|{image_size}x{channels}"  # loaders of other sizes share a cache apart
        self._keys = np.array([path + settings for path, _ in items], dtype=object)
        self._ids = cache.ids(self._keys)

    def start(self, indices: np.ndarray) -> Started:
        """Read the cached images of a batch and submit the others for decoding.

        Args:
            indices: The batch's items, positions in the data set.
        """
        size = len(indices)
        indices = np.asarray(indices)
        if self._bad:
            keep = np.fromiter((self._paths[i] not in self._bad for i in indices), bool)
            indices = indices[keep]
        found, hits = self.cache.take_ids(self._ids[indices])
        unread = np.ones(len(indices), bool)
        unread[found] = False
        missing = np.flatnonzero(unread).tolist()
        paths = self._paths[indices[missing]].tolist()  # only the misses' (object arrays)
        pending = self.decoder.submit(paths, self.image_size, self.channels)
        return Started(size, indices, self._labels[indices], found, hits, missing, pending)

    def finish(self, started: Started) -> tuple[np.ndarray, np.ndarray] | None:
        """The batch ``(pixels, labels)`` in its order; None when every file was skipped.

        Pixels are ``uint8`` unless an image of the batch is wider (then float32 in
        [0, 1], `gometal_keras.core.pixels.assemble`).

        Raises:
            UnreadableImageError: A file cannot be decoded and `on_error` is ``"raise"``.
        """
        read = self.finish_items(started)
        return None if read is None else (read[0], read[1])

    def finish_items(self, started: Started) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """`finish`, with the items (positions in the data set) of the rows read."""
        if not started.missing and started.hits is not None:
            # every image cached: read in order already
            return started.hits, started.labels, started.items
        parts = [] if started.hits is None else [(started.found.tolist(), started.hits)]
        for i, image in zip(started.missing, started.pending.result(), strict=True):
            item = started.items[i]
            path = self._paths[item]
            if isinstance(image, UnreadableImageError):
                if self.on_error == "raise":
                    raise image
                self.leave_out([path])
                continue
            self.cache.put(self._keys[item], image)
            parts.append(([i], image[None]))
        if not parts:
            return None
        out = pixels.assemble(parts, len(started.items))  # 16-bit among 8-bit: float32
        if sum(len(at) for at, _ in parts) == len(out):
            return out, started.labels, started.items
        keep = sorted(i for at, _ in parts for i in at)
        return out[keep], started.labels[keep], started.items[keep]

    def leave_out(self, paths: Sequence[str]) -> None:
        """Never read `paths` again: listed in `skipped` (once each), left out of batches."""
        for path in paths:
            if path not in self._bad:
                self._bad.add(path)
                self.skipped.append(path)

    def paths(self, items: np.ndarray) -> list[str]:
        """The files of `items` (positions in the data set)."""
        return self._paths[np.asarray(items, dtype=np.intp)].tolist()
