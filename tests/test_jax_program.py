"""JAX's optimistic whole-epoch call, interrupted while it waits for the device.

The call writes its unchecked state back while the device runs and reads its verdict
after; Ctrl-C in that wait (here: the read raising `KeyboardInterrupt`) must leave the
model and the optimizer exactly the state before the call, and training must go on.
Runs on Keras' JAX backend in a subprocess (skipped where JAX is not installed).
"""

from __future__ import annotations

import tensorflow as tf
from helpers import require_backend, run_script

SCRIPT = """
import json
from unittest import mock
import keras, numpy as np
from gometal_keras import ModelBuilder, Trainer, TrainerConfig
b = ModelBuilder([8, 4]).add_dense(8).add_relu().add_dense(3)
t = Trainer(b, TrainerConfig(batch_size=8, precision="float32", loop="fused", seed=1))
rng = np.random.default_rng(0)
data = t.arrange(rng.random((64, 4), dtype=np.float32), rng.integers(0, 3, 64))
t.train_epoch(data)
variables = t.model.variables + t.optimizer.variables
read = keras.ops.convert_to_numpy
before = [read(v).copy() for v in variables]
def interrupt(values):
    raise KeyboardInterrupt
interrupted = False
with mock.patch.object(keras.ops, "convert_to_numpy", interrupt):
    try:
        t.train_epoch(data)
    except KeyboardInterrupt:
        interrupted = True
kept = all(np.array_equal(a, read(v)) for a, v in zip(before, variables))
losses = t.train_epoch(data)[:, 0]
print("RESULT " + json.dumps([interrupted, kept, bool(np.isfinite(losses).all())]))
"""


class InterruptedWaitTest(tf.test.TestCase):
    def test_ctrl_c_while_waiting_leaves_the_state_before_the_call(self):
        require_backend("jax")
        interrupted, kept, trains_on = run_script(SCRIPT, backend="jax")
        self.assertTrue(interrupted)
        self.assertTrue(kept)  # fails when the call's unchecked state stays written back
        self.assertTrue(trains_on)
