"""`Placement`: where a model's variables live and how batches are laid out.

One device by default; each backend module derives its distributed placements (a
`tf.distribute` strategy, a `keras.distribution.DataParallel` mesh) and the host CPU of an
accelerator machine. A model built outside a placement (read from a checkpoint, say) is
brought into it with `Placement.adopt`, whatever device count wrote it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any, Protocol

import keras
import numpy as np

from gometal_keras.core.plan import RunPlan


class ToDevice(Protocol):
    """What a placement needs of its engine (`gometal_keras.engines.base.Engine` has it)."""

    def to_device(self, array: np.ndarray) -> Any: ...


class Placement:
    """Where a model's variables live and how batches are laid out: one device by default.

    A data-parallel placement replicates the variables over `replicas` devices and splits
    every batch between them; `batch_size` stays the global batch (per replica x replicas).

    Args:
        engine: The engine whose default device holds everything.
    """

    replicas = 1
    description = "one device"
    #: Processes that share this placement (several hosts' workers: > 1) and this one's index.
    #: Every worker must build the same programs, so a plan is never timed per worker.
    processes = 1
    worker = 0

    def __init__(self, engine: ToDevice):
        self._engine = engine

    def scope(self) -> contextlib.AbstractContextManager:
        """Context in which models and optimizers must be created."""
        return contextlib.nullcontext()

    def put(self, array: np.ndarray, batch_axis: int = 0) -> Any:
        """Copy a host array of batches to the device(s), split along `batch_axis`."""
        return self._engine.to_device(array)

    def adopt(self, model: keras.Model) -> keras.Model:
        """`model`, built outside any placement (e.g. read from a checkpoint), living here.

        One device takes the model as it is; a distributed placement rebuilds it in its
        scope (`rebuilt_in`). Either way the caller assigns the variable values after.

        Example:
            >>> from gometal_keras.engines import current
            >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
            >>> Placement(current()).adopt(m) is m
            True
        """
        return model

    def adapt(self, plan: RunPlan) -> RunPlan:
        """The plan as it runs under this placement (replicas and description filled in).

        Example:
            >>> from gometal_keras.core.plan import Precision
            >>> from gometal_keras.engines import current
            >>> Placement(current()).adapt(RunPlan(Precision.FLOAT32, xla=True)).replicas
            1
        """
        return plan.replace(replicas=self.replicas, placement=self.description)

    def check_batch(self, batch_size: int) -> None:
        """Raise ValueError when `batch_size` does not split evenly over the replicas."""
        if batch_size % self.replicas:
            raise ValueError(
                f"batch_size {batch_size} does not split over {self.replicas} replicas; "
                "expected a multiple of the replica count (batch_size is the global batch)."
            )


def rebuilt_in(placement: Placement, model: keras.Model) -> keras.Model:
    """A copy of `model` whose variables are created in ``placement.scope()``.

    The copy has the same layers, dtype policies and variable shapes, in the same order
    (`keras.models.clone_model`); its values are fresh, to be assigned by the caller.

    Example:
        >>> from gometal_keras.engines import current
        >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        >>> [tuple(v.shape) for v in rebuilt_in(Placement(current()), m).variables]
        [(3, 2), (2,)]
    """
    with placement.scope():
        return keras.models.clone_model(model)


def lost_worker(cause: str, worker: int, processes: int, named: Iterable[int] = ()) -> str:
    """The sentence for a multi-worker collective that failed because a peer is gone.

    Each engine tells a lost peer from its own errors (TensorFlow's collective errors,
    gloo's closed connections under JAX) and which workers its message names; the
    sentence is the same on every backend.

    Args:
        cause: The error, as ``"Type: first line"``.
        worker: This process' worker index.
        processes: Workers in the cluster.
        named: The workers the error names (none: the only other one of two, if so).

    Returns:
        One sentence naming the lost worker and the way out.

    Example:
        >>> lost_worker("JaxRuntimeError: Gloo all-reduce failed", 0, 2)[:49]
        'Worker 1 of 2 stopped answering in a training col'
    """
    others = sorted(set(named) - {worker})
    if not others and processes == 2:
        others = [1 - worker]
    who = (f"Worker {', '.join(map(str, others))} of {processes}" if others
           else f"Another worker of {processes}")
    return (f"{who} stopped answering in a training collective ({cause.strip().rstrip('.:')}), "
            f"so worker {worker} stopped too; expected every worker running: restart them "
            "all and resume from the last checkpoint (Trainer.load).")

