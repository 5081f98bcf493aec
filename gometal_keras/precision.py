"""Precision: the policies we train under, what a device runs fast, and the auto choice.

Nothing here changes Keras' global dtype policy: a policy name is handed to the layers
that need it. Device facts come from the backend engine (`gometal_keras.engines`) as a
`DeviceInfo`; this module only reasons about them, so the choice can be tested with a
made-up device.
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
from collections.abc import Callable, Sequence
from typing import Any

FLOAT32 = "float32"
MIXED_FLOAT16 = "mixed_float16"
MIXED_BFLOAT16 = "mixed_bfloat16"
POLICIES = (FLOAT32, MIXED_FLOAT16, MIXED_BFLOAT16)

#: A mixed candidate must beat float32 by this fraction to be chosen: timing noise alone
#: must never trade float32's accuracy for nothing.
MIN_GAIN = 0.05


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
        if self.compute_capability:
            bits[-1] += " sm_{}{}".format(*self.compute_capability)
        bits += [self.backend, "XLA available" if self.xla else "no XLA"]
        return f"{self.name} ({', '.join(bits)})"


def policy_of(model: Any) -> str:
    """The dtype policy a Keras model trains under: its layers' mixed policy if any.

    A Sequential's own policy can differ from its layers' (a model built with per-layer
    policies keeps the default), so the layers that hold weights decide.

    Example:
        >>> import keras
        >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, dtype="mixed_bfloat16")])
        >>> policy_of(m)
        'mixed_bfloat16'
    """
    names = {layer.dtype_policy.name for layer in model.layers if layer.weights}
    mixed = sorted(n for n in names if n.startswith("mixed_"))
    return mixed[0] if mixed else model.dtype_policy.name


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


def candidates(device: DeviceInfo) -> dict[str, str]:
    """Return the precisions worth timing on `device`, each with the reason it qualifies.

    float32 is always a candidate. float16 needs a fast float16 path (a CPU needs XLA for
    it: without XLA Keras' float16 kernels on a CPU are ~100x slower); bfloat16 needs
    hardware support.

    Example:
        >>> cpu = DeviceInfo("tensorflow", "cpu", "CPU", xla=False, fp16_fast=False,
        ...                  bf16_fast=True)
        >>> sorted(candidates(cpu))
        ['float32', 'mixed_bfloat16']
    """
    found = {FLOAT32: "always available"}
    if device.fp16_fast and (device.xla or device.kind != "cpu"):
        found[MIXED_FLOAT16] = f"fast float16 on {device.kind}"
    if device.bf16_fast:
        found[MIXED_BFLOAT16] = f"fast bfloat16 on {device.kind}"
    return found


def rejected(device: DeviceInfo) -> dict[str, str]:
    """Return the mixed precisions `candidates` leaves out, each with the reason."""
    out = {}
    if not device.fp16_fast or (device.kind == "cpu" and not device.xla):
        if device.kind == "cpu":
            why = "no XLA" if not device.xla else "no float16 arithmetic (AVX512-FP16/AMX-FP16)"
        else:
            why = "no fast float16 path"
        out[MIXED_FLOAT16] = f"{why} on this {device.kind}"
    if not device.bf16_fast:
        why = (
            "bfloat16 instructions (AVX512-BF16/AMX-BF16)" if device.kind == "cpu" else "fast path"
        )
        out[MIXED_BFLOAT16] = f"no {why} for bfloat16 on this {device.kind}"
    return out


@dataclasses.dataclass(frozen=True)
class Decision:
    """The outcome of `choose`: what was timed, what won, and why.

    Attributes:
        chosen: The precision kept.
        seconds: Measured seconds per step of each timed candidate (NaN if its loss was
            not finite).
        reason: One sentence a report can print.
        skipped: Precisions not timed, each with the reason.
    """

    chosen: str
    seconds: dict[str, float]
    reason: str
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Return the decision as JSON-ready data."""
        return {
            "chosen": self.chosen,
            "candidates": dict(self.seconds),
            "reason": self.reason,
            "skipped": dict(self.skipped),
        }


def choose(
    device: DeviceInfo,
    measure: Callable[[str], float],
    names: Sequence[str] | None = None,
) -> Decision:
    """Time each candidate precision with `measure` and keep the fastest that is sound.

    Args:
        device: The device the model will train on.
        measure: Returns seconds per step of the user's model under a precision, or NaN
            when its loss was not finite.
        names: Restrict the candidates to these (default: `candidates(device)`).

    Returns:
        A `Decision`. A mixed precision wins only when it is at least `MIN_GAIN` faster
        than float32; otherwise float32 is kept, and the reason says so.

    Example:
        >>> dev = DeviceInfo("jax", "cuda", "GPU", True, True, True)
        >>> choose(dev, {"float32": 2.0, "mixed_float16": 1.0, "mixed_bfloat16": 1.1}.get).chosen
        'mixed_float16'
    """
    pool = candidates(device)
    names = [n for n in (names or pool) if n in pool]
    seconds = {name: float(measure(name)) for name in names}
    sound = {n: s for n, s in seconds.items() if math.isfinite(s)}
    skipped = rejected(device)
    if not sound:
        raise RuntimeError("Every candidate precision gave a non-finite loss on a trial step.")
    best = min(sound, key=sound.__getitem__)
    base = sound.get(FLOAT32)
    if best != FLOAT32 and base is not None and sound[best] > base * (1 - MIN_GAIN):
        return Decision(FLOAT32, seconds, _reason(FLOAT32, sound, device, skipped), skipped)
    return Decision(best, seconds, _reason(best, sound, device, skipped), skipped)


def sole_candidate(device: DeviceInfo) -> Decision:
    """The decision where `device` leaves float32 as the only candidate: nothing to time.

    Example:
        >>> cpu = DeviceInfo("torch", "cpu", "CPU", False, False, False)
        >>> sole_candidate(cpu).chosen
        'float32'
    """
    skipped = rejected(device)
    if len(candidates(device)) != 1:
        raise ValueError(f"{device.describe()} has several candidate precisions; time them.")
    reason = f"float32 kept on {device.kind}: {_none_fast(skipped)}."
    return Decision(FLOAT32, {}, reason, skipped)


def _none_fast(skipped: dict[str, str]) -> str:
    return (
        "no mixed precision runs fast here ("
        + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        + ")"
    )


def _reason(chosen: str, sound: dict[str, float], device: DeviceInfo, skipped: dict) -> str:
    ms = ", ".join(f"{n} {s * 1e3:.3g} ms" for n, s in sorted(sound.items(), key=lambda i: i[1]))
    if chosen == FLOAT32:
        why = f"no mixed precision was at least {MIN_GAIN:.0%} faster"
        if len(sound) == 1:
            why = _none_fast(skipped)
        return f"float32 kept on {device.kind}: {why} (per step: {ms})."
    gain = sound.get(FLOAT32, math.nan) / sound[chosen]
    return f"{chosen} chosen on {device.kind}: {gain:.2f}x float32's step speed (per step: {ms})."
