"""Peak memory of a training run: the device's where it reports one, else the process'.

The seed promises that mixed precision's "lower memory usage allows larger batches"; this
measures it. On a GPU the engine reports the device allocator's peak (JAX
``memory_stats()["peak_bytes_in_use"]``, TensorFlow ``get_memory_info``, PyTorch
``max_memory_allocated``), reset before the run where the backend can. JAX cannot reset
it: there a run that raised the process' peak has that peak as its own, and one that did
not is only known to have used at most the earlier peak, and says so (`AT_MOST`: in
the demo, the mixed phase after float32's). On a CPU the run's figure is how much the
process' peak resident memory (``ru_maxrss``) grew during it, labelled so; a run that did
not raise it has no figure of its own (None), not a growth of 0 that reads as "no memory".
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import Any

#: `PeakMemory.kind` of an accelerator's allocator peak.
DEVICE = "device peak"
#: `PeakMemory.kind` where the allocator's peak cannot be reset and an earlier run of the
#: process peaked higher: the figure is that earlier peak, an upper bound.
AT_MOST = "at most: the process' device peak, set before this run"
#: `PeakMemory.kind` on a CPU: the growth of the process' peak resident memory.
RSS_GROWTH = "process peak RSS growth"


@dataclasses.dataclass(frozen=True)
class PeakMemory:
    """A run's peak memory and what kind of figure it is.

    Attributes:
        bytes: The figure in bytes, or None when nothing could be read.
        kind: `DEVICE`, `AT_MOST` or `RSS_GROWTH` (empty when unknown).

    Example:
        >>> PeakMemory(3 * 2**20, DEVICE).text(), PeakMemory(2**21, AT_MOST).text()[:12]
        ('3.0 MiB (device peak)', '<= 2.0 MiB (')
    """

    bytes: int | None
    kind: str = ""

    def text(self) -> str:
        """The figure in MiB with its kind, or ``"n/a"``."""
        return describe(self.bytes, self.kind)


def describe(value: int | None, kind: str) -> str:
    """A peak-memory figure of `kind` in MiB, ``<=`` marking an upper bound, or ``"n/a"``.

    Example:
        >>> describe(None, RSS_GROWTH), describe(2**20, RSS_GROWTH)
        ('n/a', '1.0 MiB (process peak RSS growth)')
    """
    if value is None:
        return "n/a"
    return f"{'<= ' if kind == AT_MOST else ''}{value / 2**20:.1f} MiB ({kind})"


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
        engine: The backend engine (`peak_memory_bytes`, `resets_peak_memory`).

    Example:
        >>> from gometal_keras import engines
        >>> watch = MemoryWatch(engines.current())
        >>> block = bytearray(256 * 2**20); block[:: 4096] = b"x" * len(block[:: 4096])
        >>> watch.peak().kind
        'process peak RSS growth'
    """

    def __init__(self, engine: Any):
        self.engine = engine
        self.device = engine.peak_memory_bytes(reset=True)
        self.rss = None if self.device is not None else peak_rss_bytes()

    def peak(self) -> PeakMemory:
        """The run's peak: exact, an upper bound (`AT_MOST`), or None where unknown."""
        if self.device is not None:
            now = self.engine.peak_memory_bytes()
            exact = self.engine.resets_peak_memory or now > self.device
            return PeakMemory(now, DEVICE if exact else AT_MOST)
        now = peak_rss_bytes()
        if now is None or self.rss is None or now <= self.rss:
            return PeakMemory(None, RSS_GROWTH if now is not None else "")
        return PeakMemory(now - self.rss, RSS_GROWTH)


def mib(value: int | None) -> float:
    """Bytes as MiB (NaN for None), for tables and JSON.

    Example:
        >>> mib(3 * 2**20), math.isnan(mib(None))
        (3.0, True)
    """
    return math.nan if value is None else value / 2**20
