"""JAX's training program: pure functions over Keras' stateless API, an epoch one `lax.scan`.

The step and the whole-epoch call, compiled by `jax.jit`, and how their state reaches the
model; `engines.jax` is the engine that builds it.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import keras

from gometal_keras.core import pixels
from gometal_keras.engines.base import Objective, Placement, Program
from gometal_keras.engines.commit import select
from gometal_keras.engines.late_checks import LateCall, LateChecks
from gometal_keras.engines.placement import lost_worker

#: The largest state (model variables, bytes) an optimistic call keeps until the next call.
KEEP_BYTES = 64 * 2**20


class JaxProgram(Program):
    """Step and epoch compiled by `jax.jit`; the model's state lives on the device.

    Both take the model's variable values and return new ones (nothing is donated: an
    interrupted call must leave the model its last weights, and a guarded epoch that a
    check stops runs again from them), and write them back, so the Keras model always
    holds the current weights.
    """

    def _compile(
        self, model: keras.Model, objective: Objective, optimizer: Any, placement: Placement
    ) -> None:
        plan = self.plan
        self._lost = LostWorkers(placement.worker, placement.processes)
        # The variables in the order the compiled calls take their values (fixed once built).
        self._variables = (
            tuple(model.trainable_variables),
            tuple(model.non_trainable_variables),
            tuple(optimizer.variables),
        )
        rule = self._commit
        # Commit every value where it lives now (replicated under data parallelism): the
        # program's outputs are committed, and a first call on uncommitted inputs would
        # otherwise compile the program twice.
        self._write_back(tuple([jax.device_put(v, v.sharding) for v in g] for g in self._state()))
        # A first call's `going`, a scalar committed where the state's scalars are (the
        # step counter's place), as a later call's is.
        self._true = jax.device_put(True, optimizer.iterations.value.sharding)

        def scaled_loss(trainable, non_trainable, opt_vars, x, y):
            x = pixels.to_model_input(x)
            y_pred, non_trainable, losses = model.stateless_call(
                trainable, non_trainable, x, training=True, return_losses=True
            )
            loss = objective.loss(y, y_pred)
            if losses:
                loss = loss + sum(losses)
            loss = loss.astype("float32")
            values = jnp.stack([loss, *objective.metrics(y, y_pred)])
            mapping = list(zip(optimizer.variables, opt_vars, strict=True))
            with keras.StatelessScope(state_mapping=mapping):
                scaled = optimizer.scale_loss(loss)
            return scaled, (values, non_trainable)

        grad_fn = jax.value_and_grad(scaled_loss, has_aux=True)

        def train_step(carry, batch, optimistic=False):
            # The step commit (`StepCommit`), its state selected (an element-wise select: a
            # lax.cond choosing the state measured the same on an H200: session 7 of
            # bench/RESULTS.md at e163086). `optimistic`: every update stays, and the flag
            # carried is whether each step so far passed (`optimistic_epoch`).
            (trainable, non_trainable, opt_vars), going = carry
            (_, (values, forward)), grads = grad_fn(trainable, non_trainable, opt_vars, *batch)
            update = optimizer.stateless_apply(opt_vars, grads, trainable)
            if optimistic:
                verdict = rule.optimistic(going, values, grads, forward)
            else:
                verdict = rule.verdict(going, values, grads, [*update[0], *update[1]], forward)
                values = rule.report(values, verdict.going)
            (new_trainable, new_opt), forward = rule.keep(
                verdict, (update, (trainable, opt_vars)), (forward, non_trainable), select
            )
            return ((new_trainable, forward, new_opt), verdict.going), values

        def plain_epoch(state, xs, ys, going):
            (state, going), values = jax.lax.scan(train_step, (state, going), (xs, ys))
            return state, values, going

        def optimistic_epoch(state, xs, ys, going):
            # Checking every new weight and optimizer value each step is a pass over all
            # of them: about 0.12 ms a step on the wide MLP on an H200 (RESULTS.md at e163086).
            # So the call first runs with every update committed, checking each step's
            # loss and forward-pass state (BatchNorm statistics: small), and the weights
            # and optimizer values once, at the end. A value the optimizer wrote that was
            # not finite stays not finite in later steps (an update is arithmetic on the
            # value before it, and NaN and infinity absorb), so the end check sees it.
            # When a check fails (rare), the call reports no step committed; `epoch` puts
            # back the state it started from and runs it again, each step guarded, or
            # `LateChecks` does (a `lax.cond` here cost about 0.7 ms a call on an H200,
            # and selecting the first state on the device a kernel a variable: 20 on the
            # seed MLP, bench/RESULTS.md at e163086).
            def optimistic(carry, batch):
                return train_step(carry, batch, optimistic=True)

            (new, all_ok), values = jax.lax.scan(optimistic, (state, jnp.bool_(True)), (xs, ys))
            committed = rule.call_verdict(going, all_ok, [*new[0], *new[2]])
            values = jax.vmap(rule.report, in_axes=(0, None))(values, committed)
            return new, values, committed

        def one_step(state, x, y, going):
            (state, going), values = train_step((state, going), (x, y))
            return state, values, going

        # Calls that run optimistically: compiled ones (run eagerly, a call traces its
        # scan anew, and the optimistic one would only add to that).
        self._optimistic = rule.checked and plan.xla
        # An optimistic call holds the state it started from until its verdict is read.
        # Releasing those buffers costs the host a few microseconds each (70 us for the
        # seed MLP's state on an H200's host), after the device is done; a small state is
        # kept instead until the next call is dispatched, and released as the device runs.
        # A large one is released at once: its memory matters more than the microseconds.
        size = sum(v.size * v.dtype.itemsize for group in self._state() for v in group)
        self._keep_after_call, self._kept = size <= KEEP_BYTES, None
        wrap = jax.jit if plan.xla else (lambda f: f)
        self._step, self._epoch = wrap(one_step), wrap(plain_epoch)
        self._optimistic_epoch = wrap(optimistic_epoch)
        self._late = LateChecks(self._again, self._hold, rule.committed)

    def _state(self) -> tuple[list, list, list]:
        return tuple([v.value for v in group] for group in self._variables)

    def _write_back(self, state: tuple[list, list, list]) -> None:
        for variables, values in zip(self._variables, state, strict=True):
            for variable, value in zip(variables, values, strict=True):
                variable.assign(value)

    def step(self, x: Any, y: Any) -> Any:
        with self._lost:
            state, values, going = self._step(self._state(), x, y, self._start())
            self._write_back(state)
            self._hold(going)
            return values

    def epoch(self, xs: Any, ys: Any, going: Any = True, read_late: bool = False) -> Any:
        with self._lost:
            return self._run_epoch(xs, ys, going, read_late)

    def _run_epoch(self, xs: Any, ys: Any, going: Any, read_late: bool) -> Any:
        going = self._start(going)
        if not self._optimistic:
            values, after, _ = self._again(xs, ys, going)
            self._hold(after)
            return values
        first = self._state()
        # Optimistic (see `optimistic_epoch`): its verdict is read from its values, here or
        # when they are read (`confirm`), so that the device runs the calls back to back.
        state, values, committed = self._optimistic_epoch(first, xs, ys, going)
        self._kept = None  # what the last call held (see `_keep_after_call`): released now
        try:
            self._write_back(state)  # while the device runs; put back below if not committed
            self._hold(committed)
            if read_late:
                self._late.add(LateCall(values, xs, ys, going, first))
                return values
            host = keras.ops.convert_to_numpy(values)  # the one wait
        except BaseException:  # e.g. Ctrl-C: the model keeps the state it had
            self._write_back(first)
            raise
        if self._commit.committed(host):
            if self._keep_after_call:
                self._kept = first, values
            return host
        values, after, _ = self._again(xs, ys, going, first)
        self._hold(after)
        return values

    def _again(self, xs: Any, ys: Any, going: Any, start: Any = None) -> tuple[Any, Any, Any]:
        """The batches from `start` (None: the current state), each step checked: the
        values, the flag and the state after them (written back)."""
        state = self._state() if start is None else start
        state, values, after = self._epoch(state, xs, ys, going)
        self._write_back(state)
        return values, after, state

    def confirm(self, values: Any) -> Any:
        with self._lost:
            return self._late.confirm(values)

    def settle(self) -> None:
        with self._lost:
            self._late.settle()


#: What JAX's CPU collectives (gloo) and its distributed service say when a peer is gone:
#: its connection closed or reset, or its heartbeats missed.
_LOST_PEER = re.compile(
    r"Gloo .*failed|Connection (closed|reset) by peer|Broken pipe|heartbeat|"
    r"UNAVAILABLE|DEADLINE_EXCEEDED", re.IGNORECASE
)


class LostWorkers:
    """Around a call: where several workers train and a peer is gone, say so in one
    sentence (`placement.lost_worker`). One object per program, entered on every call
    (nothing is built per call); with one process it lets every error pass as raised.

    Args:
        worker: This process' worker index.
        processes: Workers in the run.

    Example:
        >>> with LostWorkers(0, 2):  # doctest: +ELLIPSIS
        ...     raise RuntimeError("Gloo all-reduce failed: Connection closed by peer [::1]:9")
        Traceback (most recent call last):
        RuntimeError: Worker 1 of 2 stopped answering in a training collective (Runtim...
    """

    def __init__(self, worker: int, processes: int):
        self.worker, self.processes = worker, processes

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, err: Any, trace: Any) -> bool:
        if self.processes < 2 or not isinstance(err, Exception):
            return False  # JAX raises JaxRuntimeError (a RuntimeError) for these
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        if not lines or not _LOST_PEER.search(" ".join(lines)):
            return False
        raise RuntimeError(lost_worker(f"{type(err).__name__}: {lines[0][:300]}", self.worker,
                                       self.processes)) from None
