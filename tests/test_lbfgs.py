"""L-BFGS (``TrainerConfig(optimizer="lbfgs")``) against SciPy's L-BFGS-B on convex problems.

The trainer runs on JAX in a subprocess (Keras picks its backend once per process); this
process, on TensorFlow, checks the refusal.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.optimize
from helpers import float32_config, require_backend, run_script

SCRIPT = """
import json, os, sys, tempfile
import numpy as np
from gometal_keras import ModelBuilder, Trainer, TrainerConfig

cases = json.loads(sys.argv[1])
out = []
for case in cases:
    x = np.asarray(case["x"], np.float32)
    y = np.asarray(case["y"], np.float32)
    config = TrainerConfig(batch_size=len(x), optimizer="lbfgs", learning_rate=1.0,
                           precision=case["precision"], loss="mse", problem_type="regression",
                           seed=0, jit_compile=True, decision_cache="never")
    t = Trainer(ModelBuilder([len(x), x.shape[1]]).add_dense(y.shape[1]), config)
    run = t.fit(x, y, epochs=case["epochs"])
    opt = getattr(t.optimizer, "inner_optimizer", t.optimizer)
    out.append({"losses": [float(v) for v in run.losses], "final": float(t.evaluate(x, y)),
                "iterations": int(opt.iterations),
                "state": sorted({str(v.dtype) for v in opt.variables if "lbfgs" in v.path})})
    if case["precision"] != "float32":
        continue
    # a checkpoint resumes the L-BFGS memory: two more epochs, loaded or not, agree exactly
    path = os.path.join(tempfile.mkdtemp(), "run.gmk")
    t.save(path)
    back = Trainer.load(path)
    more = [t.fit(x, y, epochs=2).losses, back.fit(x, y, epochs=2).losses]
    out[-1]["resumed"] = [[float(v) for v in losses] for losses in more]
print("RESULT " + json.dumps(out))
"""


def _least_squares(seed: int, samples: int, features: int, outputs: int):
    """A least-squares problem: sklearn's diabetes features, or drawn ones, standardized."""
    rng = np.random.default_rng(seed)
    if seed == 0:
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True)
        x, y = x[:, :features], np.stack([y] * outputs, 1)[:samples]
        x = x[:samples]
    else:
        x = rng.normal(size=(samples, features)) @ rng.normal(size=(features, features))
        y = x @ rng.normal(size=(features, outputs)) + rng.normal(size=(samples, outputs))
    x = (x - x.mean(0)) / x.std(0)
    y = (y - y.mean(0)) / y.std(0)
    return x.astype(np.float32), y.astype(np.float32)


def _scipy_minimum(x, y) -> float:
    """The oracle: SciPy's L-BFGS-B on the same mean squared error (Keras' mse)."""
    d, k = x.shape[1], y.shape[1]
    x64, y64 = x.astype(np.float64), y.astype(np.float64)

    def loss_and_grad(theta):
        w, b = theta[: d * k].reshape(d, k), theta[d * k :]
        r = x64 @ w + b - y64
        g = 2 * r / r.size
        return float((r**2).mean()), np.concatenate([(x64.T @ g).ravel(), g.sum(0)])

    return scipy.optimize.minimize(
        loss_and_grad, np.zeros(d * k + k), jac=True, method="L-BFGS-B"
    ).fun


#: (seed, samples, features, outputs, precision): sklearn's diabetes (seed 0) and drawn,
#: ill-conditioned ones; one JAX subprocess runs both.
CASES = [(0, 120, 8, 1, "float32"), (7, 50, 6, 3, "mixed_float16")]


def test_lbfgs_reaches_scipys_least_squares_minimum():
    require_backend("jax")
    problems = [_least_squares(*case[:4]) for case in CASES]
    sent = [
        {"x": x.tolist(), "y": y.tolist(), "precision": case[4], "epochs": 30}
        for (x, y), case in zip(problems, CASES, strict=True)
    ]
    results = run_script(SCRIPT, json.dumps(sent), backend="jax")
    for (x, y), result in zip(problems, results, strict=True):
        assert result["iterations"] == 30  # one joint step per full batch
        assert result["state"] == ["float32", "int32"]  # float32 under any policy
        assert result["final"] == pytest.approx(_scipy_minimum(x, y), rel=1e-4)
    resumed, unbroken = results[0]["resumed"]  # the float32 case
    assert resumed == unbroken  # Trainer.save / load keeps the L-BFGS state


def test_lbfgs_is_refused_off_jax_in_one_sentence():
    import keras

    from gometal_keras import ModelBuilder, Trainer

    if keras.backend.backend() == "jax":
        pytest.skip("this process runs JAX")
    config = float32_config(optimizer="lbfgs")
    with pytest.raises(ValueError) as refused:
        Trainer(ModelBuilder([config.batch_size, 4]).add_dense(2), config)
    said = str(refused.value)
    assert said.startswith("L-BFGS is offered on the JAX backend only")
    assert f"Keras runs on {keras.backend.backend()};" in said and "\n" not in said
