"""Issue 16: the API promises of docs/guarantees.md under attack.

Classes 4 (every argument checked before the first step), 8 (every malformed checkpoint
is one ValueError naming the file) and 9 (the builder refuses names Keras refuses), the
Keras callbacks a user reaches for first, and the answers that had to be better.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import zipfile

import keras
import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.builder import ModelBuilder
from gometal_keras.config import TrainerConfig
from gometal_keras.trainer import Trainer

RNG = np.random.default_rng(0)
X = RNG.normal(size=(32, 8)).astype(np.float32)
Y = np.arange(32) % 4


def config(**kw) -> TrainerConfig:
    kw = {"batch_size": 16, "precision": "float32", "jit_compile": False, "seed": 0, **kw}
    return TrainerConfig(**kw)


def trainer(**kw) -> Trainer:
    return Trainer(ModelBuilder([16, 8]).add_dense(8).add_relu().add_dense(4), config(**kw))


def state(t: Trainer) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v)) for v in t.model.variables] + [
        np.array(keras.ops.convert_to_numpy(v)) for v in t.optimizer.variables
    ]


class Spy(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.began = False

    def on_train_begin(self, logs=None):
        self.began = True


#: Bad values per fit argument (the valid ones: epochs=1, early_stop_loss=None, ...).
BAD_FIT_ARGS = st.one_of(
    st.tuples(st.just("epochs"), st.sampled_from([0, -1, 1.5, "2", None, True, [1]])),
    st.tuples(
        st.just("early_stop_loss"),
        st.sampled_from(["0.1", float("nan"), [0.1], {"a": 1}, True, b"1"]),
    ),
    st.tuples(st.just("validation_data"), st.sampled_from([X, (X,), (X, Y, Y), "xy", 3])),
    st.tuples(
        st.just("callbacks"),
        st.sampled_from([[None], "cb", 3, [keras.callbacks.History(), 1], {"a": 1}]),
    ),
    st.tuples(st.just("verbose"), st.sampled_from([3, -1, "1", 1.0, None, True])),
    st.tuples(st.just("validation_data"), st.just((X[:, :3], Y))),
    st.tuples(st.just("validation_data"), st.just((X, Y + 10))),
)


class ArgumentsFirstTest(tf.test.TestCase):
    """Class 4: a bad argument fails before the first step, with nothing changed."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.t = trainer()

    @settings(max_examples=25, deadline=None)
    @given(bad=BAD_FIT_ARGS)
    def test_bad_fit_argument_changes_nothing(self, bad):
        name, value = bad
        spy, before, epoch = Spy(), state(self.t), self.t.epoch
        kwargs = {name: value}
        if name != "callbacks":
            kwargs["callbacks"] = [spy]
        with self.assertRaises((TypeError, ValueError)) as caught:
            self.t.fit(X, Y, **kwargs)
        self.assertNotIn("\n", str(caught.exception))
        self.assertFalse(spy.began, f"{name}={value!r} was checked after work started")
        self.assertEqual(self.t.epoch, epoch)
        for got, want in zip(state(self.t), before, strict=True):
            self.assertAllEqual(got, want)

    def test_numpy_integers_and_bare_callbacks(self):
        t = trainer(batch_size=np.int64(16))
        self.assertEqual(type(t.config.batch_size), int)
        run = t.fit(X, Y, epochs=np.int64(2), callbacks=keras.callbacks.History(), verbose=0)
        self.assertLen(run.losses, 2)
        self.assertLen(t.fit(X, Y, callbacks=None).losses, 1)


def saved(t: Trainer) -> str:
    path = os.path.join(tempfile.mkdtemp(), "run.gmk")
    t.save(path)
    return path


