"""A run's peak memory is its own, or marked as an upper bound: never a smaller number."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.training import memory


class Allocator:
    """A fake engine's device allocator: bytes in use and their high-water mark."""

    def __init__(self, resets: bool, in_use: int, earlier_peak: int):
        self.resets_peak_memory = resets
        self.in_use, self.high = in_use, max(in_use, earlier_peak)

    def peak_memory_bytes(self, reset: bool = False) -> int:
        if reset and self.resets_peak_memory:
            self.high = self.in_use
        return self.high

    def run(self, extra: int) -> int:
        """Allocate `extra` bytes for a while, then free them; the run's true peak."""
        self.high = max(self.high, self.in_use + extra)
        return self.in_use + extra


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40))
def test_a_device_peak_is_exact_or_an_upper_bound_that_says_so(resets, in_use, earlier, extra):
    engine = Allocator(resets, in_use, earlier)
    watch = memory.MemoryWatch(engine)
    truth = engine.run(extra)
    got = watch.peak()
    assert got.kind in (memory.DEVICE, memory.AT_MOST)
    if got.kind == memory.DEVICE:
        assert got.bytes == truth
    else:
        assert got.bytes >= truth and not resets and got.text().startswith("<= ")
    # Exact wherever it can be known: the peak was reset, or this run raised it.
    assert (got.kind == memory.DEVICE) == (resets or truth > max(in_use, earlier))
