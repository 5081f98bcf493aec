"""Which precisions a device could run fast, and the precision chosen by rule alone.

These reason only about a `DeviceInfo` (so they can be tested with a made-up device); the
choice among timed candidates is `gometal_keras.planning.decision`.
"""

from __future__ import annotations

from typing import Any

from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.plan import Precision
from gometal_keras.model.builder import BUILT_UNDER

#: The mixed policies' names.
MIXED = {p.value for p in Precision if p.mixed}


def policy_of(model: Any) -> str:
    """The dtype policy a Keras model trains under: the one it was built under where it
    says (`BUILT_UNDER`), else its weighted layers' mixed policy if any, else theirs.

    A Sequential's own policy can differ from its layers' (a model built with per-layer
    policies keeps the default, and a model loaded under a user's global policy takes that
    one), so the layers that hold weights decide, never the model object's policy.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, dtype="mixed_bfloat16")])
        >>> policy_of(m)
        'mixed_bfloat16'
    """
    tagged = getattr(model, BUILT_UNDER, None)
    if isinstance(tagged, str):  # made by a ModelBuilder or read from a checkpoint
        return tagged
    layers = [layer for layer in model.layers if layer.weights] or list(model.layers)
    names = {layer.dtype_policy.name for layer in layers}
    mixed = sorted(names & MIXED)
    if mixed or names:  # the layers decide, never the global policy a model object took
        return (mixed or sorted(names))[0]
    return model.dtype_policy.name


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
        >>> from gometal_keras.core.device import cpu_device
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