def rewrite_metadata(path: str, change) -> None:
    """Rewrite trainer.json through `change(meta)`; the checksums stay valid."""
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(entries["trainer.json"])
    change(meta)
    entries["trainer.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in entries.items():
            zf.writestr(name, blob)


JSON_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 2**70),
    st.text(max_size=4),
    st.just([]),
    st.just({}),
    st.floats(allow_nan=False),
)
FIELDS = [
    ("config",),
    ("plan",),
    ("seed",),
    ("epoch",),
    ("decision",),
    ("schedule",),
    ("plan", "precision"),
    ("plan", "xla"),
    ("plan", "loop"),
    ("plan", "guard"),
    ("plan", "loss_scaling"),
    ("plan", "replicas"),
    ("config", "batch_size"),
    ("config", "optimizer"),
    ("config", "learning_rate"),
]


class MalformedCheckpointTest(tf.test.TestCase):
    """Class 8: every malformed checkpoint gives one ValueError naming the file."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t = trainer()
        t.fit(X, Y)
        cls.path = saved(t)
        with open(cls.path, "rb") as fh:
            cls.blob = fh.read()

    def assert_clean_failure_or_load(self, path: str) -> None:
        try:
            Trainer.load(path)
        except ValueError as err:
            self.assertIn(repr(path), str(err))
            self.assertNotIn("\n", str(err))

    @settings(max_examples=25, deadline=None)
    @given(data=st.data())
    def test_flipped_bytes(self, data):
        blob = bytearray(self.blob)
        tail = len(blob) - 400  # the central directory and end record live at the end
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(tail, len(blob) - 1) | st.integers(0, len(blob) - 1))
            blob[at] ^= data.draw(st.integers(1, 255))
        path = os.path.join(tempfile.mkdtemp(), "flipped.gmk")
        with open(path, "wb") as fh:
            fh.write(bytes(blob))
        self.assert_clean_failure_or_load(path)

    @settings(max_examples=25, deadline=None)
    @given(field=st.sampled_from(FIELDS), junk=JSON_JUNK, delete=st.booleans())
    def test_mistyped_or_missing_metadata(self, field, junk, delete):
        path = os.path.join(tempfile.mkdtemp(), "meta.gmk")
        with open(path, "wb") as fh:
            fh.write(self.blob)

        def change(meta):
            *parents, last = field
            for key in parents:
                meta = meta[key]
            if delete:
                meta.pop(last, None)
            else:
                meta[last] = junk

        rewrite_metadata(path, change)
        self.assert_clean_failure_or_load(path)

    def test_unregistered_custom_layer(self):
        class Doubler(keras.layers.Layer):
            def call(self, x):
                return 2 * x

        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), Doubler()])
        path = saved(Trainer(model, config()))
        with self.assertRaisesRegex(ValueError, "register_keras_serializable"):
            Trainer.load(path)

    def test_save_errors_name_the_path_given(self):
        t = trainer()
        for path in (tempfile.mkdtemp(), os.path.join(tempfile.mkdtemp(), "no", "run.gmk")):
            with self.subTest(path=path), self.assertRaises(OSError) as caught:
                t.save(path)
            self.assertIn(repr(path), str(caught.exception))
            self.assertNotIn(".partial", str(caught.exception))


NAMES = st.text(max_size=12) | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,10}", fullmatch=True)


class LayerNameTest(tf.test.TestCase):
    """Class 9: a name the builder accepts trains; one it refuses leaves it unchanged."""

    @settings(max_examples=8, deadline=None)
    @given(name=NAMES)
    def test_accepted_names_train(self, name):
        b = ModelBuilder([16, 8]).add_dense(8, name="first")
        try:
            b.add_relu(name=name)
        except (TypeError, ValueError) as err:
            self.assertNotIn("\n", str(err))
            self.assertLen(b, 1)
            return
        t = Trainer(b.add_dense(4, name="head"), config())
        self.assertTrue(np.isfinite(t.train_batch(X[:16], Y[:16]).loss))

    def test_issue_examples(self):
        for name in ("my layer", "a:b", "a\nb", "ü", ".hidden"):
            b = ModelBuilder([16, 8])
            with self.subTest(name=name), self.assertRaises(ValueError):
                b.add_dense(4, name=name)
            self.assertLen(b, 0)


class KerasCallbacksTest(tf.test.TestCase):
    """The Keras callbacks a user reaches for first work with Trainer.fit."""

    def test_the_common_callbacks(self):
        folder = tempfile.mkdtemp()
        t = trainer()
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=100.0),
            keras.callbacks.ReduceLROnPlateau(
                monitor="loss", patience=0, min_delta=100.0, factor=0.5
            ),
            keras.callbacks.ModelCheckpoint(os.path.join(folder, "best.keras"), monitor="loss"),
            keras.callbacks.TensorBoard(os.path.join(folder, "tb")),
            keras.callbacks.CSVLogger(os.path.join(folder, "log.csv")),
            keras.callbacks.TerminateOnNaN(),
        ]
        run = t.fit(X, Y, epochs=5, callbacks=callbacks, validation_data=(X, Y))
        self.assertTrue(run.stopped_early)  # EarlyStopping: no epoch improves by 100
        self.assertLen(run.losses, 2)
        self.assertAllClose(
            float(keras.ops.convert_to_numpy(t.optimizer.learning_rate)), 0.001 / 2
        )  # halved after the second epoch (the first sets the best)
        self.assertFalse(hasattr(t.model, "optimizer") and t.model.optimizer is not None)
        reloaded = keras.models.load_model(os.path.join(folder, "best.keras"), compile=False)
        self.assertAllClose(reloaded.predict(X, verbose=0), t.predict(X), atol=1e-6)
        self.assertNotEmpty(glob.glob(os.path.join(folder, "tb", "train", "*tfevents*")))
        with open(os.path.join(folder, "log.csv")) as fh:
            self.assertLen(fh.read().strip().splitlines(), 3)  # header + 2 epochs

    def test_terminate_on_nan_with_the_guard(self):
        t = trainer(learning_rate=3e38, optimizer="sgd")
        with self.assertRaises(FloatingPointError):
            t.fit(X * 1e30, Y, epochs=3, callbacks=[keras.callbacks.TerminateOnNaN()])
        self.assertTrue(all(np.isfinite(v).all() for v in state(t) if v.dtype.kind == "f"))
        self.assertEqual(t.epoch, 0)


class BetterAnswersTest(tf.test.TestCase):
    def test_rejections_in_one_sentence(self):
        t = trainer()
        bce = Trainer(ModelBuilder([16, 8]).add_dense(1), config(loss="binary_crossentropy"))
        cases = [
            (lambda: t.train_batch(np.float32(3.0), Y[:1]), "scalar"),
            (lambda: bce.train_batch(X[:16], np.full(16, 5.0)), r"\[0, 1\]"),
            (lambda: Trainer(ModelBuilder([64, 8]).add_dense(4), config()), "batch"),
            (
                lambda: TrainerConfig(use_mixed_precision=True, precision="float32"),
                "use_mixed_precision",
            ),
        ]
        for i, (call, pattern) in enumerate(cases):
            with self.subTest(case=i), self.assertRaisesRegex(ValueError, pattern):
                call()

    def test_per_pixel_outputs_need_per_pixel_labels(self):
        model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 1)])
        t = Trainer(model, config())
        x = RNG.normal(size=(16, 4, 4, 2))
        with self.assertRaisesRegex(ValueError, r"\(16, 4, 4\)"):
            t.train_batch(x, np.zeros(16, int))
        self.assertTrue(np.isfinite(t.train_batch(x, np.zeros((16, 4, 4), int)).loss))

    def test_nearby_seeds_share_no_stream(self):
        def kernels(seed):
            model = ModelBuilder([4, 8]).add_dense(8).add_dense(8).compile("float32", seed=seed)
            return [np.asarray(keras.ops.convert_to_numpy(layer.kernel)) for layer in model.layers]

        first, second = kernels(7), kernels(8)
        self.assertFalse(np.array_equal(first[1], second[0]))
