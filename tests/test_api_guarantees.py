"""The API promises of docs/guarantees.md under attack.

Classes 4 (every argument checked before the first step), 8 (every malformed checkpoint
is one ValueError naming the file) and 9 (the builder refuses names Keras refuses), the
Keras callbacks a user reaches for first, and the answers that had to be better.
"""

from __future__ import annotations

import glob
import inspect
import json
import math
import numbers
import os
import tempfile
import zipfile

import keras
import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.seeds import SEED_MAX
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.training.trainer import Trainer

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


#: The class of scalar values a caller may pass: None, bools, floats of every kind (NaN,
#: ±inf, negative, subnormal, huge), ints beyond float range, numpy scalars, non-numbers.
SPECIAL = st.sampled_from(
    [
        *(math.nan, math.inf, -math.inf, 1e39, -3.5e38, 10**400, 2**64, -(2**63) - 1),
        *(np.float64("nan"), np.float32("inf"), np.float64(-1e39), np.int64(-1), -1e-45),
    ]
)
SCALARS = st.one_of(
    SPECIAL,
    SPECIAL,
    st.none(),
    st.booleans(),
    st.builds(np.bool_, st.booleans()),
    st.floats(),
    st.floats(0, 10),
    st.integers(-(2**1100), 2**1100),
    st.integers(-3, 5),
    st.sampled_from([10**400, -(10**400), 2**1024, 1e308, -0.0, 0, 3.5e38, 1e-45, -1e-45]),
    st.builds(np.float64, st.floats()),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.text(max_size=3),
    st.binary(max_size=2),
    st.sampled_from([[0.1], {"a": 1}, (1,), object()]),
)


def real_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def as_float(value) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def good_loss_limit(value) -> bool:
    """early_stop_loss's contract: None or a finite number of at least 0."""
    if value is None:
        return True
    return real_number(value) and math.isfinite(as_float(value)) and as_float(value) >= 0


def float32_finite(value) -> bool:
    """Whether a real `value` is finite as the float32 the model reads (bools are 0/1)."""
    if isinstance(value, (bool, np.bool_)):
        return True
    number = as_float(value)
    return math.isfinite(number) and abs(number) <= float(np.finfo(np.float32).max)


