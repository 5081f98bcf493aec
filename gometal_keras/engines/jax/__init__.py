"""JAX engine: the device, its placements, and the program (`engines.jax_program`)."""

from __future__ import annotations

from typing import Any

import jax
import keras
import numpy as np

from gometal_keras.core.device import DeviceInfo, cpu_device
from gometal_keras.engines.base import Engine, Placement, host_free_memory_bytes
from gometal_keras.engines.jax.parallel import JaxDataParallel
from gometal_keras.engines.jax.program import JaxProgram


class JaxEngine(Engine):
    """Keras on JAX: CPU, CUDA GPUs (TF32 for float32 matmuls by default) and others."""

    name = "jax"
    program_class = JaxProgram
    #: ``memory_stats()["peak_bytes_in_use"]`` is the process' peak: JAX cannot reset it.
    resets_peak_memory = False

    def __init__(self) -> None:
        self._device = jax.devices()[0]

    def describe_device(self) -> DeviceInfo:
        d = self._device
        if d.platform == "cpu":
            return cpu_device(self.name, xla=True)
        if d.platform in ("gpu", "cuda"):
            cc = tuple(int(p) for p in str(getattr(d, "compute_capability", "0.0")).split(".")[:2])
            default_precision = jax.config.jax_default_matmul_precision
            return DeviceInfo(
                self.name,
                "cuda",
                d.device_kind,
                xla=True,
                fp16_fast=cc >= (7, 0),
                bf16_fast=cc >= (8, 0),
                tf32=cc >= (8, 0) and default_precision in (None, "tensorfloat32", "default"),
                compute_capability=cc,
            )
        apple = d.platform.lower() == "metal"
        kind = "metal" if apple else d.platform
        return DeviceInfo(self.name, kind, d.device_kind, True, True, not apple)

    def placement(self, distribution: Any = None, devices: int | None = None) -> Placement:
        if distribution is None:
            return Placement(self)
        if isinstance(
            distribution, (keras.distribution.DataParallel, keras.distribution.ModelParallel)
        ):
            return JaxDataParallel(self, distribution)
        if distribution == "multi_worker":
            # One process per host; jax.distributed.initialize() must have run (see
            # docs/distributed.md): then list_devices() spans every host.
            distribution = "data_parallel"
        if distribution == "data_parallel":
            found = keras.distribution.list_devices()
            chosen = found if devices is None else found[:devices]
            if devices is not None and len(chosen) < devices:
                raise ValueError(f"{devices} devices asked for, but only {len(found)} found.")
            return JaxDataParallel(self, keras.distribution.DataParallel(devices=chosen))
        return super().placement(distribution, devices)

    def to_device(self, array: np.ndarray) -> Any:
        return jax.device_put(array, self._device)

    def sync(self, model: keras.Model | None = None) -> None:
        if model is not None:
            jax.block_until_ready([v.value for v in model.variables])
        jax.effects_barrier()

    def use_compilation_cache(self, folder: str) -> None:
        """Keep compiled programs in `folder` across processes (process-wide; off by default)."""
        jax.config.update("jax_compilation_cache_dir", str(folder))

    def peak_memory_bytes(self, reset: bool = False) -> int | None:
        stats = self._device.memory_stats() if self._device.platform != "cpu" else None
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None

    def free_memory_bytes(self) -> int | None:
        stats = self._device.memory_stats() if self._device.platform != "cpu" else None
        if not stats:
            return host_free_memory_bytes()
        return int(stats.get("bytes_limit", 0)) - int(stats.get("bytes_in_use", 0))
