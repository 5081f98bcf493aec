"""What a device runs fast: `DeviceInfo`, and which precisions are worth timing on it.

Device facts come from the backend engine (`gometal_keras.engines`) as a `DeviceInfo`;
this module only reasons about them, so the candidates can be tested with a made-up
device. The choice among the timed candidates is `gometal_keras.decision`.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import Any

from gometal_keras.plan import Precision


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


def policy_of(model: Any) -> str:
    """The dtype policy a Keras model trains under: its layers' mixed policy if any.

    A Sequential's own policy can differ from its layers' (a model built with per-layer
    policies keeps the default, and a model loaded under a user's global policy takes that
    one), so the layers that hold weights decide.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, dtype="mixed_bfloat16")])
        >>> policy_of(m)
        'mixed_bfloat16'
    """
    layers = [layer for layer in model.layers if layer.weights] or list(model.layers)
    names = {layer.dtype_policy.name for layer in layers}
    mixed = sorted(n for n in names if n.startswith("mixed_"))
    if mixed or names:  # the layers decide, never the global policy a model object took
        return (mixed or sorted(names))[0]
    return model.dtype_policy.name


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


def candidates(device: DeviceInfo) -> dict[Precision, str]:
    """Return the precisions worth timing on `device`, each with the reason it qualifies.

    float32 is always a candidate. float16 needs a fast float16 path (a CPU needs XLA for
    it: without XLA Keras' float16 kernels on a CPU are ~100x slower); bfloat16 needs
    hardware support.

    Example:
        >>> cpu = DeviceInfo("tensorflow", "cpu", "CPU", xla=False, fp16_fast=False,
        ...                  bf16_fast=True)
        >>> [p.value for p in candidates(cpu)]
        ['float32', 'mixed_bfloat16']
    """
    found = {Precision.FLOAT32: "always available"}
    if device.fp16_fast and (device.xla or device.kind != "cpu"):
        found[Precision.MIXED_FLOAT16] = f"fast float16 on {device.kind}"
    if device.bf16_fast:
        found[Precision.MIXED_BFLOAT16] = f"fast bfloat16 on {device.kind}"
    return found


def rejected(device: DeviceInfo) -> dict[Precision, str]:
    """Return the mixed precisions `candidates` leaves out, each with the reason."""
    out = {}
    if not device.fp16_fast or (device.kind == "cpu" and not device.xla):
        if device.kind == "cpu":
            why = "no XLA" if not device.xla else "no float16 arithmetic (AVX512-FP16/AMX-FP16)"
        else:
            why = "no fast float16 path"
        out[Precision.MIXED_FLOAT16] = f"{why} on this {device.kind}"
    if not device.bf16_fast:
        why = (
            "bfloat16 instructions (AVX512-BF16/AMX-BF16)" if device.kind == "cpu" else "fast path"
        )
        out[Precision.MIXED_BFLOAT16] = f"no {why} for bfloat16 on this {device.kind}"
    return out


def preferred(device: DeviceInfo) -> Precision:
    """The precision chosen by device facts alone, without trials (``decision_cache="never"``).

    Mixed precision only on a CUDA GPU, where tensor cores make it pay reliably: bfloat16
    where it is fast (no loss scaling), else float16; float32 everywhere else (on CPUs and
    Apple GPUs the measured gains are small, absent or negative).

    Example:
        >>> h200 = DeviceInfo("jax", "cuda", "H200", True, True, True, compute_capability=(9, 0))
        >>> preferred(h200).value, preferred(cpu_device("jax", True)).value
        ('mixed_bfloat16', 'float32')
    """
    found = candidates(device)
    if device.kind != "cuda":
        return Precision.FLOAT32
    for precision in (Precision.MIXED_BFLOAT16, Precision.MIXED_FLOAT16):
        if precision in found:
            return precision
    return Precision.FLOAT32
