"""Optimistic calls: their verdict read from their values, and their reruns when it fails.

An optimistic epoch call (JAX's, see `engines.jax.program`; the strategy is the step
commit's, `engines.commit.StepCommit.optimistic`) commits every update and checks the
weights once, at its end. Its verdict is all or nothing, and its values carry it: a call
that was not committed reports every step as not committed (`StepCommit.committed` reads
it), and so does the next call, dispatched before anyone looked (its flag says the epoch
stopped). Such a call leaves its unchecked state in the model; the program puts back the
state the call started from and runs it again with each step checked.

A caller that reads each call's values only after dispatching the next (a streamed
epoch) must not wait for the verdict at the call, or the device would idle between
calls. `LateChecks` keeps the calls not yet read, and settles them in order when their
values are read (`confirm`) or when the epoch ends (`settle`): a committed call gives its
values; the first that was not is run again from the state it started from, and every
call dispatched behind it (all stopped) again from the state and flag the rerun before it
ended with (not the model's state: a call dispatched after a rerun, behind a stopped call,
ran on unchecked).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class LateCall:
    """One optimistic call: its reported values, its batches, its starting flag and state."""

    values: Any
    xs: Any
    ys: Any
    going: Any
    first: Any


class LateChecks:
    """The optimistic calls of one program not read yet, oldest first.

    Args:
        rerun: ``rerun(xs, ys, going, start) -> (values, after, end)``: run the batches
            again, each step checked, from the state `start`, write the state it ends
            with (`end`) back, and return it with the values and the flag.
        hold: ``hold(after)``: keep the flag an epoch goes on with (the program's latch),
            called after a rerun once no later call is waiting.
        committed: ``committed(values) -> bool``, the host verdict (`StepCommit.committed`).

    Example:
        >>> runs = []
        >>> def rerun(xs, ys, going, start):
        ...     runs.append((xs, start))
        ...     return "rerun values", True, "state after b"
        >>> late = LateChecks(rerun, lambda after: None, lambda values: values[0] != "stop")
        >>> ok, bad = ["ok values"], ["stop"]  # a call's values, known by identity
        >>> late.add(LateCall(ok, "a", None, True, "state before a"))
        >>> late.add(LateCall(bad, "b", None, True, "state before b"))
        >>> late.confirm(ok), late.confirm(bad), runs
        (['ok values'], 'rerun values', [('b', 'state before b')])
    """

    def __init__(
        self,
        rerun: Callable[[Any, Any, Any, Any], tuple[Any, Any]],
        hold: Callable[[Any], None],
        committed: Callable[[Any], bool],
    ):
        self._rerun, self._hold, self._committed = rerun, hold, committed
        self._calls: collections.deque[LateCall] = collections.deque()
        # The flag and state the last rerun ended with, while stopped calls wait behind it.
        self._going: Any = None
        self._end: Any = None

    def add(self, call: LateCall) -> None:
        """Keep `call`, just dispatched, until its values are read."""
        self._calls.append(call)

    def confirm(self, values: Any) -> Any:
        """The values to read for the call that reported `values`, settling it (in order).

        Returns:
            `values` when that call was committed (or is not a late call of this
            program); otherwise the values of the call run again.
        """
        while self._calls:
            call = self._calls.popleft()
            settled = self._settle(call)
            if call.values is values:
                return settled
        return values

    def settle(self) -> None:
        """Settle every call not read yet (the epoch ended or stopped); start afresh."""
        while self._calls:
            self._settle(self._calls.popleft())
        self._going = self._end = None

    def _settle(self, call: LateCall) -> Any:
        if self._going is None:
            if self._committed(call.values):
                return call.values
            # The first call not committed: every call behind it ran on from its
            # unchecked state; it runs again from the state it started from.
            rerun = self._rerun(call.xs, call.ys, call.going, call.first)
        else:  # stopped behind a rerun: on from the rerun's state and flag
            rerun = self._rerun(call.xs, call.ys, self._going, self._end)
        values, self._going, self._end = rerun
        if not self._calls:
            self._hold(self._going)  # no stopped call waits behind it any more
            self._going = self._end = None
        return values
