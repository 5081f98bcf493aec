"""Data parallelism on this CPU: two logical devices give one device's loss curve.

Each case runs in a subprocess, because the device count must be set before the backend
starts (TensorFlow: logical CPU devices; JAX: XLA_FLAGS).
"""

import textwrap

import numpy as np
import tensorflow as tf
from helpers import TWO_DEVICES, TWO_JAX_DEVICES, require_backend, run_script

SCRIPT = TWO_DEVICES + textwrap.dedent(
    """
    import json, sys
    from gometal_keras import ModelBuilder, Trainer, TrainerConfig, demo_dataset
    x, y = demo_dataset(256, 32, seed=0)
    out = {}
    for dist in (None, "data_parallel"):
        for precision in ("float32", sys.argv[1]):
            builder = ModelBuilder([64, 32]).add_dense(64).add_relu().add_dense(10)
            jit = False if backend == "tensorflow" else None
            # loop="fused": under XLA on a CPU (JAX) "auto" would time per-step first.
            cfg = TrainerConfig(batch_size=64, precision=precision, seed=5,
                                distribution=dist, jit_compile=jit, loop="fused")
            t = Trainer(builder, cfg)
            run = t.fit(x, y, epochs=3)
            out[f"{dist}/{precision}"] = {"losses": run.losses, "replicas": run.plan.replicas,
                                          "placement": run.plan.placement, "loop": run.loop}
    print("RESULT " + json.dumps(out))
    """
)
#: How each backend's data-parallel placement describes itself (`RunPlan.placement`).
PLACEMENT = {
    "tensorflow": "MirroredStrategy over 2 replicas",
    "jax": "data parallel over 2 devices",
}


class DistributedTest(tf.test.TestCase):
    def _check(self, backend: str, mixed: str, mixed_rtol: float, **env: str) -> None:
        out = run_script(SCRIPT, mixed, backend=backend, env=env)
        for precision, rtol in (("float32", 1e-5), (mixed, mixed_rtol)):
            one, two = out[f"None/{precision}"], out[f"data_parallel/{precision}"]
            self.assertEqual((one["replicas"], one["placement"]), (1, "one device"))
            self.assertEqual(two["replicas"], 2)
            self.assertIn(PLACEMENT[backend], two["placement"])
            self.assertIn(two["placement"], two["loop"])  # the record says how it ran
            np.testing.assert_allclose(two["losses"], one["losses"], rtol=rtol)
            self.assertLess(two["losses"][-1], two["losses"][0])

    def test_tensorflow_mirrored_matches_one_device(self):
        self._check("tensorflow", "mixed_bfloat16", 5e-3)

    def test_jax_data_parallel_matches_one_device(self):
        require_backend("jax")
        self._check("jax", "mixed_float16", 2e-2, **TWO_JAX_DEVICES)

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
        import importlib

        from gometal_keras.cli.commands import add_demo_arguments, demo_settings

        program = importlib.import_module("gometal_keras.reporting.demo")
        make_config = program.make_config
        parser = argparse.ArgumentParser()
        add_demo_arguments(parser)
        settings = demo_settings(parser.parse_args(["--devices", "2"]))
        config = make_config(settings, "float32")
        self.assertEqual((config.distribution, config.devices), ("data_parallel", 2))
        self.assertEqual(settings.table()["Devices"], "2 (data parallel)")
        plain = make_config(demo_settings(parser.parse_args([])), "float32")
        self.assertIsNone(plain.distribution)
        with self.assertRaises(SystemExit):  # argparse names the flag and exits 2
            parser.parse_args(["--devices", "0"])