#: Bad values per fit argument (the valid ones: epochs=1, early_stop_loss=None, ...).
BAD_FIT_ARGS = st.one_of(
    st.tuples(st.just("epochs"), st.sampled_from([0, -1, 1.5, "2", None, True, [1]])),
    st.tuples(
        st.just("early_stop_loss"),
        SCALARS.filter(lambda v: not good_loss_limit(v)),
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

    @settings(max_examples=25, deadline=None)
    @given(limit=SCALARS)
    def test_early_stop_loss_over_the_class(self, limit):
        """Every value is a working limit or a ValueError/TypeError before the first step: a
        number (huge, NaN, ±inf, negative) a ValueError, a non-number a TypeError."""
        before, epoch = state(self.t), self.t.epoch
        if good_loss_limit(limit):
            run = self.t.fit(X, Y, epochs=2, early_stop_loss=limit)
            stops = limit is not None and run.losses[0] < as_float(limit)
            self.assertEqual(run.epochs_run, 1 if stops else 2)
            return
        error = ValueError if real_number(limit) else TypeError
        with self.assertRaises(error) as caught:
            self.t.fit(X, Y, early_stop_loss=limit)
        self.assertIn("early_stop_loss", str(caught.exception))
        self.assertNotIn("\n", str(caught.exception))
        self.assertEqual(self.t.epoch, epoch)
        for got, want in zip(state(self.t), before, strict=True):
            self.assertAllEqual(got, want)

    @settings(max_examples=40, deadline=None)
    @given(
        method=st.sampled_from(["predict", "evaluate", "train_batch"]),
        where=st.sampled_from(["x", "x", "y", "scalar x"]),
        value=SCALARS,
    )
    def test_inference_and_step_arguments_over_the_class(self, method, where, value):
        """predict, evaluate and train_batch: a value of any kind in x or y gives a result, a
        FloatingPointError that changes nothing (train_batch), or a ValueError/TypeError that
        changes nothing; never another exception."""
        x, y = X[:16], Y[:16]
        if where == "x":
            x = [[value] * 8] * 16
        elif where == "scalar x":
            x = value
        else:
            y = [value] * 16
        call = {
            "predict": lambda: self.t.predict(x),
            "evaluate": lambda: self.t.evaluate(x, y),
            "train_batch": lambda: self.t.train_batch(x, y).loss,
        }[method]
        before = state(self.t)
        number = real_number(value) or isinstance(value, (bool, np.bool_))
        must_refuse = where == "scalar x" or not (number and float32_finite(value))
        if isinstance(value, (list, tuple)):  # an extra axis may be legitimate ((n, 1) labels)
            must_refuse = where == "scalar x"
        elif where == "y":  # class indices in [0, 4); predict takes no y
            whole = not must_refuse and float(value) == int(value) and 0 <= int(value) < 4
            must_refuse = method != "predict" and not whole
        try:
            call()
        except (ValueError, TypeError) as err:
            self.assertNotIn("\n", str(err))
        except FloatingPointError:
            self.assertEqual(method, "train_batch")  # the guard kept every variable
        else:
            self.assertFalse(must_refuse, f"{method} took {where}={value!r}")
            if method != "train_batch":
                return
            before = None  # a step was taken
        if before is not None:
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
    st.floats(),  # NaN and ±Infinity too: Python's json reads and writes them
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
    ("plan", "loss_scaling", "initial_scale"),
    ("plan", "loss_scaling", "growth_interval"),
    ("schedule", "best"),
    ("schedule", "wait"),
    ("schedule", "current"),
    ("decision", "trial_seconds"),
    ("config", "batch_size"),
    ("config", "optimizer"),
    ("config", "learning_rate"),
    ("config", "momentum"),
]
#: The rich checkpoint's schedule patience: a plateau schedule's 'wait' never exceeds it.
PATIENCE = 2
NEGATIVE = st.one_of(
    st.floats(max_value=-5e-324),  # -inf and negative subnormals included
    st.integers(max_value=-1),
    st.sampled_from([-1e-40, -(10**400)]),
)
NAN = st.just(math.nan)
TOO_BIG = st.floats(min_value=3.5e38) | st.sampled_from([2**128, 10**400])  # inf in float32
FLUSHED = st.sampled_from([0, 0.0, -0.0, 1e-40, 1e-45, 5e-324])  # 0 as a float32
#: Values of the right JSON type but out of range or inconsistent, per field.
OUT_OF_RANGE = {
    ("seed",): st.integers(max_value=-1) | st.integers(min_value=SEED_MAX + 1),
    ("epoch",): st.integers(max_value=-1),
    ("plan", "replicas"): st.integers(max_value=0),
    ("plan", "loss_scaling", "initial_scale"): NEGATIVE | NAN | TOO_BIG | FLUSHED,
    ("plan", "loss_scaling", "growth_interval"): (
        st.integers(max_value=0) | st.integers(min_value=2**31)
    ),
    ("schedule", "best"): NEGATIVE | NAN,
    ("schedule", "wait"): st.integers(max_value=-1) | st.integers(min_value=PATIENCE + 1),
    ("schedule", "current"): NEGATIVE | NAN | TOO_BIG,
    ("decision", "trial_seconds"): NEGATIVE | NAN | st.just(math.inf),
    ("config", "learning_rate"): NEGATIVE | NAN | TOO_BIG | FLUSHED,
    ("config", "momentum"): NEGATIVE | NAN | st.floats(min_value=1.0) | st.just(1 - 1e-9),
    ("config", "lr_min"): NEGATIVE | NAN | TOO_BIG,
}
#: In-range edge values that must load (and train: a rate of 0 is a cosine's last epoch).
IN_RANGE = [
    (("schedule", "best"), math.inf),
    (("schedule", "best"), 0),
    (("schedule", "wait"), PATIENCE),
    (("schedule", "current"), 0.0),
    (("schedule", "current"), 1),
    (("plan", "loss_scaling", "initial_scale"), 1),
    (("plan", "loss_scaling", "growth_interval"), 2**31 - 1),
    (("decision", "trial_seconds"), 0),
]


def edit(path: str, field: tuple[str, ...], value, delete: bool = False) -> None:
    """Set (or delete) `field` of trainer.json in the checkpoint at `path`."""

    def change(meta):
        *parents, last = field
        for key in parents:
            meta = meta[key]
        if delete:
            meta.pop(last, None)
        else:
            meta[last] = value

    rewrite_metadata(path, change)


def copy_of(blob: bytes, name: str = "meta.gmk") -> str:
    path = os.path.join(tempfile.mkdtemp(), name)
    with open(path, "wb") as fh:
        fh.write(blob)
    return path


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
        # A checkpoint with every optional part: loss scaling, a schedule, a decision.
        rich = trainer(
            precision="mixed_float16",
            jit_compile=None,
            decision_cache="never",
            lr_schedule="plateau",
            lr_patience=PATIENCE,
        )
        with open(saved(rich), "rb") as fh:
            cls.rich = fh.read()

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
        path = copy_of(self.rich)
        edit(path, field, junk, delete)
        self.assert_clean_failure_or_load(path)

    @settings(max_examples=30, deadline=None)
    @given(
        case=st.sampled_from(sorted(OUT_OF_RANGE)).flatmap(
            lambda field: st.tuples(st.just(field), OUT_OF_RANGE[field])
        )
    )
    def test_out_of_range_metadata_never_loads(self, case):
        """A value of the right type but out of range (or against its config: a plateau's
        'wait' beyond lr_patience) is refused in one sentence naming the file and field."""
        field, value = case
        path = copy_of(self.rich)
        edit(path, field, value)
        with self.assertRaises(ValueError) as caught:
            Trainer.load(path)
        message = str(caught.exception)
        self.assertIn(repr(path), message)
        self.assertIn(field[-1], message)
        self.assertNotIn("\n", message)

    def test_in_range_edges_load(self):
        for field, value in IN_RANGE:
            with self.subTest(field=field, value=value):
                path = copy_of(self.rich)
                edit(path, field, value)
                loaded = Trainer.load(path)
                if field[0] == "schedule":
                    self.assertEqual(loaded.schedule.get_state()[field[-1]], value)

    def test_edited_precision_names_the_file(self):
        """A plan naming another valid precision (checksums kept) does not fit the model
        saved under the first: the error names the file whichever part notices."""
        cases = [
            (self.blob, "mixed_float16", False),
            (self.blob, "mixed_bfloat16", False),
            (self.rich, "float32", True),
            (self.rich, "mixed_bfloat16", True),
            (self.rich, "float32", False),  # loss scaling left under float32
        ]
        for blob, precision, drop_scaling in cases:
            with self.subTest(precision=precision, drop_scaling=drop_scaling):
                path = copy_of(blob)
                edit(path, ("plan", "precision"), precision)
                if drop_scaling:
                    edit(path, ("plan", "loss_scaling"), None)
                with self.assertRaises(ValueError) as caught:
                    Trainer.load(path)
                self.assertIn(repr(path), str(caught.exception))
                self.assertNotIn("\n", str(caught.exception))

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


F32 = np.finfo(np.float32)
#: Every real argument of the builder: (method, argument) -> (low, high, low_open, high_open).
BUILDER_REALS = {
    ("add_leaky_relu", "negative_slope"): (0.0, math.inf, False, True),
    ("add_elu", "alpha"): (-math.inf, math.inf, True, True),
    ("add_dropout", "rate"): (0.0, 1.0, False, True),
    ("add_batchnorm", "eps"): (0.0, math.inf, True, True),
    ("add_batchnorm", "momentum"): (0.0, 1.0, False, False),
    ("add_layer_norm", "eps"): (0.0, math.inf, True, True),
    ("add_multi_head_attention", "dropout_rate"): (0.0, 1.0, False, True),
}
#: A one-layer builder each add_* call fits (a sequence for attention), and the other
#: arguments it needs.
BUILDER_SETUPS = {
    "add_multi_head_attention": (
        lambda: ModelBuilder([16, 6, 8]).add_layer_norm(), {"num_heads": 2}
    ),
}
#: Real values of every kind: huge, tiny subnormal, negative, NaN, ±inf, ints beyond float
#: range, values that round onto a bound in float32, numpy scalars.
BUILDER_VALUES = st.one_of(
    st.floats(),
    st.floats(-2, 2),
    st.integers(-(2**140), 2**140),
    st.sampled_from(
        [
            *(1e39, -1e39, 3.5e38, float(F32.max), 1e-50, -1e-50, 1e-40, -1e-40),
            *(float(F32.tiny), 10**400, -(10**400), 1 - 1e-9, 0.99999994, 1 + 1e-9, 0, 1, -0.0),
        ]
    ),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.float64, st.floats()),
    st.sampled_from([None, "0.1", True, np.bool_(False)]),
)


