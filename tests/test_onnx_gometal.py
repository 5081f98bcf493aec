"""ONNX import of Go-Metal's own exports, and what any ONNX file declares against its weights.

The files are written here in the node layout of Go-Metal's ``checkpoints/onnx.go``: producer
``go-metal``, opset 13, attributes without their type (Go's proto3 encoder leaves a zero value
out), ``Dense`` as ``MatMul`` + ``Add`` with the weight stored ``[out, in]``, ``Dropout``'s
``ratio`` as an attribute, Swish as ``Sigmoid`` + ``Mul``. ONNX Runtime is the oracle: it runs
the same network written the way ONNX spells it (weights ``[in, out]``, typed attributes).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gometal_keras import ModelBuilder, Predictor, import_onnx
from gometal_keras.model.onnx_export import to_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import AttributeProto, TensorProto, external_data_helper, helper  # noqa: E402


def _attr(name: str, value, go: bool):
    """An attribute as Go-Metal writes it (untyped, zero left out) or as ONNX spells it."""
    if not go:
        return helper.make_attribute(name, value)
    attr = AttributeProto(name=name)
    if isinstance(value, list):
        attr.ints.extend(value)
    elif isinstance(value, float) and value != 0:
        attr.f = value
    elif isinstance(value, int) and value != 0:
        attr.i = value
    return attr


def _tensor(name: str, value: np.ndarray):
    """An initializer as Go-Metal writes it: ``float_data``, not ``raw_data``."""
    return helper.make_tensor(name, TensorProto.FLOAT, value.shape, value.ravel().tolist())


def gometal_onnx(input_shape, layers, go: bool = True):
    """Write `layers` ((kind, name, params, weights) tuples) as Go-Metal's exporter does.

    With ``go=False``, the same network in standard ONNX: what ONNX Runtime runs as the oracle.
    """
    nodes, inits, x = [], [], "input"

    def node(op, name, inputs, out, **attrs):
        made = helper.make_node(op, inputs, [out], name=name)
        made.attribute.extend(_attr(k, v, go) for k, v in attrs.items())
        nodes.append(made)
        return out

    for kind, name, p, w in layers:
        out = f"{name}_output"
        if kind == "dense":
            stored = np.ascontiguousarray(w[0].T) if go else w[0]  # Go-Metal: [out, in]
            inits.append(_tensor(f"{name}.weight", stored))
            x = node("MatMul", f"{name}_matmul_op", [x, f"{name}.weight"], f"{name}_matmul")
            if len(w) > 1:
                inits.append(_tensor(f"{name}.bias", w[1]))
                x = node("Add", f"{name}_add_bias", [x, f"{name}.bias"], out)
        elif kind == "conv2d":
            inits += [_tensor(f"{name}.weight", w[0]), _tensor(f"{name}.bias", w[1])]
            k, s, pad = p["kernel"], p["stride"], p["padding"]
            x = node("Conv", name, [x, f"{name}.weight", f"{name}.bias"], out,
                     kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4)
        elif kind == "batchnorm":
            names = [f"{name}.{t}" for t in ("weight", "bias", "running_mean", "running_var")]
            inits += [_tensor(n, v) for n, v in zip(names, w, strict=True)]
            x = node("BatchNormalization", name, [x, *names], out,
                     epsilon=p["eps"], momentum=p["momentum"])
        elif kind == "swish":
            sig = node("Sigmoid", f"{name}_sigmoid_op", [x], f"{name}_sigmoid")
            x = node("Mul", name, [x, sig], out)
        elif kind == "dropout":
            x = node("Dropout", name, [x], out, **({"ratio": p["rate"]} if go else {}))
        elif kind == "leaky_relu":
            x = node("LeakyRelu", name, [x], out, alpha=p["slope"])
        elif kind == "softmax":
            x = node("Softmax", name, [x], out, axis=p["axis"])
        else:
            x = node({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[kind], name, [x], out)
    rank = 2 if any(kind == "dense" for kind, *_ in layers) else len(input_shape)
    graph = helper.make_graph(
        nodes, "go-metal-model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [f"d{i}" for i in range(rank)])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7)
    model.producer_name = "go-metal" if go else "standard"
    return model


@st.composite
def gometal_chains(draw):
    """Go-Metal layer chains (its layer kinds and parameters) with float32 weights."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    image = draw(st.booleans())
    shape = [4, draw(st.integers(1, 3)), 5, 5] if image else [4, draw(st.integers(1, 6))]
    here, layers = list(shape[1:]), []

    def rand(*dims):
        return rng.normal(size=dims).astype(np.float32)

    for i in range(draw(st.integers(1, 5))):
        kinds = ["relu", "leaky_relu", "sigmoid", "tanh", "swish", "batchnorm", "softmax"]
        kinds += ["conv2d"] if len(here) == 3 else ["dense", "dense", "dropout"]
        kind, name, p, w = draw(st.sampled_from(kinds)), f"layer{i}", {}, []
        if kind == "dense":
            units = draw(st.integers(1, 5))
            w = [rand(here[0], units), *([rand(units)] if draw(st.booleans()) else [])]
            here = [units]
        elif kind == "conv2d":
            pad = draw(st.integers(0, 1))
            if min(here[1:]) + 2 * pad < 3:
                continue
            out, stride = draw(st.integers(1, 3)), draw(st.integers(1, 2))
            p = {"kernel": 3, "stride": stride, "padding": pad}
            w = [rand(out, here[0], 3, 3), rand(out)]  # OIHW, as Go-Metal keeps it
            side = [(d + 2 * pad - 3) // stride + 1 for d in here[1:]]
            here = [out, *side]
        elif kind == "batchnorm":
            p = {"eps": draw(st.sampled_from([1e-5, 1e-3])), "momentum": 0.1}
            w = [rand(here[0]), rand(here[0]), np.zeros(here[0], np.float32),
                 np.ones(here[0], np.float32)]  # Go-Metal writes mean 0 and variance 1
        elif kind == "leaky_relu":
            p = {"slope": draw(st.sampled_from([0.0, 0.01, 0.2]))}  # 0.0: left out by Go
        elif kind == "dropout":
            p = {"rate": draw(st.sampled_from([0.0, 0.2, 0.5]))}
        elif kind == "softmax":
            p = {"axis": draw(st.sampled_from([1, -1]))}
        layers.append((kind, name, p, w))
    return shape, layers


def _nhwc(x):
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def _save(proto, path):
    with open(path, "wb") as fh:  # as Go-Metal writes it, no checker run first
        fh.write(proto.SerializeToString())
    return str(path)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chain=gometal_chains())
