"""Checkpoints across device counts: train on two devices, resume or serve on one, and back.

Each backend runs one subprocess with two logical CPU devices (the device count
is fixed before the backend starts: TensorFlow's logical devices, JAX's XLA_FLAGS) that
plays every row and reports what it saw; each row is then a subtest of that backend's test:

- 2 -> 2: a run saved after one epoch on two devices and loaded there resumes bit for bit
  like an unbroken two-device run (the oracle);
- 2 -> 1 and 1 -> 2: the loaded trainer holds exactly the saved weights, optimizer state and
  loss scale, and its next losses agree with the unbroken run of the writing device count
  within `RTOL` (docs/guarantees.md, section 6, "Across device counts");
- 2 -> this test's own one-device process (TensorFlow): loaded as saved (data_parallel over
  the devices here), it holds exactly the saved state and continues the unbroken run;
- export: the SavedModel (and, on TensorFlow, the ONNX file) of a two-device model predicts
  what the trainer predicts when loaded on one device;
- failures: one sentence naming the path and the mismatch.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import tempfile
import textwrap
from typing import ClassVar

import numpy as np
import tensorflow as tf
from helpers import (
    TWO_DEVICES,
    TWO_JAX_DEVICES,
    float32_config,
    require_backend,
    run_script,
    tiny_builder,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras import Trainer
from gometal_keras.engines import Placement, current

#: How far the next losses of a run resumed on another device count may stray from the
#: unbroken run (relative): the gradient all-reduce sums in another order than one device.
RTOL = {"float32": 1e-5, "mixed_float16": 1e-3}


def swap_model(variables_from: str, model_from: str, path: str) -> None:
    """Write `path`: `variables_from` with `model_from`'s model, checksums made to agree."""
    import hashlib
    import json
    import zipfile

    with zipfile.ZipFile(variables_from) as a, zipfile.ZipFile(model_from) as b:
        blobs = {n: a.read(n) for n in a.namelist()}
        blobs["model.keras"] = b.read("model.keras")
    meta = json.loads(blobs.pop("trainer.json"))
    meta["sha256"] = {n: hashlib.sha256(v).hexdigest() for n, v in blobs.items()}
    with zipfile.ZipFile(path, "w") as out:
        for name, blob in blobs.items():
            out.writestr(name, blob)
        out.writestr("trainer.json", json.dumps(meta))


