"""An optimistic whole-epoch call (JAX's and PyTorch's), interrupted before its verdict.

Such a call applies its updates unchecked and reads its verdict at its end; Ctrl-C before
that (here: the verdict's read raising `KeyboardInterrupt`, on JAX the wait for the
values, on PyTorch the first on-device check, after one update is in) must leave the model
and the optimizer exactly the state before the call, and training must go on. Each
backend runs in a subprocess (skipped where it is not installed).
"""

from __future__ import annotations

import pytest
from helpers import require_backend, run_script

SCRIPT = """
import json, sys
from unittest import mock
import keras, numpy as np
from gometal_keras import ModelBuilder, Trainer, TrainerConfig
from gometal_keras.engines import guard
b = ModelBuilder([8, 4]).add_dense(8).add_relu().add_dense(3)
t = Trainer(b, TrainerConfig(batch_size=8, precision="float32", loop="fused", seed=1))
rng = np.random.default_rng(0)
data = t.arrange(rng.random((64, 4), dtype=np.float32), rng.integers(0, 3, 64))
t.train_epoch(data)
variables = t.model.variables + t.optimizer.variables
read = keras.ops.convert_to_numpy
before = [np.array(read(v)) for v in variables]
target = (keras.ops, "convert_to_numpy") if sys.argv[1] == "jax" else (guard, "all_finite")
interrupted = False
with mock.patch.object(*target, side_effect=KeyboardInterrupt):
    try:
        t.train_epoch(data)
    except KeyboardInterrupt:
        interrupted = True
kept = all(np.array_equal(a, read(v)) for a, v in zip(before, variables))
losses = t.train_epoch(data)[:, 0]
print("RESULT " + json.dumps([interrupted, kept, bool(np.isfinite(losses).all())]))
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_ctrl_c_before_the_verdict_leaves_the_state_before_the_call(backend):
    require_backend(backend)
    interrupted, kept, trains_on = run_script(SCRIPT, backend, backend=backend)
    assert interrupted
    assert kept  # fails when the call's unchecked updates stay in the model
    assert trains_on
