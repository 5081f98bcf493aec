"""Model building: Go-Metal's `ModelBuilder` chain, its layer table and rules, and the ONNX
format of a built model (export and import)."""

from gometal_keras.core.native_logs import import_backend

# This folder's modules import Keras: it starts here, with TensorFlow's and XLA's C++ log
# lines kept off stderr (`gometal_keras.core.native_logs`), whichever module is imported first.
import_backend()