SCRIPT = (
    TWO_DEVICES
    + inspect.getsource(swap_model)
    + textwrap.dedent(
        """
    import json, os, sys, tempfile
    import keras
    import numpy as np
    from gometal_keras import ModelBuilder, Trainer, TrainerConfig

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = np.argmax(x[:, :4], axis=1).astype("int32")
    folder = tempfile.mkdtemp()

    def trainer(precision, dist, batch=16):
        builder = ModelBuilder([batch, 8]).add_dense(16).add_relu().add_dense(4)
        config = TrainerConfig(batch_size=batch, precision=precision, seed=3,
                               learning_rate=0.01, loop="fused", distribution=dist,
                               jit_compile=backend == "jax")
        return Trainer(builder, config)

    def data(precision):
        if precision == "float32":
            return x, y
        # mixed_float16: the first batch overflows on every replica, so each epoch halves
        # the loss scale (the update is skipped) whatever the device count.
        return np.concatenate([x[:16] * 1e4, x[16:]]), y

    def state(t):
        s = t.get_state()
        return [*s.model_variables, *s.optimizer_variables]

    def scale(t):
        held = getattr(t.optimizer, "dynamic_scale", None)
        return None if held is None else float(keras.ops.convert_to_numpy(held))

    def rows(precision):
        # Each saver goes on training after its save: that is the unbroken run (the oracle).
        out, saved, (x, y) = {}, {}, data(precision)
        for name, dist in (("2", "data_parallel"), ("1", None)):
            saver = trainer(precision, dist)
            head = saver.fit(x, y, epochs=1).losses
            saver.save(os.path.join(folder, precision + name))
            saved[name] = state(saver) + [scale(saver)]
            if name == "2":  # for a load in another process, with one device (the test's)
                np.savez(os.path.join(folder, precision + "2.npz"), *saved[name][:-1], x=x, y=y)
            out["unbroken" + name] = head + saver.fit(x, y, epochs=2).losses
        for row, (src, how) in {"2->2": ("2", {}), "2->1": ("2", {"distribution": None}),
                                "1->2": ("1", {"distribution": "data_parallel"})}.items():
            loaded = Trainer.load(os.path.join(folder, precision + src), **how)
            same = [np.array_equal(a, b) for a, b in zip(state(loaded), saved[src][:-1],
                                                          strict=True)]
            out[row] = {"replicas": loaded.plan.replicas, "same_state": all(same),
                        "scale": [saved[src][-1], scale(loaded)], "epoch": loaded.epoch,
                        "tail": loaded.fit(x, y, epochs=2).losses}
        return out

    def exports():
        import tensorflow as tf
        path = os.path.join(folder, sys.argv[1] + "2")
        two, one = Trainer.load(path), Trainer.load(path, distribution=None)
        expected = one.predict(x)
        two.export(os.path.join(folder, "served"))
        served = tf.saved_model.load(os.path.join(folder, "served"))
        out = {"replicas": [two.plan.replicas, one.plan.replicas],
               "saved_model": float(np.abs(served.serve(x).numpy() - expected).max())}
        if backend == "tensorflow":
            import onnxruntime
            two.export(os.path.join(folder, "m.onnx"), format="onnx")
            session = onnxruntime.InferenceSession(os.path.join(folder, "m.onnx"))
            got = session.run(None, {session.get_inputs()[0].name: x})[0]
            out["onnx"] = float(np.abs(got - expected).max())
        return out

    def failure(make):
        try:
            make()
        except ValueError as err:
            return str(err)
        return None

    def failures():
        odd = trainer("float32", None, batch=15)
        odd.save(os.path.join(folder, "odd"))
        other = ModelBuilder([16, 8]).add_dense(5).add_relu().add_dense(4)
        Trainer(other, TrainerConfig(16, precision=sys.argv[1], jit_compile=False)).save(
            os.path.join(folder, "other"))
        swap_model(os.path.join(folder, sys.argv[1] + "2"), os.path.join(folder, "other"),
                   os.path.join(folder, "mixed"))  # other's model, a two-device run's state
        return {
            "mixed": failure(lambda: Trainer.load(os.path.join(folder, "mixed"))),
            "odd": failure(lambda: Trainer.load(os.path.join(folder, "odd"),
                                                distribution="data_parallel")),
            "three": failure(lambda: Trainer.load(os.path.join(folder, sys.argv[1] + "2"),
                                                  devices=3)),
        }

    result = {p: rows(p) for p in sys.argv[1:]}
    result["export"] = exports()
    result["failures"] = failures()
    result["folder"] = folder
    print("RESULT " + json.dumps(result))
    """
    )
)


