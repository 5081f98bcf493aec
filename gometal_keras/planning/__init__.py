"""Planning: which `RunPlan` a trainer runs. Candidates by device facts, trials that time them,
the decision, the decision cache, and the one verification every plan passes (`verify`)."""

from gometal_keras.core.native_logs import import_backend

# This folder's modules import Keras: it starts here, with TensorFlow's and XLA's C++ log
# lines kept off stderr (`gometal_keras.core.native_logs`), whichever module is imported first.
import_backend()
