"""Training: `Trainer`, its loop over arranged or streamed data, the fit session, the run record,
evaluation, checkpoints and the state they hold."""

from gometal_keras.core.native_logs import import_backend

# This folder's modules import Keras: it starts here, with TensorFlow's and XLA's C++ log
# lines kept off stderr (`gometal_keras.core.native_logs`), whichever module is imported first.
import_backend()
