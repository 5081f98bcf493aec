"""Data parallelism on this CPU: two logical devices give one device's loss curve.

Each case runs in a subprocess, because the device count must be set before the backend
starts (TensorFlow: logical CPU devices; JAX: XLA_FLAGS).
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    backend = os.environ["KERAS_BACKEND"]
    if backend == "tensorflow":
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from gometal_keras import ModelBuilder, Trainer, TrainerConfig, demo_dataset
    x, y = demo_dataset(256, 32, seed=0)
    out = {}
    for dist in (None, "data_parallel"):
        for precision in ("float32", sys.argv[1]):
            builder = ModelBuilder([64, 32]).add_dense(64).add_relu().add_dense(10)
            jit = False if backend == "tensorflow" else None
            cfg = TrainerConfig(batch_size=64, precision=precision, seed=5,
                                distribution=dist, jit_compile=jit)
            t = Trainer(builder, cfg)
            run = t.fit(x, y, epochs=3)
            out[f"{dist}/{precision}"] = {"losses": run.losses, "replicas": t.placement.replicas,
                                          "loop": run.loop}
    print("RESULT" + json.dumps(out))
    """
)


def _run(backend: str, mixed: str, env_extra: dict[str, str]) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", **env_extra)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, mixed], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(v for v in proc.stdout.splitlines() if v.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


class DistributedTest(tf.test.TestCase):
    def _check(self, out: dict, mixed: str, mixed_rtol: float) -> None:
        for precision, rtol in (("float32", 1e-5), (mixed, mixed_rtol)):
            one, two = out[f"None/{precision}"], out[f"data_parallel/{precision}"]
            self.assertEqual(one["replicas"], 1)
            self.assertEqual(two["replicas"], 2)
            self.assertIn("2 replicas" if "Mirrored" in two["loop"] else "2 devices", two["loop"])
            np.testing.assert_allclose(two["losses"], one["losses"], rtol=rtol)
            self.assertLess(two["losses"][-1], two["losses"][0])

    def test_tensorflow_mirrored_matches_one_device(self):
        out = _run("tensorflow", "mixed_bfloat16", {})
        self._check(out, "mixed_bfloat16", 5e-3)

    def test_jax_data_parallel_matches_one_device(self):
        if importlib.util.find_spec("jax") is None:
            pytest.skip("JAX is not installed")
        flags = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
        out = _run("jax", "mixed_float16", flags)
        self._check(out, "mixed_float16", 2e-2)

    def test_batch_must_split_over_replicas(self):
        from gometal_keras import ModelBuilder, Trainer, TrainerConfig
        from gometal_keras.engines import Placement, current

        class TwoReplicas(Placement):
            replicas = 2

        with self.assertRaisesRegex(ValueError, "does not split over 2 replicas"):
            TwoReplicas(current()).check_batch(63)
        with self.assertRaisesRegex(ValueError, "devices asked for"):
            Trainer(
                ModelBuilder([8, 4]).add_dense(2),
                TrainerConfig(batch_size=8, distribution="data_parallel", devices=64),
            )

    def test_config_validates_distribution(self):
        from gometal_keras import TrainerConfig

        with self.assertRaisesRegex(ValueError, "data_parallel, multi_worker"):
            TrainerConfig(distribution="mirrored")
        with self.assertRaises(ValueError):
            TrainerConfig(devices=0)

    def test_demo_devices_flag_asks_for_data_parallel(self):
        import argparse

        from gometal_keras.demo import add_arguments, settings_from

        parser = argparse.ArgumentParser()
        add_arguments(parser)
        settings = settings_from(parser.parse_args(["--devices", "2"]))
        config = settings.trainer_config("float32")
        self.assertEqual((config.distribution, config.devices), ("data_parallel", 2))
        self.assertEqual(settings.table()["Devices"], "2 (data parallel)")
        plain = settings_from(parser.parse_args([])).trainer_config("float32")
        self.assertIsNone(plain.distribution)
        with self.assertRaisesRegex(ValueError, "--devices must be a positive integer"):
            settings_from(parser.parse_args(["--devices", "0"]))