def test_a_gometal_export_imports_to_what_onnx_runtime_computes(chain, tmp_path_factory):
    shape, layers = chain
    path = _save(gometal_onnx(shape, layers), tmp_path_factory.mktemp("gm") / "m.onnx")
    imported = import_onnx(path)
    assert [s.name for s in imported.layers] == [name for _, name, _, _ in layers]
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    oracle = ort.InferenceSession(
        gometal_onnx(shape, layers, go=False).SerializeToString(),
        providers=["CPUExecutionProvider"])
    want = oracle.run(None, {"input": x})[0]
    got = np.asarray(imported.compile("float32")(_nhwc(x), training=False))
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(_nhwc(want), got, rtol=1e-5, atol=1e-5 * scale)
    if x.ndim == 2:  # ONNX Runtime on the file itself reads it as Go-Metal means it too
        served = Predictor.load(path, batch_size=len(x)).predict(x)
        np.testing.assert_allclose(served, want, rtol=1e-5, atol=1e-5 * scale)
    dropout = {s.name: s.args["rate"] for s in imported.layers if s.kind == "dropout"}
    assert dropout == {n: p["rate"] for k, n, p, _ in layers if k == "dropout"}


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 3), st.integers(2, 12), st.integers(1, 64), st.booleans())
def test_a_matmul_fed_an_image_without_flatten_is_refused_naming_both_shapes(
    c, side, units, as_demo
):
    """Go-Metal's ``demo_model.onnx``: ``MatMul`` of a [32, 1, 28, 28] input, no Flatten, its
    weight [128, 28] (`as_demo`: ONNX Runtime runs that one, multiplying the W axis alone),
    or [128, 784]."""
    width = side if as_demo else c * side * side
    w = np.ones((width, units), np.float32)
    proto = gometal_onnx([32, c, side, side], [("dense", "hidden1", {}, [w, np.ones(units)])])
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = _save(proto, os.path.join(tmp, "demo_model.onnx"))
        with pytest.raises(ValueError) as refused:
            import_onnx(path)
        with pytest.raises(ValueError) as served:  # ONNX Runtime would multiply the W axis
            Predictor.load(path)
    said = str(refused.value)
    assert said == str(served.value)
    assert said == (
        f"ONNX node 'hidden1_matmul_op' (MatMul) gets a [N, {c}, {side}, {side}] input but its "
        f"weight 'hidden1.weight' is [{units}, {width}] (Go-Metal's [out, in] layout); "
        "expected a Flatten before it."
    )