def as_device_float32(number: float) -> float:
    """The documented rule: inf above float32's max, 0 below its normal range."""
    if math.isnan(number) or abs(number) > float(F32.max):
        return number if math.isnan(number) else math.copysign(math.inf, number)
    return 0.0 if abs(number) < float(F32.tiny) else float(np.float32(number))


def in_bounds(value, bounds) -> bool:
    """In `bounds` and finite, as given and as the device's float32."""
    low, high, low_open, high_open = bounds
    given = as_float(value)
    for n in (given, as_device_float32(given)):
        if not math.isfinite(n) or (n <= low if low_open else n < low):
            return False
        if n >= high if high_open else n > high:
            return False
    return True


class BuilderFloat32Test(tf.test.TestCase):
    """Class 9: a builder's real argument is accepted exactly when it is in range as given
    and as the float32 the layer computes with; else the add_* call refuses it."""

    def test_every_real_argument_is_covered(self):
        found = {
            (name, p.name)
            for name in dir(ModelBuilder)
            if name.startswith("add_")
            for p in inspect.signature(getattr(ModelBuilder, name)).parameters.values()
            if p.annotation in ("float", float)
        }
        self.assertEqual(found, set(BUILDER_REALS))

    @settings(max_examples=40, deadline=None)
    @given(arg=st.sampled_from(sorted(BUILDER_REALS)), value=BUILDER_VALUES)
    def test_accepted_exactly_when_float32_holds_it(self, arg, value):
        method, key = arg
        make, needed = BUILDER_SETUPS.get(
            method, (lambda: ModelBuilder([16, 8]).add_dense(8), {})
        )
        b = make()
        try:
            getattr(b, method)(**needed, **{key: value})
        except (TypeError, ValueError) as err:
            if real_number(value):
                self.assertIsInstance(err, ValueError)
                self.assertFalse(in_bounds(value, BUILDER_REALS[arg]), f"{key}={value!r}: {err}")
            self.assertIn(key, str(err))
            self.assertNotIn("\n", str(err))
            self.assertLen(b, 1)
            return
        self.assertTrue(real_number(value), f"{key}={value!r} was accepted")
        self.assertTrue(in_bounds(value, BUILDER_REALS[arg]), f"{key}={value!r} was accepted")
        self.assertLen(b, 2)

    def test_issue_examples_fail_at_the_call_not_in_fit(self):
        calls = [
            ("negative_slope", lambda b: b.add_leaky_relu(1e39)),
            ("alpha", lambda b: b.add_elu(alpha=1e39)),
            ("eps", lambda b: b.add_batchnorm(eps=1e-50)),
            ("rate", lambda b: b.add_dropout(0.99999999)),  # 1.0 in float32
            ("negative_slope", lambda b: b.add_leaky_relu(10**400)),
        ]
        for key, call in calls:
            b = ModelBuilder([8, 4]).add_dense(3)
            with self.subTest(key), self.assertRaisesRegex(ValueError, key):
                call(b)
            self.assertLen(b, 1)


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


