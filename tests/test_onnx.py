"""ONNX export checked by ONNX Runtime, and import back to the builder (ours and torch's files)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from helpers import load_example, seed_mlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gometal_keras import ModelBuilder, Trainer, TrainerConfig, import_onnx
from gometal_keras.gometal import ImportFromONNX
from gometal_keras.model.onnx_export import export_onnx, to_onnx

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _session(model_or_path):
    source = model_or_path if isinstance(model_or_path, str) else model_or_path.SerializeToString()
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"])


def every_activation() -> ModelBuilder:
    return (
        ModelBuilder([16, 2, 6, 6])
        .add_conv2d(4, 3, stride=2, padding=1)
        .add_batchnorm(affine=False)
        .add_leaky_relu(0.2)
        .add_elu(0.7)
        .add_softmax(axis=1)
        .add_dense(12)
        .add_swish()
        .add_tanh()
        .add_sigmoid()
        .add_relu()
        .add_dropout(0.1)
        .add_dense(3, use_bias=False)
        .add_softmax()
    )


MODELS = {
    "seed_mlp": seed_mlp,
    "digits_cnn_bn": lambda: load_example("digits_cnn").builder(batchnorm=True),
    "every_activation": every_activation,
}


def _data(shape, classes):
    if tuple(shape) == (8, 8, 1):  # the digits CNN: scikit-learn's bundled digits
        from sklearn.datasets import load_digits

        digits = load_digits()
        return (digits.images[:320, ..., None] / 16).astype(np.float32), digits.target[:320]
    rng = np.random.default_rng(0)
    x = rng.random((64, *shape), dtype=np.float32)
    return x, (x.reshape(64, -1).sum(1) * 7).astype(int) % classes


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_onnx_runtime_matches_trainer_predict(name, precision, tmp_path):
    builder = MODELS[name]()
    config = TrainerConfig(
        batch_size=builder.batch_size, precision=precision, jit_compile=False, seed=1,
        learning_rate=1e-2,
    )
    trainer = Trainer(builder, config)
    x, y = _data(trainer.model.input_shape[1:], builder.output_shape[-1])
    trainer.fit(x, y, epochs=2)  # trained logits; moves the BatchNorm statistics
    path = str(tmp_path / "model.onnx")
    trainer.export(path, format="onnx")
    proto = onnx.load(path)
    assert {t.data_type for t in proto.graph.initializer} == {onnx.TensorProto.FLOAT}
    session = _session(path)
    assert session.get_inputs()[0].shape[0] == "batch"  # dynamic batch
    for rows in (1, 21):  # batch sizes other than the trainer's
        got = session.run(None, {"input": x[:rows]})[0]
        want = trainer.predict(x[:rows])
        if precision == "float32":
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        else:
            # bfloat16 keeps ~3 significant digits per op: relative to the outputs' norm
            assert np.linalg.norm(got - want) <= 1e-2 * np.linalg.norm(want)
    # What the graph computes is float32 math on the trained weights, whatever the policy.
    copy = builder.compile("float32")
    copy.set_weights([np.asarray(w, np.float32) for w in trainer.model.get_weights()])
    np.testing.assert_allclose(
        session.run(None, {"input": x})[0], copy.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


@st.composite
def chains(draw):
    """Random builder chains over every layer kind, image or flat input."""
    image = draw(st.booleans())
    shape = [4, draw(st.integers(1, 3)), 6, 6] if image else [4, draw(st.integers(1, 6))]
    b = ModelBuilder(shape)
    acts = ["relu", "leaky_relu", "elu", "sigmoid", "tanh", "swish", "dropout", "batchnorm"]
    for _ in range(draw(st.integers(1, 5))):
        kinds = acts + (["conv2d", "maxpool2d", "softmax"] if len(b.output_shape) == 3 else [])
        kind = draw(st.sampled_from([*kinds, "dense", "softmax"]))
        if kind == "conv2d":
            pad = draw(st.integers(0, 1))
            if min(b.output_shape[1:]) + 2 * pad >= 3:  # a 3x3 window fits the input
                b.add_conv2d(draw(st.integers(1, 4)), 3, draw(st.integers(1, 2)), pad)
        elif kind == "maxpool2d" and min(b.output_shape[1:]) >= 2:
            b.add_maxpool2d(2, draw(st.sampled_from([None, 1])))
        elif kind == "dense":
            b.add_dense(draw(st.integers(1, 5)), draw(st.booleans()))
        elif kind == "softmax":
            b.add_softmax(draw(st.sampled_from([-1, 1])))
        elif kind == "leaky_relu":
            b.add_leaky_relu(draw(st.sampled_from([0.0, 0.01, 0.3])))
        elif kind == "elu":
            b.add_elu(draw(st.sampled_from([0.5, 1.0, 2.0])))
        elif kind == "dropout":
            b.add_dropout(draw(st.sampled_from([0.0, 0.5])))
        elif kind == "batchnorm":
            b.add_batchnorm(eps=draw(st.sampled_from([1e-5, 1e-3])), affine=draw(st.booleans()))
        elif kind != "maxpool2d":
            getattr(b, f"add_{kind}")()
    return b.add_dense(3) if draw(st.booleans()) else b  # images may stay images to the end


def _randomize(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # BN statistics, gamma and beta away from 0/1
        layer.set_weights(
            [rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()]
        )


def _canonical(spec):
    """The spelling ONNX keeps: the last axis as -1, a pool's stride equal to it as None."""
    args = dict(spec.args)
    if spec.kind == "softmax" and args["axis"] == len(spec.input_shape):
        args["axis"] = -1
    if spec.kind == "maxpool2d" and args["stride"] == args["pool_size"]:
        args["stride"] = None
    return args


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chains(), st.integers(0, 2**16))
def test_export_import_round_trip_is_exact_for_any_chain(builder, seed):
    model = builder.compile("float32", seed=seed)
    _randomize(model, seed)
    proto = to_onnx(model)
    x = np.random.default_rng(seed).normal(size=(5, *model.input_shape[1:])).astype(np.float32)
    want = np.asarray(model(x, training=False))
    # ONNX Runtime sums in its own order: float32 rounding is relative to the largest
    # value an output is made from, so the absolute bound scales with the output's range.
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(
        _session(proto).run(None, {"input": x})[0], want, rtol=1e-5, atol=1e-6 * scale
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, f"{tmp}/m.onnx")
        back = ImportFromONNX(path, batch_size=4)
    assert [(s.kind, s.name, dict(s.args)) for s in back.layers] == [
        (s.kind, s.name, _canonical(s)) for s in builder.layers
    ]
    again = back.compile("float32")
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(again(x, training=False)), want)


