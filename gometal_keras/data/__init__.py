"""Data: every input `fit` takes as one stream of batches, streaming to the device, input checks,
the demo's synthetic data and data sets the user has on disk."""

from gometal_keras.core.native_logs import import_backend

# This folder's modules import Keras: it starts here, with TensorFlow's and XLA's C++ log
# lines kept off stderr (`gometal_keras.core.native_logs`), whichever module is imported first.
import_backend()
