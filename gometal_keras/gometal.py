"""Go-Metal's function names, in one place, for code ported from Go-Metal.

Go-Metal's builder methods (``AddDense``, ``Compile``, ...) are methods of `ModelBuilder`, and its
trainer and loader methods (``TrainBatch``, ``NextBatch``) are methods of theirs; its package
functions are here, each the same object as the Python name beside it:

- ``checkpoints.ImportFromONNX``: `ImportFromONNX`, which is `gometal_keras.import_onnx`;
- ``checkpoints.CheckpointSaver.LoadCheckpoint`` (a saver made with ``FormatJSON``):
  `LoadCheckpoint`, which is
  `gometal_keras.training.gometal_checkpoint.load_gometal_checkpoint`: a Go-Metal JSON
  checkpoint read into a `Trainer` that resumes it;
- ``vision/dataloader.CreateSharedDataLoaders``: `CreateSharedDataLoaders`, which is
  `gometal_keras.vision.create_shared_data_loaders`.

Example:
    >>> from gometal_keras import gometal, import_onnx
    >>> gometal.ImportFromONNX is import_onnx
    True
"""

from __future__ import annotations

from gometal_keras.model.onnx_import import import_onnx as ImportFromONNX  # noqa: N812
from gometal_keras.training.gometal_checkpoint import (
    load_gometal_checkpoint as LoadCheckpoint,  # noqa: N812
)
from gometal_keras.vision.dataloader import (
    create_shared_data_loaders as CreateSharedDataLoaders,  # noqa: N812
)

__all__ = ["CreateSharedDataLoaders", "ImportFromONNX", "LoadCheckpoint"]
