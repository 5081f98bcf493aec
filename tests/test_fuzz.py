"""Fuzzing: random builder chains and random malformed arrays (hypothesis, bounded for CI).

A random chain of `ModelBuilder` calls either builds a model whose parameter
count matches an independent formula (Go-Metal's counts plus Keras' 2*features moving
statistics per BatchNorm) or is rejected with `ValueError`/`TypeError` at the call that is
wrong. Random malformed arrays given to `train_batch` raise only `ValueError`/`TypeError`
and leave every variable unchanged; well-formed ones train.
"""

from __future__ import annotations

import math
import re
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gometal_keras.core.config import TrainerConfig
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.training.trainer import Trainer

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REJECT = (ValueError, TypeError)
#: Layer names the builder takes (docs/guarantees.md): ASCII letters, digits, '_', '.', '-',
#: starting with a letter or digit, at most 200 characters.
VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")

# --- An independent model of the builder: validity, shapes, names, parameter counts. ---

NAMES = st.one_of(
    st.none(),
    st.none(),
    st.none(),
    st.none(),
    st.sampled_from(["a", "b", "a_pad", "b_flatten", "dense_1", "relu_1", "input", "x.y-1"]),
    st.sampled_from(["", "a/b", 3, "x y", "ü", "a:b", "a\nb", "_a", "-a"]),  # names Keras refuses
)
SMALL = st.integers(min_value=1, max_value=6)
BAD_INT = st.sampled_from([0, -1, 2.0, True, None, "3"])


