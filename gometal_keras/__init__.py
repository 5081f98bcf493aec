"""gometal_keras: Go-Metal's model builder and mixed-precision trainer on Keras 3.

Mixed precision that is honest and fast on the device you have: the trainer picks the
precision by device and measurement, compiles whole epochs over device-resident data, and
reports steady-state time apart from one-off compilation.

Example:
    >>> from gometal_keras import ModelBuilder, Trainer, TrainerConfig
    >>> builder = ModelBuilder([64, 784]).AddDense(512, True, "dense1").AddReLU("relu1")
    >>> model = builder.AddDense(10, True, "output").Compile()
"""

from gometal_keras.builder import ModelBuilder
from gometal_keras.compare import Comparison, compare_runs
from gometal_keras.config import TrainerConfig
from gometal_keras.data import demo_dataset
from gometal_keras.precision import Decision, DeviceInfo
from gometal_keras.record import TrainingRun
from gometal_keras.report import Reporter
from gometal_keras.timing import EpochTimer
from gometal_keras.trainer import BatchResult, Trainer

__version__ = "0.1.0"

__all__ = [
    "BatchResult",
    "Comparison",
    "Decision",
    "DeviceInfo",
    "EpochTimer",
    "ModelBuilder",
    "Reporter",
    "Trainer",
    "TrainerConfig",
    "TrainingRun",
    "compare_runs",
    "demo_dataset",
]
