"""The step-commit rule, written once: what a training step keeps, and what it reports.

A step is a transaction (`guard`): its forward pass writes the model's non-trainable state
(BatchNorm statistics, random-generator state), its update the weights and the optimizer's
values. `StepCommit` decides, from the step's values, gradients and what it wrote, which of
the two writes stay, whether the epoch goes on, and what loss the step reports. Its checks
are `keras.ops` (as Keras' `LossScaleOptimizer` and optax's ``apply_if_finite`` are), so
the same rule runs in a TensorFlow graph, a JAX trace and PyTorch's eager steps. Each
engine supplies only how a decision reaches its variables (`keep`'s ``select``): JAX
selects new or old values (`select`), TensorFlow puts the old ones back under a
``tf.cond``, PyTorch decides on the host (`decided`, one wait) and puts them back.

The plan picks the policy (`StepCommit.of`):

- guarded (``plan.guard``): the step is committed only when the epoch is still going and
  its loss, every gradient, every value its update wrote and its new forward state are
  finite; otherwise nothing of it stays, it reports a NaN loss, and no later step of the
  epoch commits;
- loss-scaled (a loss scaler, no guard): the `LossScaleOptimizer` skips a step whose
  gradients are not finite, and its update only backs off the scale: that update stays,
  the forward state does not; a step whose loss is not finite but whose gradients are is
  skipped too (nothing stays); a step whose loss and gradients are finite but whose update
  is not is a divergence: nothing stays, it reports `guard.DIVERGED`, and so does every
  later step of its epoch;
- unguarded: the update stays; the forward state only when the loss and gradients are
  finite.

The optimistic call is a strategy of the same rule for a whole call of steps: every update
stays, each step is checked for what needs no pass over the values the update wrote
(`optimistic`), and those values once, at the call's end (`call_verdict`): a value an
update wrote that is not finite stays not finite in later steps (NaN and infinity absorb
arithmetic). Its verdict is all or nothing, and its values carry it (`report`, read on the
host by `committed`): a call not committed is run again from the state it started from,
each step under `verdict`.

Example:
    >>> import numpy as np
    >>> from gometal_keras.core.plan import Precision, RunPlan
    >>> rule = StepCommit.of(RunPlan(Precision.FLOAT32, xla=False))  # guarded
    >>> values, grads = np.array([0.5, 1.0], "float32"), [np.ones(2, "float32")]
    >>> new = [np.array([1.0, np.inf], "float32")]  # a weight the update wrote
    >>> verdict = decided(rule.verdict(True, values, grads, new, []))
    >>> verdict
    Verdict(update=False, forward=False, going=False)
    >>> keras.ops.convert_to_numpy(rule.report(values, verdict.going))
    array([nan,  1.], dtype=float32)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import keras
import numpy as np

import gometal_keras.engines.guard as guard
from gometal_keras.core.plan import RunPlan


class Verdict(NamedTuple):
    """What a step keeps, as booleans: Python ones where known, else device scalars.

    Attributes:
        update: Keep the values its update wrote (new weights and optimizer values).
        forward: Keep the forward pass's new non-trainable state.
        going: The epoch goes on after it: later steps may commit.
    """

    update: Any
    forward: Any
    going: Any


#: ``select(flag, new, old)``: `new` where the device boolean `flag` holds, else `old`.
Select = Callable[[Any, Any, Any], Any]


def both(*flags: Any) -> Any:
    """The logical and of booleans, Python ones folded away (no device work for them).

    Example:
        >>> both(True, True), both(True, False, "never read")
        (True, False)
    """
    out: Any = True
    for flag in flags:
        if flag is False:
            return False
        if flag is not True:
            out = flag if out is True else keras.ops.logical_and(out, flag)
    return out


@dataclasses.dataclass(frozen=True)
class StepCommit:
    """The step-commit rule of one plan (see the module's docstring).

    Attributes:
        guarded: The non-finite guard is on (``plan.guard``).
        scaled: A loss scaler skips steps, without the guard.
    """

    guarded: bool
    scaled: bool

    @classmethod
    def of(cls, plan: RunPlan) -> StepCommit:
        """The rule `plan` runs under.

        Example:
            >>> from gometal_keras.core.plan import LossScaling, Precision, RunPlan
            >>> plan = RunPlan(Precision.MIXED_FLOAT16, True, loss_scaling=LossScaling(8.0, 5))
            >>> StepCommit.of(plan)
            StepCommit(guarded=False, scaled=True)
        """
        guarded = bool(plan.guard)
        return cls(guarded=guarded, scaled=plan.loss_scaling is not None and not guarded)

    @property
    def checked(self) -> bool:
        """Whether a step's update may be undone (guarded or loss-scaled).

        Then an engine keeps a copy of what the update writes, a stop carries over from
        step to step and call to call, and a call's values tell whether it committed.
        """
        return self.guarded or self.scaled

    def verdict(
        self,
        going: Any,
        values: Any,
        grads: Sequence[Any],
        written: Sequence[Any],
        forward: Sequence[Any],
    ) -> Verdict:
        """What one step keeps.

        Args:
            going: Boolean: the epoch is still going (no step before stopped it).
            values: The step's vector ``[loss, *metrics]`` (the unscaled loss first).
            grads: Its gradients (None entries skipped).
            written: What its update wrote: new weights and optimizer values (integer ones,
                the iteration count, are skipped). Not read by an unguarded rule.
            forward: Its forward pass's new non-trainable state (float values count).

        Returns:
            The `Verdict`; report the step's values with ``report(values, verdict.going)``.
        """
        if going is False and self.checked:
            return Verdict(False, False, False)
        if self.guarded:
            ok = both(going, guard.all_finite([values[0], *grads, *written, *forward]))
            return Verdict(ok, ok, ok)
        if not self.scaled:
            return Verdict(True, guard.all_finite([values[0], *grads]), going)
        ops = keras.ops
        loss_ok, grads_ok = ops.isfinite(values[0]), guard.all_finite(grads)
        sound = ops.logical_and(loss_ok, grads_ok)
        # A finite loss and finite gradients with an update that is not: a divergence.
        going = both(going, ops.logical_or(ops.logical_not(sound), guard.all_finite(written)))
        # A skipped step's update only backs off the scale: kept (unless the loss alone
        # was not finite: then nothing of the step is).
        update = both(going, ops.logical_or(loss_ok, ops.logical_not(grads_ok)))
        return Verdict(update, both(going, sound), going)

    def optimistic(
        self, ok: Any, values: Any, grads: Sequence[Any], forward: Sequence[Any]
    ) -> Verdict:
        """One step of an optimistic call: its update stays; ``going``: the call still may.

        The step is `verdict`'s with what its update wrote left to `call_verdict` (and,
        under the guard, its gradients too: a gradient that is not finite makes what the
        update wrote not finite). A step whose update would not stay fails the call;
        under the guard, so does one whose forward state would not.

        Args:
            ok: Boolean: every step of the call before this one passed.
            values: As `verdict`'s; reported by the call (`report`), not here.
            grads: Its gradients (read under loss scaling only).
            forward: Its forward pass's new non-trainable state.

        Returns:
            The `Verdict`: ``update`` True, ``going`` the call's flag after the step.
        """
        deferred = self.verdict(ok, values, grads if self.scaled else (), (), forward)
        return Verdict(True, deferred.forward if self.scaled else True, deferred.update)

    def call_verdict(self, going: Any, ok: Any, written: Sequence[Any]) -> Any:
        """Whether an optimistic call commits: it started going, every step passed
        (`optimistic`), and every value its updates wrote is finite at its end."""
        return both(going, ok, guard.all_finite(written))

    def report(self, values: Any, going: Any) -> Any:
        """A step's values (or a call's, `going` its verdict) as reported.

        Where not `going`, the loss (column 0) is NaN under the guard and `guard.DIVERGED`
        under loss scaling; an unguarded step reports its values.

        Example:
            >>> rule = StepCommit(guarded=False, scaled=True)
            >>> keras.ops.convert_to_numpy(rule.report(np.array([0.5, 1.0], "float32"), False))
            array([-inf,   1.], dtype=float32)
        """
        if going is True or not self.checked:
            return values
        ops = keras.ops
        values = ops.convert_to_tensor(values)
        loss = values[:1]
        stopped = guard.DIVERGED if self.scaled else float("nan")
        loss = ops.where(going, loss, ops.full_like(loss, stopped))
        return ops.concatenate([loss, values[1:]])

    def committed(self, values: Any) -> bool:
        """On the host: whether an all-or-nothing call committed, from its values.

        A call that commits none of its steps reports every loss as `report` does where
        not going: NaN under the guard, `guard.DIVERGED` under loss scaling. A committed
        loss-scaled call may report any loss (a step the loss scaler skipped), so one whose
        every loss is `DIVERGED` reads as not committed: running it again, each step
        checked, then costs time only.

        Args:
            values: The call's values, ``(steps, width)``, loss in column 0 (any array).

        Example:
            >>> rule = StepCommit(guarded=True, scaled=False)
            >>> rule.committed(np.array([[0.5], [0.4]])), rule.committed(np.full((2, 1), np.nan))
            (True, False)
            >>> StepCommit(guarded=False, scaled=True).committed(np.array([[np.inf], [-np.inf]]))
            True
        """
        if not isinstance(values, np.ndarray):
            values = keras.ops.convert_to_numpy(values)
        losses = values[:, 0]
        stopped = losses == guard.DIVERGED if self.scaled else np.isnan(losses)
        return not stopped.all()

    @staticmethod
    def keep(verdict: Verdict, update: tuple[Any, Any], forward: tuple[Any, Any], select: Select):
        """Apply `verdict`: ``(update, forward)``, each the new or old of its pair.

        Args:
            verdict: The step's `Verdict`.
            update: ``(new, old)``: what the update wrote, and the values before it.
            forward: ``(new, old)``: the forward pass's state, and the state before it.
            select: The engine's ``select(flag, new, old)``, called only where a flag is
                not Python's True (`select` for values, or one that puts variables back).

        Example:
            >>> StepCommit.keep(Verdict(True, False, False), ("w1", "w0"), ("f1", "f0"),
            ...                 lambda flag, new, old: new if flag else old)
            ('w1', 'f0')
        """
        pairs = ((verdict.update, update), (verdict.forward, forward))
        return tuple(new if flag is True else select(flag, new, old) for flag, (new, old) in pairs)


def select(flag: Any, new: Any, old: Any) -> Any:
    """`new` where the boolean `flag` holds, else `old`: nested values, element-wise.

    Example:
        >>> out = select(np.bool_(False), [np.ones(2, "float32")], [np.zeros(2, "float32")])
        >>> keras.ops.convert_to_numpy(out[0])
        array([0., 0.], dtype=float32)
    """
    return keras.tree.map_structure(lambda n, o: keras.ops.where(flag, n, o), new, old)


def decided(verdict: Verdict) -> Verdict:
    """`verdict` as Python booleans, read from the device in one wait (none if known).

    Example:
        >>> decided(Verdict(True, keras.ops.convert_to_tensor(False), False))
        Verdict(update=True, forward=False, going=False)
    """
    flags = {id(f): f for f in verdict if not isinstance(f, bool)}
    if not flags:
        return verdict
    read = keras.ops.convert_to_numpy(keras.ops.stack(list(flags.values())))
    host = dict(zip(flags, (bool(v) for v in read.tolist()), strict=True))
    return Verdict(*(f if isinstance(f, bool) else host[id(f)] for f in verdict))
