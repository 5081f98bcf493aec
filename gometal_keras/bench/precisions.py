"""The benchmark's precision names, the Trainer precision and dtype of each, and TF32.

A bench precision is a Trainer precision (`gometal_keras.core.plan.Precision`), ``auto`` (the
Trainer times the candidates and keeps one), or ``float32-full``: float32 with full
float32 matrix products, where float32 products would otherwise run as TF32 (a recent
NVIDIA GPU). Everything here reads the names and dtypes from `Precision`; only
``float32-full`` is the benchmark's own.

Example:
    >>> PRECISIONS
    ('float32', 'mixed_float16', 'mixed_bfloat16', 'float32-full', 'auto')
    >>> policy_of("float32-full"), compute_dtype("mixed_float16")
    ('float32', 'float16')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import keras

from gometal_keras.core.config import PrecisionSetting
from gometal_keras.core.plan import Precision

#: The precision name under which the Trainer chooses (`PrecisionSetting.AUTO`).
AUTO = PrecisionSetting.AUTO.value

#: float32 with full-precision products (TF32 off), where the device would use TF32.
FULL = "float32-full"
#: Every precision the benchmark takes, in the order rows are run and shown.
PRECISIONS = (*[p.value for p in Precision], FULL, AUTO)


def policy_of(precision: str) -> str:
    """Return the `TrainerConfig` precision a bench precision trains under.

    Args:
        precision: A name from `PRECISIONS`.

    Returns:
        ``"float32"`` for ``float32-full``, else the name itself (``"auto"`` included).

    Example:
        >>> policy_of("float32-full"), policy_of("auto")
        ('float32', 'auto')
    """
    return Precision.FLOAT32.value if precision == FULL else precision


def compute_dtype(precision: str) -> str:
    """Return the dtype a bench precision's matrix products run in.

    Args:
        precision: A name from `PRECISIONS` other than ``auto``.

    Returns:
        ``"float32"``, ``"float16"`` or ``"bfloat16"``.

    Example:
        >>> [compute_dtype(p) for p in ("float32-full", "mixed_bfloat16")]
        ['float32', 'bfloat16']
    """
    return Precision(policy_of(precision)).compute_dtype


@contextlib.contextmanager
def torch_float32(full: bool) -> Iterator[None]:
    """PyTorch float32 products: TF32 allowed (``full=False``) or full float32; then restore."""
    import torch

    before = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision("highest" if full else "high")
    torch.backends.cudnn.allow_tf32 = not full
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


@contextlib.contextmanager
def _tensorflow_full_float32() -> Iterator[None]:
    import tensorflow as tf

    before = tf.config.experimental.tensor_float_32_execution_enabled()
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        yield
    finally:
        tf.config.experimental.enable_tensor_float_32_execution(before)


def full_float32() -> contextlib.AbstractContextManager:
    """Return a context of full float32 matrix products (no TF32) for the Keras backend."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.default_matmul_precision("highest")
    if backend == "tensorflow":
        return _tensorflow_full_float32()
    if backend == "torch":
        return torch_float32(full=True)
    return contextlib.nullcontext()


def precision_context(precision: str) -> contextlib.AbstractContextManager[Any]:
    """Return the context a bench precision runs in: `full_float32` for ``float32-full``.

    Args:
        precision: A name from `PRECISIONS`.

    Returns:
        A context manager; it changes nothing for the other precisions.

    Example:
        >>> with precision_context("float32"):
        ...     pass
    """
    return full_float32() if precision == FULL else contextlib.nullcontext()
