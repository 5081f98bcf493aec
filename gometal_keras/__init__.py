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

# The names a README reader needs, each exported once: public name -> defining module. Loaded
# on first use, so that `import gometal_keras` (and the command line's --help) does not start
# Keras and its backend. Everything else lives in its concept folder (`gometal_keras.vision`,
# `gometal_keras.planning`, ...); Go-Metal's package functions are in `gometal_keras.gometal`.
_EXPORTS = {
    "ModelBuilder": "model.builder",
    "Trainer": "training.trainer",
    "TrainerConfig": "core.config",
    "RunPlan": "core.plan",
    "Precision": "core.plan",
    "Decision": "planning.decision",
    "TrainingRun": "training.record",
    "BatchResult": "training.record",
    "TrainerState": "training.state",
    "EvaluationReport": "training.evaluation",
    "evaluation_report": "training.evaluation",
    "Comparison": "reporting.compare",
    "compare_runs": "reporting.compare",
    "Reporter": "reporting.report",
    "Predictor": "shipping.predictor",
    "ImportedModel": "model.onnx_import",
    "import_onnx": "model.onnx_import",
    "demo_dataset": "data.synthetic",
}

__all__ = [
    "BatchResult",
    "Comparison",
    "Decision",
    "EvaluationReport",
    "ImportedModel",
    "ModelBuilder",
    "Precision",
    "Predictor",
    "Reporter",
    "RunPlan",
    "Trainer",
    "TrainerConfig",
    "TrainerState",
    "TrainingRun",
    "compare_runs",
    "demo_dataset",
    "evaluation_report",
    "import_onnx",
]

if TYPE_CHECKING:
    from gometal_keras.core.config import TrainerConfig
    from gometal_keras.core.plan import Precision, RunPlan
    from gometal_keras.data.synthetic import demo_dataset
    from gometal_keras.model.builder import ModelBuilder
    from gometal_keras.model.onnx_import import ImportedModel, import_onnx
    from gometal_keras.planning.decision import Decision
    from gometal_keras.reporting.compare import Comparison, compare_runs
    from gometal_keras.reporting.report import Reporter
    from gometal_keras.shipping.predictor import Predictor
    from gometal_keras.training.evaluation import EvaluationReport, evaluation_report
    from gometal_keras.training.record import BatchResult, TrainingRun
    from gometal_keras.training.state import TrainerState
    from gometal_keras.training.trainer import Trainer


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gometal_keras' has no attribute {name!r}")
    if "keras" not in sys.modules:
        # The backend starts here: without TensorFlow's C++ start-up lines on stderr, unless
        # the user set TF_CPP_MIN_LOG_LEVEL (see gometal_keras.core.native_logs).
        from gometal_keras.core.native_logs import import_backend

        import_backend()
    value = getattr(importlib.import_module(f"gometal_keras.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
