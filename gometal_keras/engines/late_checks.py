"""Optimistic calls whose values are read one call late, and their reruns when a check fails.

An optimistic epoch call (JAX's, see `engines.jax`) commits every update and checks the
weights once, at its end; when a check fails it keeps its first state, reports its steps
as not committed (so the next call, dispatched before anyone looked, commits nothing
either), and must be run again with each step checked. A caller that reads each call's
values only after dispatching the next (a streamed epoch) must not wait for that flag at
the call, or the device would idle between calls. `LateChecks` keeps the calls not yet
read, and settles them in order when their values are read (`confirm`) or when the
epoch ends (`settle`): a call that was committed gives its values; one that was not is
run again from the program's state, which is then exactly the state before it, and
gives the rerun's values. After a rerun the calls already dispatched behind it (all
stopped, since it was not committed) are run again too, from the rerun's state and flag.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any

import keras


@dataclasses.dataclass(frozen=True)
class LateCall:
    """One optimistic call: its reported values, its batches, its starting flag, its verdict."""

    values: Any
    xs: Any
    ys: Any
    going: Any
    committed: Any


class LateChecks:
    """The optimistic calls of one program not read yet, oldest first.

    Args:
        rerun: ``rerun(xs, ys, going) -> (values, after)``: run the batches again from the
            program's current state, each step checked, and write the new state back.
        hold: ``hold(after)``: keep the flag an epoch goes on with (the program's latch),
            called after a rerun once no later call is waiting.

    Example:
        >>> runs = []
        >>> def rerun(xs, ys, going):
        ...     runs.append(xs)
        ...     return "rerun values", True
        >>> late = LateChecks(rerun, hold=lambda after: None)
        >>> ok, bad = ["ok values"], ["bad values"]  # a call's values, known by identity
        >>> late.add(LateCall(ok, "a", None, True, True))
        >>> late.add(LateCall(bad, "b", None, True, False))
        >>> late.confirm(ok), late.confirm(bad), runs
        (['ok values'], 'rerun values', ['b'])
    """

    def __init__(
        self, rerun: Callable[[Any, Any, Any], tuple[Any, Any]], hold: Callable[[Any], None]
    ):
        self._rerun, self._hold = rerun, hold
        self._calls: collections.deque[LateCall] = collections.deque()
        self._going: Any = None  # the flag after the last rerun, while calls wait behind it

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
        self._going = None

    def _settle(self, call: LateCall) -> Any:
        if self._going is None and _true(call.committed):
            return call.values
        # Not committed: nothing after it was either, so the program holds the state the
        # call started from. Its flag: the one it had, or the last rerun's.
        going = call.going if self._going is None else self._going
        values, self._going = self._rerun(call.xs, call.ys, going)
        if not self._calls:
            self._hold(self._going)  # no stopped call waits behind it any more
            self._going = None
        return values


def _true(flag: Any) -> bool:
    return bool(keras.ops.convert_to_numpy(flag))
