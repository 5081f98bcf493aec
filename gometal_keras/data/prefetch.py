"""`Prefetcher`: host stages staged on the device by a thread while the last one trains.

The host half of streaming (`gometal_keras.data.streaming` makes the stages, `loop` runs
them): a thread takes each host stage, waits for a free device slot, copies the stage to
the device and queues it; the training thread takes stages in order and releases a slot
once a stage has trained. `SLOTS` bounds what the device holds. An error in the thread is
raised again in the training thread, after the stages before it.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: Stages on the device at once: the one training and the next two (slack for the host
#: when it prepares a stage barely faster than the device trains one).
SLOTS = 3


@dataclasses.dataclass
class Staged:
    """A stage on the device: `n` batches, stacked when it is a full stage, else a list."""

    xs: Any
    ys: Any
    n: int
    full: bool


class Prefetcher:
    """Runs `stages` in a host thread, staging each on the device while the last trains.

    Args:
        stages: Host stages ``((xs, ys), full)``.
        put: Copies a host array to the device, split along a batch axis.
        in_thread: Copy to the device in the thread too (one device; a multi-device
            placement copies in the caller's thread).
        slots: Stages it may hold on the device before one is released (`SLOTS`; one
            for the next epoch's, started while this one's last stage trains, and the
            rest given by `release` when that epoch ends).
    """

    def __init__(
        self,
        stages: Iterator,
        put: Callable[..., Any],
        in_thread: bool = True,
        slots: int = SLOTS,
    ):
        self._put, self._in_thread = put, in_thread
        self._queue: queue.Queue = queue.Queue()
        self._slots = threading.Semaphore(slots)
        self._stop = threading.Event()
        self._made = self._taken = 0
        self._finished = threading.Event()
        self._thread = threading.Thread(
            target=self._work, args=(stages,), name="gometal-stage", daemon=True
        )
        self._thread.start()

    def _work(self, stages: Iterator) -> None:
        try:
            for (xs, ys), full in stages:
                while not self._slots.acquire(timeout=0.05):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                item = self.stage(xs, ys, full) if self._in_thread else (xs, ys, full)
                self._made += 1  # counted before it can be taken
                self._queue.put(item)
        except BaseException as err:  # raised again in the caller's thread, in order
            self._queue.put(err)
        finally:
            getattr(stages, "close", lambda: None)()
            self._finished.set()
            self._queue.put(None)

    def stage(self, xs: np.ndarray, ys: np.ndarray, full: bool) -> Staged:
        """Copy one host stage to the device: stacked when full, else batch by batch."""
        if full:
            return Staged(self._put(xs, batch_axis=1), self._put(ys, batch_axis=1), len(xs), True)
        xl = [self._put(x, batch_axis=0) for x in xs]
        return Staged(xl, [self._put(y, batch_axis=0) for y in ys], len(xs), False)

    def __iter__(self) -> Iterator[Staged]:
        while (item := self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            self._taken += 1
            yield item if isinstance(item, Staged) else self.stage(*item)

    @property
    def drained(self) -> bool:
        """Every stage has been handed out: the one the caller holds is the last."""
        return self._finished.is_set() and self._taken == self._made

    def release(self, n: int = 1) -> None:
        """`n` stages have trained (or `n` more slots are given): as many more may stage."""
        self._slots.release(n)

    def close(self) -> None:
        """Stop the thread (after the stage it is preparing) and wait for it."""
        self._stop.set()
        self._thread.join()
