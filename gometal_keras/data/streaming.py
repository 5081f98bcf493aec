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
and scaled on the device (`gometal_keras.core.pixels`): a quarter of float32's copying, and the
same numbers. Its first batch is checked against the model whole; later ones have the
loader's fixed image shape, so only their labels are checked (none when every label was
checked before the epoch). Host stages are filled into a ring of ``SLOTS + 1`` buffers
kept from epoch to epoch, reused rather than allocated (and page-faulted) for every stage:
on a CPU that alone took the host side from about 220,000 to 420,000 images a second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gometal_keras.core import pixels
from gometal_keras.core.plan import Loop, RunPlan
from gometal_keras.data.inputs import BatchSource
from gometal_keras.data.prefetch import SLOTS

#: Most batches per device call.
STAGE_BATCHES = 64
#: Most bytes one stage (batches and labels) takes.
STAGE_BYTES = 256 * 2**20

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
