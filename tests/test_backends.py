"""The Trainer on Keras' JAX and PyTorch backends, each run in a subprocess.

Keras picks its backend once per process, so each backend gets a fresh interpreter with
``KERAS_BACKEND`` set. A backend whose package is not installed is skipped.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

SCRIPT = textwrap.dedent(
    """
    import json, math, sys
    from unittest import mock

    import keras
    import numpy as np

    from gometal_keras import ModelBuilder, Trainer, TrainerConfig, demo_dataset
    from gometal_keras import engines
    from gometal_keras.core import device as prec
    from gometal_keras.planning import candidates as cands
    from gometal_keras.planning import trials

    trials.MAX_ROUNDS = trials.MIN_ROUNDS  # the fewest timed rounds: trials run, briefly
    precisions = sys.argv[1].split(",")
    out = {"backend": keras.backend.backend(), "runs": {}}
    x, y = demo_dataset(samples=16 * 5 + 3, features=20, seed=2)

    def builder(extra=False):
        b = ModelBuilder([16, 20]).add_dense(32, name="hidden")
        if extra:
            b.add_batchnorm(name="bn")
        b.add_relu(name="act")
        if extra:
            b.add_dropout(0.25, name="drop")
        return b.add_dense(10, name="head")

    def config(p, **kw):
        return TrainerConfig(batch_size=16, learning_rate=0.02, precision=p, seed=3, **kw)

    for p in precisions:
        t = Trainer(builder(), config(p, loop="fused"))  # trials are run below, under auto
        run = t.fit(x, y, epochs=3)
        batch = [t.train_batch(x[:16], y[:16]).loss for _ in range(3)]
        pred = t.predict(x[:7])
        out["runs"][p] = {
            "precision": t.precision,
            "losses": run.losses,
            "batch": batch,
            "loop": run.loop,
            "pred_shape": list(pred.shape),
            "pred_dtype": str(pred.dtype),
            "pred_finite": bool(np.isfinite(pred).all()),
            "hidden": t.model.get_layer("hidden").compute_dtype,
            "head": t.model.get_layer("head").compute_dtype,
            "variables": sorted({str(v.dtype) for v in t.model.weights}),
            "optimizer": type(t.optimizer).__name__,
            "evaluate": t.evaluate(x, y),
            "global": keras.config.dtype_policy().name,
        }

    loops = {}
    for loop in ("fused", "step"):
        t = Trainer(builder(extra=True), config("float32", loop=loop))
        run = t.fit(x, y, epochs=3)
        loops[loop] = {"losses": run.losses, "loop": run.loop,
                       "weights": [w.tolist() for w in t.model.get_weights()]}
    out["loops"] = loops

    # auto with two candidates, so that its trials (not only fit) run on this backend.
    import dataclasses
    engine = engines.current()
    dev = dataclasses.replace(engine.describe_device(), bf16_fast=True)
    with mock.patch.object(type(engine), "describe_device", return_value=dev):
        t = Trainer(builder(), config("auto"))
        out["auto"] = {"timed": sorted({c.plan.policy for c in t.decision.candidates}),
                       "losses": t.fit(x, y, epochs=2).losses}
    out["device"] = engine.describe_device().describe()
    out["fake_cuda"] = fake_cuda()
    print("RESULT " + json.dumps(out))
    """
)

FAKE_CUDA = {
    "jax": textwrap.dedent(
        """
        from gometal_keras.engines.jax import JaxEngine
        from gometal_keras.core import device as prec
        from gometal_keras.planning import candidates as cands

        class Dev:
            platform = "gpu"
            device_kind = "Fake GPU"
            def __init__(self, cc):
                self.compute_capability = cc

        def fake_cuda():
            out = {}
            for cc in ("7.0", "8.0", "9.0"):
                engine = JaxEngine.__new__(JaxEngine)
                engine._device = Dev(cc)
                out[cc] = sorted(cands.candidates(engine.describe_device()))
            return out
        """
    ),
    "torch": textwrap.dedent(
        """
        import sys
        from unittest import mock
        import torch
        from gometal_keras.engines.torch import TorchEngine
        from gometal_keras.core import device as prec
        from gometal_keras.planning import candidates as cands

        # As on a GPU (CUDA or Apple's MPS): a device tensor reaches numpy only through
        # keras.ops.convert_to_numpy, which copies it to the host first.
        _to_array = torch.Tensor.__array__

        def _device_array(self, *args, **kwargs):
            frame = sys._getframe(1)
            while frame is not None:
                if frame.f_code.co_name == "convert_to_numpy":
                    return _to_array(self, *args, **kwargs)
                frame = frame.f_back
            raise TypeError("can't convert cuda:0 device type tensor to numpy (simulated)")

        torch.Tensor.__array__ = _device_array

        def fake_cuda():
            out = {}
            for cc in ((7, 0), (8, 0), (9, 0)):
                with mock.patch.object(torch.cuda, "is_available", return_value=True), \\
                     mock.patch.object(torch.cuda, "get_device_capability", return_value=cc), \\
                     mock.patch.object(torch.cuda, "get_device_name", return_value="Fake GPU"):
                    info = TorchEngine().describe_device()
                out["%d.%d" % cc] = sorted(cands.candidates(info))
            return out
        """
    ),
}


PRECISIONS = {"jax": "float32,mixed_bfloat16,mixed_float16", "torch": "float32,mixed_bfloat16"}


def _installed(backend: str) -> bool:
    return importlib.util.find_spec(backend) is not None


@functools.cache
def _started() -> dict[str, subprocess.Popen]:
    """Start every installed backend's subprocess at once: they overlap their start-up."""
    procs = {}
    for backend in PRECISIONS:
        if not _installed(backend):
            continue
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        code = FAKE_CUDA[backend] + SCRIPT
        procs[backend] = subprocess.Popen(
            [sys.executable, "-c", code, PRECISIONS[backend]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    atexit.register(_stop, procs)
    return procs


def _stop(procs: dict[str, subprocess.Popen]) -> None:
    for proc in procs.values():  # only the subprocesses started here
        if proc.poll() is None:
            proc.kill()


@functools.cache
def _result(backend: str) -> dict:
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed")
    proc = _started()[backend]
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise AssertionError(
            f"{backend} subprocess failed (rc {proc.returncode}):\n"
            f"{stdout[-3000:]}\n{stderr[-6000:]}"
        )
    return json.loads(lines[-1][len("RESULT ") :])


class BackendTest(tf.test.TestCase):
    backend = ""

    def result(self) -> dict:
        return _result(self.backend)

    def check_training(self):
        result = self.result()
        self.assertEqual(result["backend"], self.backend)
        self.assertEqual(set(result["runs"]), set(PRECISIONS[self.backend].split(",")))
        for name, run in result["runs"].items():
            with self.subTest(precision=name):
                self.assertEqual(run["precision"], name)
                losses = run["losses"]
                self.assertLen(losses, 3)
                self.assertTrue(all(math.isfinite(v) for v in losses), losses)
                self.assertLess(losses[-1], losses[0])
                self.assertLess(losses[-1], 0.9 * losses[0])
                batch = run["batch"]
                self.assertTrue(all(math.isfinite(v) for v in batch), batch)
                self.assertLess(batch[-1], batch[0])
                self.assertEqual(run["pred_shape"], [7, 10])
                self.assertEqual(run["pred_dtype"], "float32")
                self.assertTrue(run["pred_finite"])
                self.assertTrue(math.isfinite(run["evaluate"]) and run["evaluate"] > 0)
                self.assertEqual(run["global"], "float32")
                self.assertEqual(run["variables"], ["float32"])
                self.assertEqual(run["head"], "float32")
                compute = "float32" if name == "float32" else name.split("_")[1]
                self.assertEqual(run["hidden"], compute)
                scaled = name == "mixed_float16"
                self.assertEqual(run["optimizer"] == "LossScaleOptimizer", scaled)

    def check_loops(self, rtol: float):
        loops = self.result()["loops"]
        fused, step = loops["fused"], loops["step"]
        self.assertIn("whole epoch per call", fused["loop"])
        self.assertIn("one call per step", step["loop"])
        self.assertAllClose(fused["losses"], step["losses"], rtol=rtol, atol=0)
        self.assertLess(fused["losses"][-1], fused["losses"][0])
        for a, b in zip(fused["weights"], step["weights"], strict=True):
            self.assertAllClose(a, b, rtol=1e-4, atol=1e-5)

    def check_auto_trials(self):
        auto = self.result()["auto"]
        self.assertEqual(auto["timed"], ["float32", "mixed_bfloat16"])
        self.assertTrue(all(math.isfinite(v) for v in auto["losses"]), auto)

    def check_fake_cuda(self):
        found = self.result()["fake_cuda"]
        self.assertEqual(found["7.0"], ["float32", "mixed_float16"])
        for cc in ("8.0", "9.0"):
            self.assertEqual(found[cc], ["float32", "mixed_bfloat16", "mixed_float16"])


class JaxTest(BackendTest):
    backend = "jax"

    def test_trainer_trains(self):
        self.check_training()

    def test_fused_matches_step(self):
        self.check_loops(rtol=1e-5)

    def test_cuda_capabilities(self):
        self.check_fake_cuda()

    def test_auto_trials_run(self):
        self.check_auto_trials()


class TorchTest(BackendTest):
    backend = "torch"

    def test_trainer_trains(self):
        self.check_training()

    def test_fused_matches_step(self):
        self.check_loops(rtol=1e-5)

    def test_cuda_capabilities(self):
        self.check_fake_cuda()

    def test_auto_trials_run_with_device_tensors(self):
        self.check_auto_trials()
