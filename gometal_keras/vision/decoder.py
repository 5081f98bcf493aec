"""`Decoder`: image files decoded by a pool of workers, a chunk of files per task.

Pillow decodes a small image in tens of microseconds, most of them Python that holds the
GIL, so threads stop scaling at about one core. With ``processes=True`` the files are
decoded in worker processes (`concurrent.futures.ProcessPoolExecutor`, started by a
fork server where the platform has one, else spawned; never forked from a process whose
threads may hold locks), which scale with the cores. Each worker imports the main script,
so a script must start under ``if __name__ == "__main__":``; where workers cannot start,
`Pending.result` says so in one sentence. Either way a task decodes `CHUNK` files, so
the cost of a hand-off is shared, and the loader submits the next batches' files before it
waits for this one's (read-ahead).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from collections.abc import Sequence
from typing import Any

import numpy as np

from gometal_keras.vision.decode import UnreadableImageError, decode_pixels

#: Files decoded per task.
CHUNK = 32


def decode_chunk(
    paths: Sequence[str], size: int, channels: int
) -> list[np.ndarray | UnreadableImageError]:
    """Decode each path (`decode_pixels`); an unreadable file gives its error as a value.

    Example:
        >>> decode_chunk(["/no/such.png"], 4, 3)[0].__class__.__name__
        'UnreadableImageError'
    """
    out: list[np.ndarray | UnreadableImageError] = []
    for path in paths:
        try:
            out.append(decode_pixels(path, size, channels))
        except UnreadableImageError as err:
            out.append(err)
    return out


class Decoder:
    """A pool that decodes lists of files, in threads or in processes.

    Args:
        workers: Threads or processes.
        processes: Decode in worker processes (started on first use).

    Example:
        >>> import os, tempfile
        >>> from PIL import Image
        >>> path = os.path.join(tempfile.mkdtemp(), "a.png")
        >>> Image.new("L", (3, 3), 255).save(path)
        >>> decoder = Decoder(workers=2, processes=False)
        >>> [px.tolist() for px in decoder.submit([path], 1, 1).result()]
        [[[[255]]]]
        >>> decoder.close()
    """

    def __init__(self, workers: int, processes: bool):
        self.workers, self.processes = workers, processes
        self._pool: concurrent.futures.Executor | None = None

    def _executor(self) -> concurrent.futures.Executor:
        if self._pool is None:
            if self.processes:
                methods = multiprocessing.get_all_start_methods()
                method = "forkserver" if "forkserver" in methods else "spawn"
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context(method)
                )
            else:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.workers, thread_name_prefix="gometal-decode"
                )
        return self._pool

    def submit(self, paths: Sequence[str], size: int, channels: int) -> Pending:
        """Start decoding `paths`; `Pending.result` waits for them, in order."""
        if not paths:
            return Pending([])
        pool = self._executor()
        chunks = [list(paths[i : i + CHUNK]) for i in range(0, len(paths), CHUNK)]
        return Pending([pool.submit(decode_chunk, c, size, channels) for c in chunks])

    def close(self) -> None:
        """Stop the workers (a later `submit` starts new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


class Pending:
    """Decoding in flight: the chunks' futures."""

    def __init__(self, tasks: list[Any]):
        self._tasks = tasks

    def result(self) -> list[np.ndarray | UnreadableImageError]:
        """Every file's pixels or error, in the order submitted.

        Raises:
            RuntimeError: A worker process died or could not start.
        """
        try:
            return [item for task in self._tasks for item in task.result()]
        except concurrent.futures.BrokenExecutor as err:
            raise RuntimeError(
                "A decoding worker process died or could not start (a script that uses "
                "worker processes must start under `if __name__ == \"__main__\":`); "
                "expected it to decode, or pass use_multiprocessing=False for threads."
            ) from err