class CategoricalTargetsTest(tf.test.TestCase):
    """categorical_crossentropy's targets are distributions: one-hot or soft rows of values
    in [0, 1] summing to 1; anything else is refused before the step, nothing changed."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.t = trainer(loss="categorical_crossentropy")

    @settings(max_examples=20, deadline=None)
    @given(data=st.data())
    def test_only_distributions_train(self, data):
        labels = data.draw(st.lists(st.integers(0, 3), min_size=16, max_size=16))
        y = np.eye(4)[labels]
        kind = data.draw(st.sampled_from(["one-hot", "smoothed", "scaled", "negated", "entry"]))
        if kind == "smoothed":
            y = y * 0.9 + 0.025
        elif kind == "scaled":
            y = y * data.draw(st.floats(0, 3))
        elif kind == "negated":
            y = -y
        elif kind == "entry":
            value = data.draw(st.floats() | st.sampled_from([-1e-40, 1 + 1e-9, 2.0, -0.5, 0.5]))
            y[data.draw(st.integers(0, 15)), data.draw(st.integers(0, 3))] = value
        with np.errstate(over="ignore", invalid="ignore"):
            y32 = y.astype(np.float32)  # what the device reads
            sums = y32.sum(axis=-1, dtype=np.float64)
        in_range = np.isfinite(y32).all() and y32.min() >= 0 and y32.max() <= 1
        off = np.abs(sums - 1)
        before = state(self.t)
        try:
            loss = self.t.train_batch(X[:16], y).loss
        except ValueError as err:
            self.assertNotIn("\n", str(err))
            self.assertFalse(in_range and off.max() < 0.005, f"{kind} refused: {err}")
            for got, want in zip(state(self.t), before, strict=True):
                self.assertAllEqual(got, want)
            return
        self.assertTrue(in_range and off.max() <= 0.02, f"{kind} targets trained: {y32}")
        self.assertGreaterEqual(loss, 0.0)  # cross-entropy of a distribution

    def test_issue_example(self):
        y = -np.eye(4)[Y[:16]]
        with self.assertRaisesRegex(ValueError, r"\[0, 1\]"):
            self.t.train_batch(X[:16], y)
        with self.assertRaisesRegex(ValueError, "sum to 1"):
            self.t.train_batch(X[:16], np.eye(4)[Y[:16]] + np.eye(4)[(Y[:16] + 1) % 4])
