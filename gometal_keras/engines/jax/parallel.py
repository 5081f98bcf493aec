"""JAX data parallelism: variables replicated over a `keras.distribution` mesh."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from gometal_keras.engines.base import Engine, Placement
from gometal_keras.engines.jax.program import LostWorkers
from gometal_keras.engines.placement import rebuilt_in


class JaxDataParallel(Placement):
    """Variables replicated over a `keras.distribution.DataParallel` mesh, batches split.

    XLA partitions the compiled epoch over the mesh and all-reduces the gradients.
    """

    def __init__(self, engine: Engine, distribution: Any):
        super().__init__(engine)
        self.distribution = distribution
        mesh = distribution.device_mesh
        self.replicas = int(np.prod(mesh.shape))
        self.description = f"data parallel over {self.replicas} devices (keras.distribution)"
        import jax

        self.processes, self.worker = jax.process_count(), jax.process_index()
        self._lost = LostWorkers(self.worker, self.processes)

    def scope(self) -> Any:
        return self.distribution.scope()

    def adopt(self, model: keras.Model) -> keras.Model:
        return rebuilt_in(self, model)  # variables laid out over the mesh in the scope

    def put(self, array: np.ndarray, batch_axis: int = 0) -> Any:
        axes: list[str | None] = [None] * array.ndim
        axes[batch_axis] = self.distribution.batch_dim_name
        layout = keras.distribution.TensorLayout(axes, self.distribution.device_mesh)
        with self._lost:  # laying a batch out gathers from every process
            return keras.distribution.distribute_tensor(array, layout)
