"""The JAX engine's cond-free loss-scale step against Keras' own LossScaleOptimizer.

The oracle is `keras.optimizers.LossScaleOptimizer.stateless_apply` itself: over random
cases (finite gradients, an inf or a NaN in one, the counter just before, at and after the
growth step, scales from tiny to huge, SGD with momentum and Adam inner optimizers) both
are jitted and must agree bit for bit on every output: the trainable values and every
optimizer variable (the counter, the scale, the inner optimizer's state).
"""

from __future__ import annotations

from helpers import require_backend, run_script

SCRIPT = """
import json
import jax
import keras
import numpy as np
from gometal_keras.engines.loss_scale import scaled_apply

rng = np.random.default_rng(0)
mismatches, cases = [], 0
for inner in (lambda: keras.optimizers.Adam(1e-3), lambda: keras.optimizers.SGD(0.1, 0.9)):
    shapes = [(5, 3), (3,), (3, 2)]
    variables = [keras.Variable(rng.normal(size=s).astype("float32")) for s in shapes]
    opt = keras.optimizers.LossScaleOptimizer(inner(), dynamic_growth_steps=4)
    opt.build(variables)
    theirs = jax.jit(opt.stateless_apply)
    ours = jax.jit(lambda o, g, t: scaled_apply(opt, o, g, t))
    for case in range(40):
        cases += 1
        values = [v.value for v in opt.variables]
        i_count = [i for i, v in enumerate(opt.variables) if v is opt.step_counter][0]
        i_scale = [i for i, v in enumerate(opt.variables) if v is opt.dynamic_scale][0]
        values[i_count] = np.asarray(case % 6, values[i_count].dtype)  # 3 is the growth step
        values[i_scale] = np.float32(2.0 ** rng.integers(-20, 40))
        grads = [rng.normal(size=s).astype("float32") * 10.0 ** rng.integers(-3, 4)
                 for s in shapes]
        if case % 5 == 1:
            grads[rng.integers(3)].flat[0] = np.inf
        if case % 5 == 2:
            grads[rng.integers(3)].flat[-1] = np.nan
        trainable = [rng.normal(size=s).astype("float32") for s in shapes]
        a = jax.tree.map(np.asarray, theirs(values, grads, trainable))
        b = jax.tree.map(np.asarray, ours(values, grads, trainable))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            if x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=True):
                mismatches.append(case)
                break
print("RESULT " + json.dumps({"cases": cases, "mismatches": mismatches}))
"""


def test_the_cond_free_step_is_keras_loss_scale_optimizer_bit_for_bit():
    require_backend("jax")
    result = run_script(SCRIPT, backend="jax")
    assert result == {"cases": 80, "mismatches": []}
