"""The backend seam: everything that differs between TensorFlow, JAX and PyTorch.

The rest of the library talks to one `Engine`; `current()` returns the one for the Keras
backend in use. An engine knows its device, moves data onto it, waits for queued work,
and builds a `Program` for a `RunPlan`: the compiled training step and whole-epoch loop of
one model, which reports the plan it really runs. The types live in `engines.base`; each
backend's module is imported only when that backend is in use.

On macOS arm64 with tensorflow-metal installed, `gometal_keras.core.metal` checks the plugin
against TensorFlow's version (package metadata only) before this module imports Keras, so an
out-of-step pair raises ImportError with the fix instead of a symbol error.
"""

from __future__ import annotations

import functools

from gometal_keras.core import metal
from gometal_keras.core.native_logs import import_backend

# Keras (and with it TensorFlow and its plugins) starts here: the plugin's version checked
# first, and TensorFlow's and XLA's C++ log lines kept off stderr (`core.native_logs`).
import_backend()

import keras  # noqa: E402  (after the checked, quiet start above)

from gometal_keras.engines.base import (  # noqa: E402
    Engine,
    Objective,
    Placement,
    Program,
    host_free_memory_bytes,
)

__all__ = ["Engine", "Objective", "Placement", "Program", "current", "host_free_memory_bytes"]


@functools.cache
def _engine(backend: str) -> Engine:
    if backend == "tensorflow":
        metal.require_compatible()
        from gometal_keras.engines.tensorflow import TensorFlowEngine as Chosen
    elif backend == "jax":
        from gometal_keras.engines.jax import JaxEngine as Chosen
    elif backend == "torch":
        from gometal_keras.engines.torch import TorchEngine as Chosen
    else:
        raise ValueError(
            f"Keras backend {backend!r} is not supported; expected tensorflow, jax or torch."
        )
    return Chosen()


def current() -> Engine:
    """Return the engine of the Keras backend in use (`keras.backend.backend()`).

    Example:
        >>> current().name in ("tensorflow", "jax", "torch")
        True
    """
    return _engine(keras.backend.backend())