class DeviceCountRows:
    """The rows, for one backend's subprocess (a mixin: `tf.test.TestCase` runs them).

    One test method per backend, each row a subtest: under ``pytest -n`` the rows of one
    class could otherwise land on two workers and run the subprocess twice.
    """

    backend = "tensorflow"
    env: ClassVar[dict[str, str]] = {}
    precisions: tuple[str, ...] = tuple(RTOL)

    def test_rows(self):
        if self.backend != "tensorflow":
            require_backend(self.backend)
        result = run_script(SCRIPT, *self.precisions, backend=self.backend, env=self.env)
        self.addCleanup(shutil.rmtree, result["folder"], True)
        for precision in self.precisions:
            rows, rtol = result[precision], RTOL[precision]
            with self.subTest("2 -> 2 resumes bit for bit", precision=precision):
                self.assert_restored(rows["2->2"], 2, precision)
                self.assertEqual(rows["2->2"]["tail"], rows["unbroken2"][1:])
            for row, replicas, unbroken in (("2->1", 1, "unbroken2"), ("1->2", 2, "unbroken1")):
                with self.subTest(f"{row} continues the unbroken run", precision=precision):
                    self.assert_restored(rows[row], replicas, precision)
                    np.testing.assert_allclose(rows[row]["tail"], rows[unbroken][1:], rtol=rtol)
        if self.backend == "tensorflow":  # this process has one device
            with self.subTest("2 -> a one-device process, as saved"):
                for precision in self.precisions:
                    self.assert_loads_here(result, precision)
        with self.subTest("export of a two-device model predicts as one device"):
            out = result["export"]
            self.assertEqual(out["replicas"], [2, 1])
            self.assertLessEqual(out["saved_model"], 1e-6)
            if self.backend == "tensorflow":
                self.assertLessEqual(out["onnx"], 1e-5)
        with self.subTest("failures name the path and the mismatch"):
            out = result["failures"]
            assert_one_sentence(self, out["odd"], "odd", r"batch_size 15 does not split over 2")
            assert_one_sentence(self, out["mixed"], "mixed", r"values that do not match the")
            name = self.precisions[0] + "2"
            assert_one_sentence(self, out["three"], name, r"3 devices asked for, but only 2")

    def assert_loads_here(self, result: dict, precision: str) -> None:
        """Load a two-device checkpoint as saved (data_parallel) in this one-device process."""
        path = os.path.join(result["folder"], precision + "2")
        with np.load(path + ".npz") as saved:
            x, y = saved["x"], saved["y"]
            want = [saved[f"arr_{i}"] for i in range(len(saved.files) - 2)]
        loaded = Trainer.load(path)
        self.assertEqual((loaded.plan.replicas, loaded.epoch), (1, 1))
        got = loaded.get_state()
        for a, b in zip([*got.model_variables, *got.optimizer_variables], want, strict=True):
            np.testing.assert_array_equal(a, b)
        tail = loaded.fit(x, y, epochs=2).losses
        unbroken = result[precision]["unbroken2"][1:]
        np.testing.assert_allclose(tail, unbroken, rtol=RTOL[precision])

    def assert_restored(self, row: dict, replicas: int, precision: str) -> None:
        self.assertEqual(row["replicas"], replicas)
        self.assertTrue(row["same_state"], "weights or optimizer state differ after load")
        self.assertEqual(row["epoch"], 1)
        saved, loaded = row["scale"]
        self.assertEqual(loaded, saved)
        if precision == "mixed_float16":  # the overflowing batch halved it in epoch 1
            self.assertEqual(saved, 32768.0)


def assert_one_sentence(case: tf.test.TestCase, message: str | None, name: str, what: str):
    """`message` is one short line naming the checkpoint `name` and matching `what`."""
    case.assertIsNotNone(message, f"loading {name} did not fail")
    case.assertRegex(message, rf"^Checkpoint '[^']*{re.escape(name)}'")
    case.assertRegex(message, what)
    case.assertNotIn("\n", message)
    case.assertLess(len(message), 300)
    case.assertNotRegex(message, r"array\(|tf\.Tensor|dtype=")


class TensorFlowDeviceCountTest(DeviceCountRows, tf.test.TestCase):
    backend = "tensorflow"


class JaxDeviceCountTest(DeviceCountRows, tf.test.TestCase):
    backend = "jax"
    precisions = ("mixed_float16",)  # float32 runs the same JAX program; TF tests it
    env: ClassVar[dict[str, str]] = TWO_JAX_DEVICES


class OneProcessFailureTest(tf.test.TestCase):
    """In this (one-device) process: rejected loads are one sentence, never a tensor dump."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = tempfile.mkdtemp(prefix="gmk-devices-")
        cls.path = os.path.join(cls.dir, "run.gmk")
        Trainer(tiny_builder(batch=12), float32_config(batch_size=12)).save(cls.path)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)
        super().tearDownClass()

    @settings(max_examples=12, deadline=None)
    @given(replicas=st.integers(2, 64).filter(lambda n: 12 % n))
    def test_a_batch_the_replicas_cannot_split(self, replicas):
        class Replicas(Placement):
            pass

        placement = Replicas(current())
        placement.replicas = replicas
        try:
            Trainer.load(self.path, distribution=placement)
        except ValueError as err:
            assert_one_sentence(self, str(err), "run.gmk", rf"over {replicas} replicas")
        else:
            self.fail(f"loading over {replicas} replicas did not fail")
