"""gometal_keras: Go-Metal's model builder and mixed-precision trainer on Keras 3.

Mixed precision that is honest and fast on the device you have: the trainer picks the
precision by device and measurement, compiles whole epochs over device-resident data, and
reports steady-state time apart from one-off compilation.

Example:
    >>> from gometal_keras import ModelBuilder, Trainer, TrainerConfig
    >>> builder = ModelBuilder([64, 784]).AddDense(512, True, "dense1").AddReLU("relu1")
    >>> model = builder.AddDense(10, True, "output").Compile()
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> defining module. Loaded on first use, so that `import gometal_keras` (and
# the command line's --help) does not start Keras and its backend.
_EXPORTS = {
    "ArrangedData": "loop",
    "BatchResult": "record",
    "Candidate": "trials",
    "CatsDogsDataset": "vision.dataset",
    "CreateSharedDataLoaders": "vision.dataloader",
    "Comparison": "compare",
    "Decision": "decision",
    "DataLoader": "vision.dataloader",
    "DemoResult": "demo",
    "DemoSettings": "demo",
    "DeviceInfo": "precision",
    "EpochTimer": "timing",
    "EvaluationReport": "evaluation",
    "ImportFromONNX": "onnx_import",
    "ImportedModel": "onnx_import",
    "ImageFolderDataset": "vision.dataset",
    "Loop": "plan",
    "LossScaling": "plan",
    "ModelBuilder": "builder",
    "Precision": "plan",
    "Predictor": "predictor",
    "Reporter": "report",
    "RunPlan": "plan",
    "StreamedData": "streaming",
    "Trainer": "trainer",
    "TrainerConfig": "config",
    "TrainerState": "state",
    "TrainingRun": "record",
    "compare_runs": "compare",
    "create_shared_data_loaders": "vision.dataloader",
    "demo_dataset": "data",
    "demo_notes": "demo",
    "evaluation_report": "evaluation",
    "import_onnx": "onnx_import",
}

__all__ = [
    "ArrangedData",
    "BatchResult",
    "Candidate",
    "CatsDogsDataset",
    "Comparison",
    "CreateSharedDataLoaders",
    "DataLoader",
    "Decision",
    "DemoResult",
    "DemoSettings",
    "DeviceInfo",
    "EpochTimer",
    "EvaluationReport",
    "ImageFolderDataset",
    "ImportFromONNX",
    "ImportedModel",
    "Loop",
    "LossScaling",
    "ModelBuilder",
    "Precision",
    "Predictor",
    "Reporter",
    "RunPlan",
    "StreamedData",
    "Trainer",
    "TrainerConfig",
    "TrainerState",
    "TrainingRun",
    "compare_runs",
    "create_shared_data_loaders",
    "demo_dataset",
    "demo_notes",
    "evaluation_report",
]

if TYPE_CHECKING:
    from gometal_keras.builder import ModelBuilder
    from gometal_keras.compare import Comparison, compare_runs
    from gometal_keras.config import TrainerConfig
    from gometal_keras.data import demo_dataset
    from gometal_keras.decision import Decision
    from gometal_keras.demo import DemoResult, DemoSettings, demo_notes
    from gometal_keras.evaluation import EvaluationReport, evaluation_report
    from gometal_keras.loop import ArrangedData
    from gometal_keras.onnx_import import ImportedModel
    from gometal_keras.plan import Loop, LossScaling, Precision, RunPlan
    from gometal_keras.precision import DeviceInfo
    from gometal_keras.predictor import Predictor
    from gometal_keras.record import BatchResult, TrainingRun
    from gometal_keras.report import Reporter
    from gometal_keras.state import TrainerState
    from gometal_keras.streaming import StreamedData
    from gometal_keras.timing import EpochTimer
    from gometal_keras.trainer import Trainer
    from gometal_keras.trials import Candidate
    from gometal_keras.vision import (
        CatsDogsDataset,
        CreateSharedDataLoaders,
        DataLoader,
        ImageFolderDataset,
        create_shared_data_loaders,
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gometal_keras' has no attribute {name!r}")
    if "keras" not in sys.modules:
        # The backend starts here: without TensorFlow's C++ start-up lines on stderr, unless
        # the user set TF_CPP_MIN_LOG_LEVEL (see gometal_keras.native_logs).
        from gometal_keras.native_logs import import_backend

        import_backend()
    value = getattr(importlib.import_module(f"gometal_keras.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
