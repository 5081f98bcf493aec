"""Streaming: K staged batches per device call, the next K prepared meanwhile.

The streaming form of the fused epoch (`loop`): a `BatchSource` is re-cut into full
batches of the trainer's ``batch_size``, K of them are stacked on a leading axis and run
as one call of the program's compiled epoch, while a host thread reads, checks, stacks
and copies the next ones. The device holds at most `SLOTS` stages: the one training and
two ready, slack for a host that prepares a stage barely faster than the device trains
one. K (`stage_size`) is large enough that a call's work hides its launch cost and small
enough that `SLOTS` stages fit the staging budget. The calls run back to back: a stage's
values are read after the next call is dispatched (`loop`). The batches an epoch has
beyond the last full stage run as single compiled steps, so each program compiles once.

Every batch is checked before it is staged; a bad one ends the epoch with one sentence
naming it, after the good batches before it have trained (the weights are those of the
last good step). The remainder after the last full batch is dropped, as with arrays.

An image loader's batches are staged as the bytes it decoded (`DataLoader.pixel_batches`)
and scaled on the device (`gometal_keras.pixels`): a quarter of float32's copying, and the
same numbers. Its first batch is checked against the model whole; later ones have the
loader's fixed image shape, so only their labels are checked (none when every label was
checked before the epoch). Host stages are filled into a ring of ``SLOTS + 1`` buffers
kept from epoch to epoch, reused rather than allocated (and page-faulted) for every stage:
on a CPU that alone took the host side from about 220,000 to 420,000 images a second.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gometal_keras import pixels
from gometal_keras.inputs import BatchSource
from gometal_keras.plan import Loop, RunPlan

#: Most batches per device call.
STAGE_BATCHES = 64
#: Most bytes one stage (batches and labels) takes.
STAGE_BYTES = 256 * 2**20
#: Stages on the device at once: the one training and the next two (slack for the host
#: when it prepares a stage barely faster than the device trains one).
SLOTS = 3

Check = Callable[[Any, Any], tuple[np.ndarray, np.ndarray]]


def stage_size(batch_bytes: int, free_bytes: int | None, steps: int | None = None) -> int:
    """Batches per device call: at most `STAGE_BATCHES`, and `SLOTS` stages within budget.

    With the steps per epoch known, the epoch is split into calls of equal size (the last
    may be a little shorter), so at most two stage sizes ever compile; and into two calls
    at least, so the host prepares the second while the device runs the first.

    Args:
        batch_bytes: Bytes of one batch with its labels.
        free_bytes: Device bytes free for data (None = unknown: `STAGE_BYTES` applies).
        steps: Steps per epoch when known.

    Example:
        >>> stage_size(1 << 20, None), stage_size(1 << 20, 16 << 20), stage_size(8, None, 100)
        (64, 5, 50)
        >>> stage_size(8, None, 5), stage_size(8, None, 1)
        (3, 1)
    """
    budget = STAGE_BYTES if not free_bytes else min(STAGE_BYTES, free_bytes // SLOTS)
    k = max(1, min(STAGE_BATCHES, budget // max(1, batch_bytes)))
    if not steps:
        return int(k)
    calls = max(-(-steps // k), min(steps, 2))
    return int(-(-steps // calls))


@dataclasses.dataclass(frozen=True)
class StreamedData:
    """A stream arranged for one program: what `TrainingLoop.run_epoch` streams from.

    Attributes:
        source: The input.
        check: Checks one batch ``(x, y)`` and returns it as the model takes it.
        check_labels: Checks labels ``(y, n)`` alone (an image loader's later batches).
        batch_size: Samples per step.
        steps: Steps per epoch when known (from the input's length or ``steps_per_epoch``).
        steps_per_epoch: End each epoch after this many steps (None = when exhausted).
        plan: The plan of the program it was arranged for.
        stage: Batches per device call (None = from the first batch's size).
        labels_checked: Every label the input gives was checked before the first epoch.
        ring: The host buffers stages are filled into, reused from epoch to epoch (one
            epoch's stages are made after the last one's, so they take turns safely).
    """

    source: BatchSource
    check: Check
    check_labels: Callable[..., np.ndarray]
    batch_size: int
    steps: int | None
    steps_per_epoch: int | None
    plan: RunPlan
    stage: int | None = None
    labels_checked: bool = False
    ring: _Ring = dataclasses.field(default_factory=lambda: _Ring(), compare=False, repr=False)
    resident = False

    def describe(self) -> str:
        """How an epoch runs, e.g. ``"streamed from a DataLoader, 64 batches per call"``."""
        k = self.stage or self.source.stage
        per = f"{k} batches per call" if k else f"up to {STAGE_BATCHES} batches per call"
        if self.plan.loop is Loop.STEP:
            per = "one call per step"
        skipped = len(getattr(self.source.value, "skipped", ()))
        note = f"; {skipped} unreadable files skipped" if skipped else ""
        staged = ", images staged as bytes" if self.source.pixels else ""
        return f"streamed from a {self.source.kind}, {per} (prefetched{staged}){note}"


@dataclasses.dataclass
class Staged:
    """A stage on the device: `n` batches, stacked when it is a full stage, else a list."""

    xs: Any
    ys: Any
    n: int
    full: bool


def host_stages(data: StreamedData, epoch: int, free_bytes: int | None) -> Iterator[tuple]:
    """Yield ``(xs, ys, full)`` host stages of epoch `epoch`, re-cut to ``batch_size``.

    ``full`` says the stage runs as one call: K batches, or the known tail of an epoch
    (other stages run step by step, so no new stage size compiles). A bad batch raises
    after the full batches before it are yielded. An input of unknown length that ran to
    its end records its samples (``source.seen``): later epochs know their steps.
    """
    b, limit, done, total = data.batch_size, data.steps_per_epoch, 0, 0
    source, k = data.source, data.stage
    steps = data.steps or (source.seen // b if source.seen else None)
    buf_x = buf_y = None
    fill = cap = 0
    ring = data.ring
    failure: BaseException | None = None
    try:
        for index, (x, y) in enumerate(source.batches(epoch, pixels=True), 1):
            xa, ya = _checked(data, x, y, index)
            total += len(xa)
            if buf_x is not None and xa.dtype != buf_x.dtype:  # 16-bit images among 8-bit
                buf_x, xa = pixels.common(buf_x, xa)
            if k is None:
                k = stage_size(b * (xa[0].nbytes + ya[0].nbytes), free_bytes, steps)
                source.stage = k
            pos = 0
            while pos < len(xa) and (limit is None or done < limit):
                if buf_x is None:
                    cap = k if limit is None else min(k, limit - done)
                    buf_x, buf_y = ring.next(cap * b, xa, ya)
                take = min(len(xa) - pos, cap * b - fill)
                buf_x[fill : fill + take], buf_y[fill : fill + take] = (
                    xa[pos : pos + take],
                    ya[pos : pos + take],
                )
                fill, pos = fill + take, pos + take
                if fill == cap * b:
                    yield _stacked(buf_x, buf_y, cap, b), cap == k or done + cap == steps
                    done, buf_x, fill = done + cap, None, 0
            if limit is not None and done >= limit:
                break
        else:
            source.seen = None if source.one_shot else total
    except (ValueError, TypeError, OSError) as err:
        failure = err
    if buf_x is not None and fill >= b:
        whole = fill // b
        last = _stacked(buf_x[: whole * b], buf_y[: whole * b], whole, b)
        yield last, failure is None and done + whole == steps
    if failure is not None:
        raise failure


def _stacked(x: np.ndarray, y: np.ndarray, n: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    return x.reshape(n, b, *x.shape[1:]), y.reshape(n, b, *y.shape[1:])


def _checked(data: StreamedData, x: Any, y: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
    where = f"Batch {index} of the {data.source.kind}"
    if y is None:
        raise ValueError(f"{where} has no labels; expected (x, y) batches for training.")
    if not data.source.pixels:
        return named(data.check, (x, y), where)
    if index == 1:  # the loader's image shape against the model's input, once
        named(data.check, (pixels.to_unit(x[:1]), y[:1]), where)
    if data.labels_checked:
        return x, y
    return x, named(data.check_labels, (y, len(y)), where)


class _Ring:
    """`SLOTS` + 1 host buffers, handed out in turn and reused when their shape agrees.

    Reuse is safe because a stage is filled only after the stage `SLOTS` before it was
    released, i.e. trained (the `Prefetcher`'s slots): its buffer is no longer read.
    """

    def __init__(self) -> None:
        self._buffers: list[tuple[np.ndarray, np.ndarray] | None] = [None] * (SLOTS + 1)
        self._turn = 0

    def next(self, n: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i, self._turn = self._turn, (self._turn + 1) % len(self._buffers)
        old = self._buffers[i]
        wanted = [((n, *a.shape[1:]), a.dtype) for a in (x, y)]
        if old is None or [(a.shape, a.dtype) for a in old] != wanted:
            old = self._buffers[i] = tuple(np.empty(shape, dtype) for shape, dtype in wanted)
        return old


def named(check: Callable[..., Any], args: tuple, where: str) -> Any:
    """``check(*args)``, its ValueError or TypeError prefixed with `where` (the batch).

    Example:
        >>> named(int, ("x",), "Batch 2")
        Traceback (most recent call last):
        ValueError: Batch 2: invalid literal for int() with base 10: 'x'
    """
    try:
        return check(*args)
    except (ValueError, TypeError) as err:
        raise type(err)(f"{where}: {err}") from None


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
