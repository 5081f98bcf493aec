"""What a device runs fast: `DeviceInfo`, and which precisions are worth timing on it.

Device facts come from the backend engine (`gometal_keras.engines`) as a `DeviceInfo`;
this module only reasons about them, so the candidates can be tested with a made-up
device. The choice among the timed candidates is `gometal_keras.planning.decision`.
"""

from __future__ import annotations

import dataclasses
import os
import platform


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What one device can run fast, as the backend reports it.

    Attributes:
        backend: Keras backend name (``"tensorflow"``, ``"jax"``, ``"torch"``).
        kind: ``"cpu"``, ``"cuda"``, ``"metal"`` (Apple GPU) or another accelerator name.
        name: Human-readable device name.
        xla: Whether XLA compilation is available for this backend and device.
        fp16_fast: Whether float16 math has a fast path here.
        bf16_fast: Whether bfloat16 math has a fast path here.
        tf32: Whether float32 matrix products run as TF32 by default.
        compute_capability: NVIDIA compute capability, e.g. ``(9, 0)``.
        cpu_features: Relevant CPU instruction-set flags found.
    """

    backend: str
    kind: str
    name: str
    xla: bool
    fp16_fast: bool
    bf16_fast: bool
    tf32: bool = False
    compute_capability: tuple[int, int] | None = None
    cpu_features: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line for reports, e.g. ``"NVIDIA H200 (cuda sm_90, jax, XLA available)"``."""
        bits = [] if self.kind == "cpu" else [self.kind]
        if self.compute_capability and bits:
            bits[-1] += " sm_{}{}".format(*self.compute_capability)
        bits += [self.backend, "XLA available" if self.xla else "no XLA"]
        return f"{self.name} ({', '.join(bits)})"


_CPU_FLAGS = ("avx512_fp16", "amx_fp16", "avx512_bf16", "amx_bf16", "amx_tile", "fphp", "bf16")


def cpu_features() -> tuple[str, ...]:
    """Return the CPU's mixed-precision instruction flags (Linux and Apple Silicon)."""
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return ("fphp",)  # every Apple M-series core does float16 arithmetic natively
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    found = set(line.split(":", 1)[1].split())
                    return tuple(f for f in _CPU_FLAGS if f in found)
    except OSError:
        pass
    return ()


def cpu_device(backend: str, xla: bool) -> DeviceInfo:
    """Describe this machine's CPU as a training device for `backend`."""
    feats = cpu_features()
    fp16 = xla and bool({"avx512_fp16", "amx_fp16", "fphp"} & set(feats))
    bf16 = bool({"avx512_bf16", "amx_bf16", "bf16"} & set(feats))
    name = f"{platform.machine() or 'unknown'} CPU, {os.cpu_count() or '?'} cores"
    return DeviceInfo(backend, "cpu", name, xla, fp16, bf16, cpu_features=feats)
