"""Tests of `gometal_keras.bench`: work counts, the roofline floor, and the CLI end to end."""

import json
import os
import subprocess
import sys
import tempfile

import tensorflow as tf

from gometal_keras.bench import configs as cfgs
from gometal_keras.bench import roofline
from gometal_keras.builder import ModelBuilder


class FlopsTest(tf.test.TestCase):
    def test_mlp_flops_by_hand(self):
        b = ModelBuilder([8, 6]).add_dense(4).add_relu().add_dropout(0.5).add_dense(3)
        forward = 2 * (6 * 4) + 2 * (4 * 3)  # 2 x MACs of each dense layer
        self.assertEqual(cfgs.forward_flops_per_sample(b), forward)
        self.assertEqual(cfgs.train_flops_per_step(b), 3 * 8 * forward)
        self.assertEqual(cfgs.train_flops_per_step(b, batch=2), 3 * 2 * forward)

    def test_cnn_flops_by_hand(self):
        b = (
            ModelBuilder([2, 3, 8, 8])
            .add_conv2d(4, 3, padding=1)
            .add_relu()
            .add_maxpool2d(2)  # 8x8 out, then 4x4
            .add_conv2d(5, 3)  # valid: 2x2 out
            .add_dense(7)
        )
        conv1 = 2 * (3 * 3 * 3) * 4 * (8 * 8)
        conv2 = 2 * (4 * 3 * 3) * 5 * (2 * 2)
        dense = 2 * (5 * 2 * 2) * 7
        self.assertEqual(cfgs.forward_flops_per_sample(b), conv1 + conv2 + dense)
        self.assertEqual(cfgs.train_flops_per_step(b), 3 * 2 * (conv1 + conv2 + dense))

    def test_seed_config_matches_go_metal(self):
        seed = cfgs.configs()["seed"]
        b = seed.builder()
        self.assertEqual((seed.batch, seed.samples // seed.batch), (64, 15))
        self.assertEqual([s.kind for s in b.layers].count("dropout"), 2)
        self.assertEqual(b.total_parameters, 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10)
        wide = cfgs.configs()["wide"]
        self.assertEqual((wide.batch, wide.samples), (1024, 65536))
        cnn = cfgs.configs()["cnn"].builder()
        self.assertEqual(cnn.input_shape, (3, 32, 32))
        self.assertEqual([s.kind for s in cnn.layers].count("conv2d"), 3)

    def test_bytes_estimate(self):
        b = ModelBuilder([8, 6]).add_dense(4).add_dense(3)
        params = 6 * 4 + 4 + 4 * 3 + 3
        acts, inputs = 8 * (4 + 3), 8 * 6
        self.assertEqual(cfgs.bytes_per_step(b, "float32"), 40 * params + 4 * acts * 4 + inputs * 4)
        self.assertEqual(
            cfgs.bytes_per_step(b, "mixed_bfloat16"), 40 * params + 4 * acts * 2 + inputs * 2
        )


class FloorTest(tf.test.TestCase):
    def test_floor_is_the_larger_term(self):
        # 1e12 FLOP at 1e14 FLOP/s = 10 ms; 1e9 bytes at 1e12 B/s = 1 ms.
        self.assertAllClose(roofline.floor_seconds(1e12, 1e9, 1e14, 1e12), 0.01)
        # 1e9 bytes at 1e10 B/s = 100 ms dominates.
        self.assertAllClose(roofline.floor_seconds(1e12, 1e9, 1e14, 1e10), 0.1)

    def test_rates_to_dict(self):
        d = roofline.Rates({"float32": 1.0}, 2.0, 3, 4).to_dict()
        self.assertEqual(
            d, {"matmul_flops": {"float32": 1.0}, "bandwidth": 2.0, "matmul_n": 3, "copy_bytes": 4}
        )


class CliTest(tf.test.TestCase):
    def test_quick_run_writes_json(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bench.json")
            cmd = [
                sys.executable,
                "-m",
                "gometal_keras.bench",
                "--quick",
                "--configs",
                "seed",
                "--precisions",
                "float32",
                "--runners",
                "gometal,keras",
                "--steps",
                "2",
                "--repeats",
                "1",
                "--json",
                path,
            ]
            env = dict(os.environ, KERAS_BACKEND="tensorflow")
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        for key in (
            "schema",
            "date",
            "command",
            "wall_seconds",
            "backend",
            "device",
            "versions",
            "settings",
            "rates",
            "configs",
            "results",
            "skipped",
        ):
            self.assertIn(key, data)
        self.assertEqual(data["schema"], "gometal_keras.bench/1")
        self.assertEqual(data["backend"], "tensorflow")
        self.assertIn("keras", data["versions"])
        self.assertIn("float32", data["rates"]["matmul_flops"])
        self.assertEqual({r["runner"] for r in data["results"]}, {"gometal", "keras"})
        for r in data["results"]:
            self.assertIsNone(r["error"])
            self.assertGreater(r["seconds_per_step"], 0)
            self.assertGreater(r["floor_seconds"], 0)
            self.assertAllClose(r["ratio_to_floor"], r["seconds_per_step"] / r["floor_seconds"])
            self.assertAllClose(r["tflops"], r["flops_per_step"] / r["seconds_per_step"] / 1e12)
            self.assertEqual(r["loss_after_steps"], 2 * 2)  # (1 warm-up + 1 repeat) x 2 steps
            self.assertTrue(0 < r["loss"] < 10)
        self.assertIn("ms/step", proc.stdout)


if __name__ == "__main__":
    tf.test.main()
