"""Reporting: comparisons of runs, the console report, JSON, plots, progress bars, the demo
program and the installation facts `gometal-keras info` prints."""

from gometal_keras.core.native_logs import import_backend

# This folder's modules import Keras: it starts here, with TensorFlow's and XLA's C++ log
# lines kept off stderr (`gometal_keras.core.native_logs`), whichever module is imported first.
import_backend()
