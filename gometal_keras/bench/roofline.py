"""The two ceilings of a roofline, measured with the Keras backend in use, and the floor.

* Matrix rate: a square ``n x n`` matrix product in the compute dtype of a precision
  (float32 as the backend runs it by default, i.e. TF32 on a recent NVIDIA GPU;
  ``float32-full`` with full float32 products; float16; bfloat16), compiled where the
  backend compiles (``jax.jit``, ``tf.function(jit_compile=True)``, torch eager; on
  TensorFlow the faster of XLA and eager for float32 and bfloat16, as the Trainer may
  run either). ``n`` = 8192 on a GPU, 1024 on a CPU (512 with ``--quick``).
  FLOP = ``2 n^3``.
* Memory bandwidth: ``y = x + s`` over a large float32 buffer; bytes = read + write.

Both are timed on random data, after a warm-up, as the median of several calls, each
finished by copying one element of the result to the host (which waits for the device).
The backend's modules are imported only when that backend is in use, so the JAX path
never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras.bench.precisions import AUTO, compute_dtype, precision_context
from gometal_keras.core.plan import Precision


@dataclasses.dataclass(frozen=True)
class Rates:
    """Measured ceilings: FLOP/s per precision name, and bytes/s of a device copy."""

    flops: dict[str, float]
    bandwidth: float
    matmul_n: int
    copy_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``matmul_flops``, ``bandwidth``, ``matmul_n``, ``copy_bytes``."""
        d = dataclasses.asdict(self)
        return {"matmul_flops": d.pop("flops"), **d}


def floor_seconds(flops: float, nbytes: float, rate: float, bandwidth: float) -> float:
    """The roofline floor: ``max(flops / rate, nbytes / bandwidth)`` seconds."""
    return max(flops / rate, nbytes / bandwidth)


def bound(flops: float, nbytes: float, rate: float, bandwidth: float) -> str:
    """Which term of the floor is larger: ``"compute"`` (ties too) or ``"memory"``.

    Example:
        >>> bound(1e12, 1e9, 1e14, 1e12), bound(1e12, 1e9, 1e14, 1e10)
        ('compute', 'memory')
    """
    return "compute" if flops / rate >= nbytes / bandwidth else "memory"


def _compiler(xla: bool = True) -> tuple[Callable[[Callable], Callable], Callable]:
    """(compile function, host array -> device tensor of a dtype) for the backend in use.

    TensorFlow compiles with XLA only where the device has it (tensorflow-metal has none).
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        return jax.jit, lambda a, d: jax.device_put(jnp.asarray(a, dtype=d))
    if backend == "tensorflow":
        import tensorflow as tf

        device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"

        def put(a: np.ndarray, d: str) -> Any:
            with tf.device(device):
                return tf.cast(tf.identity(tf.convert_to_tensor(a)), d)

        return (lambda f: tf.function(f, jit_compile=xla)), put
    return (lambda f: f), lambda a, d: keras.ops.cast(keras.ops.convert_to_tensor(a), d)


def _median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    def run() -> float:
        start = time.perf_counter()
        out = fn()
        first = keras.ops.cast(keras.ops.reshape(out, (-1,))[0], "float32")
        float(keras.ops.convert_to_numpy(first))  # waits for the device
        return time.perf_counter() - start

    run()  # compile and warm up
    return statistics.median(run() for _ in range(repeats))


def matmul_rate(dtype: str, n: int, repeats: int = 5, chain: int = 4, xla: bool = True) -> float:
    """FLOP/s of ``chain`` dependent ``n x n`` products in `dtype` (one compiled call)."""
    compile_fn, put = _compiler(xla)
    rng = np.random.default_rng(0)
    a = put(rng.standard_normal((n, n), dtype=np.float32) / np.sqrt(n), dtype)
    b = put(rng.standard_normal((n, n), dtype=np.float32) / np.sqrt(n), dtype)

    def body(a, b):
        for _ in range(chain):
            a = keras.ops.matmul(a, b)
        return a

    fns = [compile_fn(body)]
    if keras.backend.backend() == "tensorflow" and dtype != "float16":
        fns.append(body)  # TF runs eager oneDNN kernels too; keep the faster of the two
    best = min(_median_seconds(lambda f=f: f(a, b), repeats) for f in fns)
    return chain * 2.0 * n**3 / best


def copy_bandwidth(nbytes: int, repeats: int = 5, xla: bool = True) -> float:
    """Bytes/s (read + write) of ``x + s`` over `nbytes` of float32."""
    compile_fn, put = _compiler(xla)
    x = put(np.random.default_rng(1).standard_normal(nbytes // 4, dtype=np.float32), "float32")
    s = put(np.float32(0.5), "float32")
    fn = compile_fn(lambda x, s: x + s)
    return 2.0 * (nbytes // 4) * 4 / _median_seconds(lambda: fn(x, s), repeats)


def measure(precisions: list[str], gpu: bool, quick: bool, xla: bool = True) -> Rates:
    """Measure the matrix rate of each precision and the copy bandwidth.

    A precision whose product the device cannot run (it raises) gets a NaN rate: its rows
    then have no floor, and the others are still measured.
    """
    n = 8192 if gpu else (512 if quick else 1024)
    nbytes = (2 << 30) if gpu else (64 << 20 if quick else 256 << 20)
    flops = {}
    # "auto" runs one of the others: measure them all so its floor can be drawn.
    wanted = [p.value for p in Precision] if AUTO in precisions else []
    for p in dict.fromkeys([q for q in precisions if q != AUTO] + wanted):
        try:
            with precision_context(p):
                flops[p] = matmul_rate(compute_dtype(p), n, repeats=3 if quick else 10, xla=xla)
        except Exception:  # a kernel the device lacks must not lose the whole run
            flops[p] = math.nan
    return Rates(flops, copy_bandwidth(nbytes, repeats=3 if quick else 10, xla=xla), n, nbytes)