def _mlp_declaring(width: int):
    """Our export of a 4 -> 3 -> 2 MLP whose graph then declares its input as [N, width]."""
    model = ModelBuilder([8, 4]).add_dense(3).add_relu().add_dense(2).compile("float32", seed=0)
    proto = to_onnx(model)
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value = width
    return proto


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 64).filter(lambda w: w != 4))
def test_a_declared_width_that_disagrees_with_the_first_weight_is_refused_at_import(width):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        onnx.save(_mlp_declaring(width), path)
        before = Path(path).read_bytes()
        with pytest.raises(ValueError) as refused:
            import_onnx(path)  # before: imported, then compile() failed with Keras' text
        assert Path(path).read_bytes() == before
    said = str(refused.value)
    assert f"gets a [N, {width}] input but its weight" in said and "[3, 4]" in said
    assert said.endswith(f"expected {width} inputs.") and "\n" not in said


_OUTSIDE = st.one_of(
    st.builds(lambda up, name: "../" * up + name, st.integers(1, 3),
              st.sampled_from(["secret", "weights.bin", "m.data"])),
    st.builds(lambda name: os.path.join("sub", "..", "..", name), st.just("secret")),
    st.sampled_from(["/etc/passwd", "/tmp/weights.bin", "ABSOLUTE"]),
)


@settings(max_examples=10, deadline=None)
@given(_OUTSIDE)
def test_external_data_outside_the_models_folder_is_refused_saying_so(location):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "a", "b", "c")
        os.makedirs(folder)
        secret = os.path.join(tmp, "a", "secret")
        np.ones(12, np.float32).tofile(secret)
        location = secret if location == "ABSOLUTE" else location
        proto = _mlp_declaring(4)
        weight = next(t for t in proto.graph.initializer if t.dims == [3, 4])
        external_data_helper.set_external_data(weight, location=location)
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        path = _save(proto, os.path.join(folder, "m.onnx"))
        with pytest.raises(ValueError) as refused:
            import_onnx(path)  # before: "a truncated or corrupted ONNX file"
    said = str(refused.value)
    assert f"in external data at {location!r}, outside the model's folder;" in said
    assert "\n" not in said


def test_external_data_inside_the_folder_still_imports(tmp_path):
    proto = _mlp_declaring(4)
    path = str(tmp_path / "m.onnx")
    onnx.save(proto, path, save_as_external_data=True, location="m.data", size_threshold=0)
    assert (tmp_path / "m.data").exists()
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"input": x})[0]
    got = np.asarray(import_onnx(path).compile("float32")(x))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    (tmp_path / "m.data").unlink()
    with pytest.raises(ValueError, match=r"in external data file 'm\.data', which is missing;"):
        import_onnx(path)