def test_import_of_a_torch_export_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10),
        nn.BatchNorm1d(10),
        nn.SiLU(),
        nn.Dropout(0.2),
        nn.LeakyReLU(0.2),
        nn.ELU(0.7),
        nn.Tanh(),
        nn.Linear(10, 3),
        nn.Sigmoid(),
        nn.Softmax(dim=1),
    )
    with torch.no_grad():
        net[5].running_mean.uniform_(-1, 1)
        net[5].running_var.uniform_(0.5, 2)
    net.eval()
    path = str(tmp_path / "torch.onnx")
    torch.onnx.export(
        net,
        (torch.zeros(2, 1, 8, 8),),
        path,
        input_names=["input"],
        dynamic_axes={"input": {0: "batch"}},
        dynamo=False,
    )
    imported = import_onnx(path, batch_size=7)
    kinds = [s.kind for s in imported.layers]
    assert kinds == [
        "conv2d",
        "relu",
        "maxpool2d",
        "dense",
        "batchnorm",
        "swish",
        "leaky_relu",
        "elu",
        "tanh",
        "dense",
        "sigmoid",
        "softmax",
    ]
    x = np.random.default_rng(1).random((7, 1, 8, 8), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = imported.compile().predict(x.transpose(0, 2, 3, 1), verbose=0)  # Keras: NHWC
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # a builder like any other: a trainer made from it starts from the file's weights
    config = TrainerConfig(batch_size=7, precision="float32", jit_compile=False, seed=0)
    tuned = Trainer(imported, config).predict(x.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(tuned, want, rtol=1e-5, atol=1e-6)


def test_unsupported_op_is_named_in_one_sentence(tmp_path):
    h = onnx.helper
    node = h.make_node("Abs", ["input"], ["output"], "abs_1")
    graph = h.make_graph(
        [node],
        "g",
        [h.make_tensor_value_info("input", 1, ["n", 3])],
        [h.make_tensor_value_info("output", 1, ["n", 3])],
    )
    path = str(tmp_path / "abs.onnx")
    onnx.save(h.make_model(graph), path)
    with pytest.raises(ValueError, match=r"^ONNX node 'abs_1' \(Abs\) cannot be mapped") as err:
        import_onnx(path)
    assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")


def test_non_onnx_and_truncated_files_are_one_sentence_each(tmp_path):
    model = ModelBuilder([4, 3]).add_dense(2).compile("float32")
    path = export_onnx(model, str(tmp_path / "m.onnx"))
    blob = Path(path).read_bytes()
    (tmp_path / "cut.onnx").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "notes.onnx").write_text("hello, not a model\n")
    with pytest.raises(ValueError, match=r"is a truncated or corrupted ONNX file; expected"):
        import_onnx(str(tmp_path / "cut.onnx"))
    with pytest.raises(ValueError, match=r"is not an ONNX model; expected a \.onnx file"):
        import_onnx(str(tmp_path / "notes.onnx"))


def test_a_layer_outside_the_table_is_named():
    import keras

    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(2, name="d"),
            keras.layers.UnitNormalization(name="ln"),
        ]
    )
    with pytest.raises(ValueError, match=r"^Layer 'ln' \(UnitNormalization\) is not one"):
        to_onnx(model)


