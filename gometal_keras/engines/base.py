"""The seam's types: `Engine`, `Program`, `Placement` (from `engines.placement`), `Objective`.

Each backend module (`tensorflow`, `jax`, `torch`) implements them; `gometal_keras.engines`
picks the one for the Keras backend in use.
"""

from __future__ import annotations

import abc
import dataclasses
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import keras
import numpy as np

import gometal_keras.engines.guard as guard
from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.plan import Precision, RunPlan
from gometal_keras.engines.commit import StepCommit, both
from gometal_keras.engines.placement import Placement

LossFn = Callable[[Any, Any], Any]
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a training step computes besides the update (how it updates is the `RunPlan`).

    Attributes:
        loss: ``loss(y_true, y_pred)`` returning a scalar.
        metric_names: Names of the per-batch metrics, in order.
        metrics: ``metrics(y_true, y_pred)`` returning one float32 scalar per name.
    """

    loss: LossFn
    metric_names: tuple[str, ...] = ()
    metrics: Callable[[Any, Any], list] = lambda y_true, y_pred: []

    @property
    def width(self) -> int:
        """Values per step: the loss, then the metrics."""
        return 1 + len(self.metric_names)


class Program(abc.ABC):
    """A model's compiled training step and epoch. Calls update the model's variables.

    Attributes:
        plan: The plan this program really runs (the engine may have had to change the one
            asked for; e.g. a `tf.distribute` strategy runs without XLA and the guard).
            With ``plan.guard``, a step whose loss, gradients or new weights are not
            finite leaves every variable as it was and reports a NaN loss, and so does
            every later step of the same device call (`gometal_keras.engines.commit`).
    """

    plan: RunPlan
    #: The step-commit rule the steps run under, written once for every engine (None: a
    #: program whose steps commit as they come, as a `tf.distribute` strategy's do).
    _commit: StepCommit | None
    #: A loss-scaled program's latch: its epochs stop at a divergence.
    _latch: guard.EpochLatch | None = None
    #: What a call's flag that is Python's True becomes on the device (`_start`).
    _true: Any = True

    def __init__(
        self,
        model: keras.Model,
        objective: Objective,
        optimizer: Any,
        plan: RunPlan,
        placement: Placement,
    ):
        self.plan = plan
        self._commit = StepCommit.of(plan)
        if not optimizer.built:
            with placement.scope():
                optimizer.build(model.trainable_variables)
        self._compile(model, objective, optimizer, placement)
        if self._commit is not None and self._commit.scaled:
            self._latch = guard.EpochLatch(optimizer)

    @abc.abstractmethod
    def _compile(
        self, model: keras.Model, objective: Objective, optimizer: Any, placement: Placement
    ) -> None:
        """Build the step and the epoch for ``self.plan`` (the optimizer is built), their
        steps committed by ``self._commit`` (`StepCommit.keep` given the engine's select)."""

    @abc.abstractmethod
    def step(self, x: Any, y: Any) -> Any:
        """Run one optimizer step on one batch.

        `x` is what the model takes, or ``uint8`` image bytes, which the step turns into
        ``x * (1/255)`` in float32 on the device (`gometal_keras.core.pixels.to_model_input`).

        Returns:
            A float32 vector of `Objective.width` values: the (unscaled) loss, then the
            metrics, as a device tensor.
        """

    @abc.abstractmethod
    def epoch(self, xs: Any, ys: Any, going: Any = True, read_late: bool = False) -> Any:
        """Run one step per leading index of `xs`/`ys` as one device program.

        Args:
            xs: Batches stacked on a leading axis, ``(steps, batch, ...)``, on the device.
            ys: Labels stacked the same way.
            going: Under a guarded plan, whether the epoch this call continues is still
                going (`guard.still_going` of the call before, a device boolean): when
                False no step of this call is committed. Ignored without the guard.
            read_late: The caller reads the values only after dispatching its next call,
                so the call must not wait for the device: it passes them through
                `confirm` before reading them, and calls `settle` when the epoch ends.

        Returns:
            The per-step values, shape ``(steps, Objective.width)``: a device tensor, or a
            host array where the program has read them already (to check the call).
        """

    def confirm(self, values: Any) -> Any:
        """The values to read for a call made with ``read_late`` (the calls in order).

        A program that checks such a call only when it is read (JAX's optimistic epoch)
        may run it again here and return the new values; by default they are `values`.
        """
        return values

    def settle(self) -> None:
        """Settle every ``read_late`` call not confirmed (the epoch ended or stopped)."""
        return None

    def _start(self, going: Any = True) -> Any:
        """The flag a call starts from: `going`, and under the latch no divergence yet in
        the open epoch; `_true` where that is Python's True."""
        held = self._latch.held() if self._latch is not None else None
        going = going if held is None else both(held, going)
        return self._true if going is True else going

    def _hold(self, going: Any) -> None:
        """Keep the flag a call ended with for the epoch's next call (under the latch)."""
        if self._latch is not None:
            self._latch.hold(going)


class Engine(abc.ABC):
    """One Keras backend on one device."""

    name: str = ""

    @abc.abstractmethod
    def describe_device(self) -> DeviceInfo:
        """Return what the default device is and what it runs fast."""

    @abc.abstractmethod
    def to_device(self, array: np.ndarray) -> Any:
        """Copy a host array onto the default device once."""

    @abc.abstractmethod
    def sync(self, model: keras.Model | None = None) -> None:
        """Wait until all work queued on the device (for `model`) has finished."""

    @abc.abstractmethod
    def free_memory_bytes(self) -> int | None:
        """Bytes free on the device for data, or None when unknown."""

    def peak_memory_bytes(self, reset: bool = False) -> int | None:
        """Peak bytes allocated on the device (since `reset` where it can); None on a CPU."""
        return None

    #: Whether `peak_memory_bytes(reset=True)` starts a new peak (else it is the process').
    resets_peak_memory = True

    #: The `Program` class `program` builds: ``cls(model, objective, optimizer, plan,
    #: placement)``.
    program_class: type[Program]

    def program(
        self,
        model: keras.Model,
        objective: Objective,
        optimizer: Any,
        plan: RunPlan,
        placement: Placement | None = None,
    ) -> Program:
        """Compile the training step and epoch loop of `model` for `plan`.

        Args:
            model: A built Keras model (made under ``placement.scope()``).
            objective: The loss and the metrics.
            optimizer: A Keras optimizer (a `LossScaleOptimizer` when the plan scales).
            plan: What to run; the program's own ``plan`` says what it really runs.
            placement: Where the model lives; None for one device.

        Returns:
            The `Program`.
        """
        placement = placement or Placement(self)
        return self.program_class(model, objective, optimizer, placement.adapt(plan), placement)

    def placement(self, distribution: Any = None, devices: int | None = None) -> Placement:
        """Return the placement for a `distribution` request.

        Args:
            distribution: None (one device), ``"data_parallel"`` (every local device, or
                the first `devices`), ``"multi_worker"`` (several hosts), or a backend
                object (a `tf.distribute.Strategy` or `keras.distribution.Distribution`);
                a `Placement` is returned as it is.
            devices: How many local devices to use (None = all).
        """
        if distribution is None:
            return Placement(self)
        if isinstance(distribution, Placement):  # one made already (e.g. by Trainer.load)
            return distribution
        raise ValueError(
            f"Distribution {distribution!r} is not supported on the {self.name} backend; "
            "expected None on this backend."
        )

    def cpu_placement(self) -> Placement | None:
        """The host CPU as a placement (description `HOST`), or None.

        None where the default device already is the CPU (nothing else to try) and on
        backends that cannot place one model on the CPU beside an accelerator.

        Returns:
            A `Placement` whose scope builds models on the CPU and whose ``put`` copies
            batches there, or None.

        Example:
            >>> from gometal_keras.engines import current
            >>> current().cpu_placement() is None  # this machine's default device: a CPU
            True
        """
        return None

    def jit_options(self, device: DeviceInfo, precision: Precision) -> tuple[bool, ...]:
        """The XLA settings worth timing for `precision` on `device` (first = default)."""
        return (True,) if device.xla else (False,)


def host_free_memory_bytes() -> int | None:
    """Bytes of host memory available for data, or None when unknown.

    Linux reports the free pages (``SC_AVPHYS_PAGES``). macOS does not (``os.sysconf``
    raises ValueError there), so the physical memory stands in: ``sysctl -n hw.memsize``,
    else ``SC_PHYS_PAGES`` pages. The loop keeps a share of it (`loop.DEVICE_SHARE`), so a
    data set larger than that share is copied in chunks instead of all at once.

    Returns:
        Bytes, or None when neither figure can be read.

    Example:
        >>> host_free_memory_bytes() > 0
        True
    """
    import os
    import subprocess
    import sys

    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        pass
    if sys.platform == "darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=5
            ).stdout
            return int(out.strip())
        except (OSError, ValueError, subprocess.SubprocessError):
            pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def run_within(work: Callable[[], T], seconds: float) -> T:
    """Return ``work()``, run in a worker thread; TimeoutError if it takes over `seconds`.

    For device calls that may never return (a GPU command buffer that hangs). A thread
    that does not finish is abandoned, not stopped: Python cannot kill a thread, so it
    runs on in the background (daemon: it does not hold up exit) and its result is lost.
    Enter any thread-local scope (a placement's) inside `work`.

    Example:
        >>> run_within(lambda: 6 * 7, seconds=10.0)
        42
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = work()
        except BaseException as error:  # raised again in the caller's thread
            box["error"] = error

    thread = threading.Thread(target=target, name="gometal-run-within", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TimeoutError(f"did not finish within {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]