def maybe_bad(good: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(good, good, good, good, good, BAD_INT)


LAYERS = st.one_of(
    st.tuples(
        st.just("dense"),
        st.fixed_dictionaries({"units": maybe_bad(SMALL), "use_bias": st.booleans()}),
    ),
    st.tuples(
        st.just("conv2d"),
        st.fixed_dictionaries(
            {
                "filters": maybe_bad(SMALL),
                "kernel_size": maybe_bad(st.integers(1, 4)),
                "stride": maybe_bad(st.integers(1, 3)),
                "padding": st.one_of(st.integers(0, 2), st.just(-1)),
                "use_bias": st.booleans(),
            }
        ),
    ),
    st.tuples(
        st.just("maxpool2d"),
        st.fixed_dictionaries(
            {"pool_size": maybe_bad(st.integers(1, 3)), "stride": st.one_of(st.none(), SMALL)}
        ),
    ),
    st.tuples(st.sampled_from(["relu", "sigmoid", "tanh", "swish"]), st.just({})),
    st.tuples(
        st.just("leaky_relu"),
        st.fixed_dictionaries({"negative_slope": st.sampled_from([0.0, 0.1, -0.5, math.nan])}),
    ),
    st.tuples(
        st.just("elu"), st.fixed_dictionaries({"alpha": st.sampled_from([1.0, 0.5, math.inf])})
    ),
    st.tuples(st.just("softmax"), st.fixed_dictionaries({"axis": st.integers(-5, 5)})),
    st.tuples(
        st.just("dropout"), st.fixed_dictionaries({"rate": st.sampled_from([0.0, 0.3, 1.0, -0.1])})
    ),
    st.tuples(
        st.just("batchnorm"),
        st.fixed_dictionaries(
            {"num_features": st.one_of(st.none(), st.integers(0, 6)), "affine": st.booleans()}
        ),
    ),
)
INPUT_SHAPES = st.sampled_from(["2d", "4d", "4d", "4d", "2d", "4d", "bad"]).flatmap(
    lambda kind: {
        "2d": st.lists(st.integers(1, 12), min_size=2, max_size=2),
        "4d": st.lists(st.integers(1, 7), min_size=4, max_size=4),
        "bad": st.sampled_from([[4], [4, 0], [2, 3, 0], [0, 1, 4, 4], [4, 1, 4, 4, 1]]),
    }[kind]
)
METHODS = {
    "dense": "add_dense",
    "conv2d": "add_conv2d",
    "maxpool2d": "add_maxpool2d",
    "relu": "add_relu",
    "sigmoid": "add_sigmoid",
    "tanh": "add_tanh",
    "swish": "add_swish",
    "leaky_relu": "add_leaky_relu",
    "elu": "add_elu",
    "softmax": "add_softmax",
    "dropout": "add_dropout",
    "batchnorm": "add_batchnorm",
}


def is_int(v: Any, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def expected(kind: str, a: dict, shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
    """(output shape, Go-Metal params, Keras params) or raise AssertionError when invalid."""
    image = len(shape) == 3
    if kind == "dense":
        assert is_int(a["units"], 1)
        u = a["units"]
        return (u,), math.prod(shape) * u + (u if a["use_bias"] else 0), None
    if kind in ("conv2d", "maxpool2d"):
        k = a["kernel_size"] if kind == "conv2d" else a["pool_size"]
        s = a["stride"] if kind == "conv2d" else (a["stride"] or a["pool_size"])
        p = a["padding"] if kind == "conv2d" else 0
        assert is_int(k, 1) and is_int(s, 1) and is_int(p, 0) and image
        h, w = shape[1] + 2 * p, shape[2] + 2 * p
        assert k <= h and k <= w
        out_hw = ((h - k) // s + 1, (w - k) // s + 1)
        if kind == "maxpool2d":
            return (shape[0], *out_hw), 0, None
        assert is_int(a["filters"], 1)
        f = a["filters"]
        return (f, *out_hw), (shape[0] * k * k + a["use_bias"]) * f, None
    if kind == "leaky_relu":
        assert math.isfinite(a["negative_slope"]) and a["negative_slope"] >= 0
    if kind == "elu":
        assert math.isfinite(a["alpha"])
    if kind == "dropout":
        assert 0 <= a["rate"] < 1
    if kind == "softmax":
        rank = len(shape) + 1
        axis = a["axis"] + rank if a["axis"] < 0 else a["axis"]
        assert 1 <= axis < rank
    if kind == "batchnorm":
        assert a["num_features"] is None or a["num_features"] == shape[0]
        go = 2 * shape[0] if a["affine"] else 0
        return shape, go, go + 2 * shape[0]
    return shape, 0, None


def keras_names(kind: str, a: dict, shape: tuple[int, ...], name: str) -> set[str]:
    names = {name}
    if kind == "dense" and len(shape) == 3:
        names.add(f"{name}_flatten")
    if kind == "conv2d" and a.get("padding"):
        names.add(f"{name}_pad")
    return names


def channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


class BuilderFuzzTest(tf.test.TestCase):
    @settings(SETTINGS, max_examples=15)  # each example compiles a model: the suite's costliest
    @given(
        shape=INPUT_SHAPES,
        chain=st.lists(st.tuples(LAYERS, NAMES), min_size=3, max_size=8),
    )
    def test_random_chains_build_or_reject_cleanly(self, shape, chain):
        valid_input = len(shape) in (2, 4) and all(d >= 1 for d in shape)
        if not valid_input:
            event("invalid input shape")
            with self.assertRaises(REJECT):
                ModelBuilder(shape)
            return
        b = ModelBuilder(shape)
        current = tuple(shape[1:])
        taken: set[str] = set()
        counts: dict[str, int] = {}
        go_total = keras_total = 0
        for (kind, args), name in chain:
            try:
                if name is not None:
                    assert isinstance(name, str) and VALID_NAME.fullmatch(name)
                out, go, keras_params = expected(kind, args, current)
                if name is None:
                    n = counts.get(kind, 0) + 1
                    while keras_names(kind, args, current, f"{kind}_{n}") & taken:
                        n += 1
                    final = f"{kind}_{n}"
                else:
                    assert not keras_names(kind, args, current, name) & taken
                    final = name
                ok = True
            except AssertionError:
                ok = False
            before = len(b)
            method = getattr(b, METHODS[kind])
            if not ok:
                with self.assertRaises(REJECT, msg=f"{kind} {args} name={name!r} on {current}"):
                    method(**args, name=name)
                self.assertEqual(len(b), before)  # a rejected add leaves the builder as it was
                continue
            try:
                method(**args, name=name)
            except Exception as err:  # report which call failed, and how
                self.fail(f"{kind} {args} name={name!r} on {current} raised {err!r}")
            self.assertEqual(b.layers[-1].name, final)
            taken |= keras_names(kind, args, current, final)
            counts[kind] = counts.get(kind, 0) + 1
            current = out
            go_total += go
            keras_total += go if keras_params is None else keras_params
        self.assertEqual(b.output_shape, current)
        self.assertEqual(b.total_parameters, go_total)
        event(f"layers built: {min(len(b), 4)}{'+' if len(b) >= 4 else ''}")
        if not len(b):
            with self.assertRaises(ValueError):
                b.compile(seed=0)
            return
        model = b.compile("float32", seed=0)
        self.assertEqual(model.count_params(), keras_total)
        self.assertEqual(tuple(model.output_shape[1:]), channels_last(current))
        self.assertEqual(len({layer.name for layer in model.layers}), len(model.layers))


# --- Malformed arrays fed to train_batch. ---

FEATURES, CLASSES = 5, 3


@st.composite
def arrays(draw, role: str, n: int = 4) -> Any:
    """An array-like for x or y: well-formed, or broken in one or more random ways."""
    broken = set(
        draw(
            st.one_of(
                st.just([]),
                st.lists(
                    st.sampled_from(["length", "shape", "dtype", "value", "form"]),
                    min_size=1,
                    max_size=2,
                ),
            )
        )
    )
    if "length" in broken:
        n = draw(st.sampled_from([0, n - 1, n + 1]))
    good_tail = (FEATURES,) if role == "x" else draw(st.sampled_from([(), (1,)]))
    tail = good_tail
    if "shape" in broken:
        bad_tails = [(FEATURES + 1,), (), (FEATURES, 1)] if role == "x" else [(CLASSES,), (1, 1)]
        tail = draw(st.sampled_from(bad_tails))
    good_dtypes = ["float32", "float64", "int32", "int64", "float16", "uint8"]
    if role == "x":
        good_dtypes.append("bool")
    dtype = draw(st.sampled_from(good_dtypes))
    if "dtype" in broken:
        dtype = draw(st.sampled_from(["str", "object", "complex64", "datetime64[s]"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if role == "x":
        values = rng.uniform(-3, 3, (n, *tail))
    else:
        values = rng.integers(0, CLASSES, (n, *tail)).astype(np.float64)
    if "value" in broken and values.size:
        specials = [np.nan, np.inf, -np.inf, 1e300]
        if role == "y":
            specials += [-1, CLASSES, 0.5, 1e9]
            dtype = "float64" if dtype in ("int32", "int64", "uint8") else dtype
        else:
            dtype = "float64"
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from(specials))
    with np.errstate(all="ignore"):
        arr = (
            values.astype(dtype)
            if not dtype.startswith("datetime")
            else values.astype(np.int64).astype(dtype)
        )
    if "form" in broken:
        form = draw(st.sampled_from(["none", "scalar", "ragged", "string"]))
        if form == "none":
            return None
        if form == "scalar":
            return arr.flat[0] if arr.size else 1.0
        if form == "string":
            return "1 2 3"
        return [[1.0] * FEATURES, [1.0]]
    return arr.tolist() if draw(st.booleans()) and dtype != "object" else arr


def valid_x(x: Any) -> bool:
    try:
        a = np.asarray(x)
    except ValueError:
        return False
    if a.dtype.kind not in "biuf" or a.ndim != 2 or a.shape[1:] != (FEATURES,) or not len(a):
        return False
    with np.errstate(all="ignore"):
        return bool(np.isfinite(a.astype(np.float32)).all())


def valid_y(y: Any, n: int) -> bool:
    try:
        a = np.asarray(y)
    except ValueError:
        return False
    if a.dtype.kind not in "biuf" or a.ndim not in (1, 2) or len(a) != n or not len(a):
        return False
    if a.ndim == 2 and a.shape[1] != 1:
        return False
    a = a.astype(np.float64)
    return bool(
        np.isfinite(a).all() and (a == np.round(a)).all() and a.min() >= 0 and a.max() < CLASSES
    )


class MalformedArrayFuzzTest(tf.test.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        b = ModelBuilder([4, FEATURES]).add_dense(6).add_relu().add_dense(CLASSES)
        cls.trainer = Trainer(
            b, TrainerConfig(precision="float32", jit_compile=False, seed=2, batch_size=4)
        )

    @SETTINGS
    @given(x=arrays("x"), y=arrays("y"))
    def test_train_batch_rejects_cleanly(self, x, y):
        t = self.trainer
        variables = [*t.model.variables, *t.optimizer.variables]
        before = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
        should_pass = valid_x(x) and valid_y(y, len(np.asarray(x)))
        event(f"well-formed: {should_pass}")
        try:
            result = t.train_batch(x, y)
        except REJECT as err:
            self.assertFalse(should_pass, f"valid input rejected: {err}")
            self.assertNotIn("\n", str(err))
            after = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
            for a, b in zip(before, after, strict=True):
                self.assertTrue(np.array_equal(a, b), "a rejected train_batch changed a variable")
            return
        except Exception as err:  # any other type is the failure
            self.fail(f"train_batch raised {type(err).__name__} (not ValueError/TypeError): {err}")
        self.assertTrue(should_pass, "malformed input was accepted")
        self.assertTrue(math.isfinite(result.loss))
