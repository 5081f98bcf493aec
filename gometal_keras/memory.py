"""Peak memory of a training run: the device's where it reports one, else the process'.

The seed promises that mixed precision's "lower memory usage allows larger batches"; this
measures it. On a GPU the engine reports the device allocator's peak (JAX
``memory_stats()["peak_bytes_in_use"]``, TensorFlow ``get_memory_info``, PyTorch
``max_memory_allocated``; reset before the run where the backend can, so on JAX it is the
process' peak so far). On a CPU the run's figure is how much the process' peak resident
memory (``ru_maxrss``) grew during it, labelled so: it is 0 when an earlier moment of the
process held more.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

#: `PeakMemory.kind` of an accelerator's allocator peak.
DEVICE = "device peak"
#: `PeakMemory.kind` on a CPU: the growth of the process' peak resident memory.
RSS_GROWTH = "process peak RSS growth"


@dataclasses.dataclass(frozen=True)
class PeakMemory:
    """A run's peak memory and what kind of figure it is.

    Attributes:
        bytes: The figure in bytes, or None when nothing could be read.
        kind: `DEVICE` or `RSS_GROWTH` (empty when unknown).

    Example:
        >>> PeakMemory(3 * 2**20, DEVICE).text()
        '3.0 MiB (device peak)'
    """

    bytes: int | None
    kind: str = ""

    def text(self) -> str:
        """The figure in MiB with its kind, or ``"n/a"``."""
        return "n/a" if self.bytes is None else f"{self.bytes / 2**20:.1f} MiB ({self.kind})"


def peak_rss_bytes() -> int | None:
    """The process' peak resident memory so far, in bytes (None where it cannot be read).

    Example:
        >>> peak_rss_bytes() > 0
        True
    """
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes; Linux: KiB


class MemoryWatch:
    """Started before a run; `peak` is the run's `PeakMemory`.

    Args:
        engine: The backend engine (`peak_memory_bytes`).

    Example:
        >>> from gometal_keras import engines
        >>> watch = MemoryWatch(engines.current())
        >>> block = bytearray(64 * 2**20)
        >>> watch.peak().kind
        'process peak RSS growth'
    """

    def __init__(self, engine: Any):
        self.engine = engine
        self.device = engine.peak_memory_bytes(reset=True)
        self.rss = None if self.device is not None else peak_rss_bytes()

    def peak(self) -> PeakMemory:
        """The device's peak since the start, or the growth of the process' peak RSS."""
        if self.device is not None:
            return PeakMemory(self.engine.peak_memory_bytes(), DEVICE)
        now = peak_rss_bytes()
        if now is None or self.rss is None:
            return PeakMemory(None)
        return PeakMemory(max(0, now - self.rss), RSS_GROWTH)


def mib(value: int | None) -> float:
    """Bytes as MiB (NaN for None), for tables and JSON.

    Example:
        >>> mib(3 * 2**20), math.isnan(mib(None))
        (3.0, True)
    """
    return math.nan if value is None else value / 2**20
