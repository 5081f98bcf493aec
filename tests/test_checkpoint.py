"""Checkpoints: round trips, exact resumption, atomic writes, clear errors, export.

`Trainer.save` writes a zip atomically (a temporary file renamed over the
target once complete) holding the model, every model and optimizer variable, the config and
the progress, with a SHA-256 per entry; `Trainer.load` rejects truncated, corrupted and
foreign files with a `ValueError` that says which.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gometal_keras.core.config import TrainerConfig
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.training.trainer import Trainer

FEATURES, CLASSES, BATCH = 8, 4, 16
BAD_FILE = r"truncated|corrupted|not a"


def builder() -> ModelBuilder:
    return (
        ModelBuilder([BATCH, FEATURES])
        .add_dense(16, name="hidden")
        .add_batchnorm(name="norm")
        .add_relu(name="act")
        .add_dropout(0.25, name="drop")
        .add_dense(CLASSES, name="head")
    )


def config(precision: str = "float32", **kw) -> TrainerConfig:
    kw.setdefault("jit_compile", precision == "mixed_float16")
    kw.setdefault("seed", 21)
    kw.setdefault("batch_size", BATCH)
    kw.setdefault("learning_rate", 0.01)
    kw.setdefault("loop", "fused")
    return TrainerConfig(precision=precision, **kw)


def data(samples: int = 6 * BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, FEATURES)).astype(np.float32)
    return x, np.argmax(x[:, :CLASSES], axis=1).astype(np.int32)


def values(variables) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in variables]


class CheckpointCase(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="gmk-ckpt-test-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.path = os.path.join(self.dir, "run.gmk")

    def assert_same_state(self, a: Trainer, b: Trainer) -> None:
        for what in ("model", "optimizer"):
            va = a.model.variables if what == "model" else a.optimizer.variables
            vb = b.model.variables if what == "model" else b.optimizer.variables
            self.assertEqual(len(va), len(vb), what)
            for var, x, y in zip(va, values(va), values(vb), strict=True):
                self.assertEqual(x.dtype, y.dtype, f"{what} {var.path}")
                # equal_nan: a round trip must reproduce even non-finite values exactly.
                same = np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
                self.assertTrue(same, f"{what} {var.path} differs")


class RoundTripTest(CheckpointCase):
    def test_float32_round_trip(self):
        cfg = config(lr_schedule="step", lr_step_size=1, lr_gamma=0.5)
        t = Trainer(builder(), cfg)
        x, y = data()
        t.fit(x, y, epochs=2)
        t.save(self.path)
        self.assertEqual(os.listdir(self.dir), ["run.gmk"])  # no temporary file left behind
        u = Trainer.load(self.path)
        self.assert_same_state(t, u)
        self.assertEqual(u.epoch, 2)
        self.assertEqual(u.config, cfg)
        self.assertEqual((u.plan, u.seed, u.decision), (t.plan, t.seed, t.decision))
        self.assertEqual(u.schedule.get_state(), t.schedule.get_state())
        self.assertAllEqual(u.predict(x), t.predict(x))

    def test_mixed_float16_round_trip_keeps_the_loss_scale(self):
        t = Trainer(builder(), config("mixed_float16", loss_scale_growth_interval=50))
        x, y = data()
        t.train_batch(x[:BATCH], y[:BATCH])
        t.train_batch(x[:BATCH] * 1e6, y[:BATCH])  # overflow: the scale halves
        t.train_batch(x[BATCH : 2 * BATCH], y[BATCH : 2 * BATCH])
        scale = float(keras.ops.convert_to_numpy(t.optimizer.dynamic_scale))
        self.assertEqual(scale, t.config.initial_loss_scale / 2)
        t.save(self.path)
        u = Trainer.load(self.path)
        self.assertEqual(u.precision, "mixed_float16")
        self.assertIsInstance(u.optimizer, keras.optimizers.LossScaleOptimizer)
        self.assertEqual(float(keras.ops.convert_to_numpy(u.optimizer.dynamic_scale)), scale)
        self.assert_same_state(t, u)
        self.assertEqual(u.config, t.config)

    def test_resumed_run_equals_an_unbroken_run(self):
        x, y = data()
        for schedule in ("step", "plateau"):
            with self.subTest(schedule):
                cfg = config(
                    lr_schedule=schedule,
                    lr_step_size=1,
                    lr_gamma=0.5,
                    lr_patience=1,
                    lr_factor=0.5,
                )
                unbroken = Trainer(builder(), cfg)
                whole = unbroken.fit(x, y, epochs=5).losses
                first = Trainer(builder(), cfg)
                head = first.fit(x, y, epochs=2).losses
                first.save(self.path)
                resumed = Trainer.load(self.path)
                tail = resumed.fit(x, y, epochs=3).losses
                self.assertEqual(head + tail, whole)  # bit-identical, not merely close
                self.assertEqual(resumed.epoch, 5)
                self.assert_same_state(unbroken, resumed)


class AtomicWriteTest(CheckpointCase):
    def setUp(self):
        super().setUp()
        self.trainer = Trainer(builder(), config())
        self.x, self.y = data()
        self.trainer.fit(self.x, self.y, epochs=1)
        self.trainer.save(self.path)
        self.saved = values(self.trainer.model.variables)
        self.trainer.fit(self.x, self.y, epochs=1)  # the state now differs from the file

    def assert_previous_survives(self) -> None:
        self.assertEqual(sorted(os.listdir(self.dir)), ["run.gmk"], "a partial file remains")
        loaded = Trainer.load(self.path)
        self.assertEqual(loaded.epoch, 1)
        for a, b in zip(self.saved, values(loaded.model.variables), strict=True):
            self.assertTrue(np.array_equal(a, b))

    def test_crash_while_writing_an_entry(self):
        real = zipfile.ZipFile.writestr
        calls = []

        def crash_on_second(zf, name, data, *args, **kw):
            calls.append(name)
            if len(calls) == 2:
                raise OSError("disk full")
            return real(zf, name, data, *args, **kw)

        with (
            mock.patch.object(zipfile.ZipFile, "writestr", crash_on_second),
            self.assertRaises(OSError),
        ):
            self.trainer.save(self.path)
        self.assertLen(calls, 2)
        self.assert_previous_survives()

    def test_crash_at_the_rename(self):
        with (
            mock.patch.object(os, "replace", side_effect=OSError("rename failed")),
            self.assertRaises(OSError),
        ):
            self.trainer.save(self.path)
        self.assert_previous_survives()

    def test_interrupt_while_writing(self):
        def interrupt(*args, **kw):
            raise KeyboardInterrupt

        with mock.patch.object(os, "fsync", interrupt), self.assertRaises(KeyboardInterrupt):
            self.trainer.save(self.path)
        self.assert_previous_survives()

    def test_crash_while_serialising_the_model(self):
        with (
            mock.patch.object(keras.Model, "save", side_effect=RuntimeError("boom")),
            self.assertRaises(RuntimeError),
        ):
            self.trainer.save(self.path)
        self.assert_previous_survives()

    def test_failed_first_save_leaves_no_file(self):
        fresh = os.path.join(self.dir, "new.gmk")
        with (
            mock.patch.object(os, "replace", side_effect=OSError("rename failed")),
            self.assertRaises(OSError),
        ):
            self.trainer.save(fresh)
        self.assertFalse(os.path.exists(fresh))
        self.assertEqual(os.listdir(self.dir), ["run.gmk"])

    def test_save_replaces_a_previous_checkpoint(self):
        self.trainer.save(self.path)
        self.assertEqual(Trainer.load(self.path).epoch, 2)
        self.assertEqual(os.listdir(self.dir), ["run.gmk"])


class BadFileTest(CheckpointCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="gmk-ckpt-good-")
        cls.good = os.path.join(cls.tmp, "good.gmk")
        t = Trainer(builder(), config())
        t.fit(*data(), epochs=1)
        t.save(cls.good)
        with open(cls.good, "rb") as fh:
            cls.blob = fh.read()

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def write(self, blob: bytes) -> str:
        with open(self.path, "wb") as fh:
            fh.write(blob)
        return self.path

    def test_devices_refused_or_mistyped_name_the_file_and_leave_it_whole(self):
        path = self.write(self.blob)
        cases = [({"distribution": None, "devices": 2}, ValueError),
                 ({"devices": "2"}, TypeError), ({"devices": 0}, ValueError)]
        for kwargs, error in cases:
            with self.assertRaisesRegex(error, f"^Checkpoint {path!r}"):
                Trainer.load(path, **kwargs)
            with open(path, "rb") as fh:
                self.assertEqual(fh.read(), self.blob)

    def rezip(self, changes: dict[str, bytes | None]) -> str:
        """Copy the good checkpoint with some entries replaced (None drops one)."""
        with zipfile.ZipFile(self.good) as src, zipfile.ZipFile(self.path, "w") as dst:
            for name in src.namelist():
                blob = changes.get(name, src.read(name))
                if blob is not None:
                    dst.writestr(name, blob)
        return self.path

    def assert_load_fails(self, path: str, pattern: str = BAD_FILE) -> None:
        with self.assertRaisesRegex(ValueError, pattern) as caught:
            Trainer.load(path)
        self.assertNotIn("\n", str(caught.exception))

    def test_good_file_loads(self):
        self.assertEqual(Trainer.load(self.good).epoch, 1)

    def test_truncated(self):
        for size in (len(self.blob) // 2, len(self.blob) - 10, 100, 0):
            with self.subTest(size=size):
                self.assert_load_fails(self.write(self.blob[:size]), "truncated|corrupted")

    def test_flipped_bytes_inside_each_entry(self):
        with zipfile.ZipFile(self.good) as zf:
            infos = zf.infolist()
        for info in infos:
            with self.subTest(info.filename):
                # The entry's data starts after its 30-byte local header, name and extra field.
                with open(self.good, "rb") as fh:
                    fh.seek(info.header_offset + 26)
                    name_len, extra_len = np.frombuffer(fh.read(4), "<u2")
                start = info.header_offset + 30 + int(name_len) + int(extra_len)
                middle = start + info.compress_size // 2
                blob = bytearray(self.blob)
                for i in range(middle, min(middle + 4, start + info.compress_size)):
                    blob[i] ^= 0xFF
                self.assert_load_fails(self.write(bytes(blob)), "corrupted")

    def test_entry_altered_with_a_valid_zip_crc(self):
        # Rewritten with a fresh CRC: only the SHA-256 in trainer.json catches it.
        with zipfile.ZipFile(self.good) as zf:
            original = zf.read("variables.npz")
        altered = bytearray(original)
        altered[-100] ^= 0x01
        self.assert_load_fails(self.rezip({"variables.npz": bytes(altered)}), "corrupted")

    def test_not_a_zip(self):
        self.assert_load_fails(self.write(b"these are not the weights you are looking for\n"))
        self.assert_load_fails(self.write(os.urandom(4096)))

    def test_zip_without_our_entries(self):
        with zipfile.ZipFile(self.path, "w") as zf:
            zf.writestr("readme.txt", "hello")
        self.assert_load_fails(self.path, "not a")
        self.assert_load_fails(self.rezip({"optimizer.npz": None}), "not a")

    def test_zip_with_our_names_but_foreign_metadata(self):
        cases = {
            "other format": json.dumps({"format": "something.else", "version": 1}),
            "newer version": json.dumps({"format": "gometal_keras.checkpoint", "version": 99}),
            "a list": "[]",
            "a number": "3",
            "no checksums": json.dumps({"format": "gometal_keras.checkpoint", "version": 1}),
            "not json": "{{{",
            "not utf-8": b"\xff\xfe\x00garbage",
        }
        for label, meta in cases.items():
            with self.subTest(label):
                blob = meta if isinstance(meta, bytes) else meta.encode()
                self.assert_load_fails(self.rezip({"trainer.json": blob}))

    def test_missing_file(self):
        with self.assertRaises(FileNotFoundError):
            Trainer.load(os.path.join(self.dir, "absent.gmk"))


class ExportTest(CheckpointCase):
    def test_export_serves_with_tf_saved_model(self):
        t = Trainer(builder(), config())
        x, y = data()
        t.fit(x, y, epochs=1)
        target = os.path.join(self.dir, "served")
        t.export(target)
        served = tf.saved_model.load(target)
        out = served.serve(tf.constant(x[:5]))
        self.assertAllClose(np.asarray(out), t.predict(x[:5]), atol=1e-5)


@st.composite
def chains(draw) -> ModelBuilder:
    """Builder chains of any depth: a lone output layer (which a mixed policy keeps in
    float32, so no layer shows the policy), or hidden layers before it."""
    b = ModelBuilder([BATCH, FEATURES])
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["dense", "relu", "batchnorm", "dropout"]))
        if kind == "dense":
            b.add_dense(draw(st.integers(2, 6)))
        elif kind == "dropout":
            b.add_dropout(0.25)
        else:
            getattr(b, f"add_{kind}")()
    return b.add_dense(CLASSES)


class AnyChainTest(CheckpointCase):
    @settings(max_examples=6, deadline=None)
    @given(chain=chains(), precision=st.sampled_from(["float32", "mixed_float16",
                                                      "mixed_bfloat16"]))
    @example(chain=ModelBuilder([BATCH, FEATURES]).add_dense(CLASSES), precision="mixed_float16")
    def test_every_chain_and_precision_resumes_bit_for_bit(self, chain, precision):
        x, y = data()
        cfg = config(precision, jit_compile=False)
        whole = Trainer(chain, cfg).fit(x, y, epochs=2).losses
        first = Trainer(chain, cfg)
        head = first.fit(x, y, epochs=1).losses
        first.save(self.path)
        resumed = Trainer.load(self.path)  # a lone float32 output layer was refused here
        self.assertEqual(resumed.plan, first.plan)
        self.assertEqual(head + resumed.fit(x, y, epochs=1).losses, whole)