def test_an_import_trains_at_the_trainers_batch_size(tmp_path):
    # The file's batch is dynamic; the imported builder's is left to the trainer (it was 32,
    # which a TrainerConfig(batch_size=16) refused without naming import_onnx's argument).
    model = ModelBuilder([32, 1, 6, 6]).add_conv2d(2, 3).add_relu().add_dense(3).compile()
    path = export_onnx(model, str(tmp_path / "m.onnx"))
    imported = import_onnx(path)
    assert imported.batch_size is None and "(None, 1, 6, 6)" in imported.summary()
    config = TrainerConfig(batch_size=16, precision="float32", jit_compile=False, seed=0)
    trainer = Trainer(imported, config)
    x = np.random.default_rng(0).random((32, 6, 6, 1), dtype=np.float32)
    np.testing.assert_allclose(trainer.predict(x), model.predict(x, verbose=0), atol=1e-6)
    assert trainer.arrange(x, np.arange(32) % 3).steps == 2  # batches of 16
    assert trainer.fit(x, np.arange(32) % 3).epochs_run == 1
    assert import_onnx(path, batch_size=16).batch_size == 16
    with pytest.raises(ValueError, match=r"^batch_size is 0; expected None or a positive int\.$"):
        import_onnx(path, batch_size=0)


def _declared(kind: str):
    """A whole exported MLP whose graph then declares something the importer cannot honour."""
    import onnx

    model = ModelBuilder([8, 4]).add_dense(3).add_relu().add_dense(2).compile("float32", seed=0)
    proto = to_onnx(model)
    graph = proto.graph
    if kind == "huge input":
        graph.input[0].type.tensor_type.shape.dim[1].dim_value = 2**40
    elif kind == "unknown width":
        graph.input[0].type.tensor_type.shape.dim[1].dim_param = "width"
    elif kind == "future opset":
        proto.opset_import[0].version = onnx.defs.onnx_opset_version() + 5
    elif kind == "second output":
        hidden = next(n for n in graph.node if n.op_type == "Relu").output[0]
        graph.output.append(onnx.helper.make_tensor_value_info(
            hidden, onnx.TensorProto.FLOAT, [None, 3]))
    elif kind == "no data input":
        init = onnx.numpy_helper.from_array(np.zeros((1, 4), np.float32), graph.input[0].name)
        graph.initializer.append(init)
    elif kind == "two data inputs":
        graph.input.append(onnx.helper.make_tensor_value_info(
            "extra", onnx.TensorProto.FLOAT, [None, 4]))
    return proto


@pytest.mark.parametrize("kind,said", [
    ("huge input", "declares the input"), ("unknown width", "declares the input"),
    ("future opset", "newer than the"), ("second output", "has 2 graph outputs"),
    ("no data input", "has 0 data inputs"), ("two data inputs", "has 2 data inputs")])
def test_what_a_file_declares_is_checked_at_import_in_one_sentence(kind, said, tmp_path):
    import onnx

    path = tmp_path / f"{kind.replace(' ', '_')}.onnx"
    onnx.save(_declared(kind), str(path))
    before = path.read_bytes()
    with pytest.raises(ValueError, match=said) as refused:
        import_onnx(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    assert path.read_bytes() == before  # nothing written
