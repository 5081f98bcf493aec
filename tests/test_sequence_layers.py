"""Tests for the sequence layers of gometal_keras.model: embedding, conv1d, layer norm,
multi-head self-attention and the sequence pool (builder, layer table, ONNX export)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras.core.config import TrainerConfig
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.model.onnx_export import to_onnx
from gometal_keras.training.trainer import Trainer

FEW = settings(max_examples=8, deadline=None)


def _np(x) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(x), np.float64)


def _randomise(model: keras.Model, seed: int) -> None:
    """Every weight random (biases, gamma and beta too), so no oracle term is left at 0/1."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(w.dtype) for w in model.get_weights()])


def conv1d_oracle(x, kernel, bias, stride, pad):
    """Cross-correlation, numpy: x (n, L, F), kernel (k, F, C)."""
    x = np.pad(x, ((0, 0), (pad, pad), (0, 0)))
    k = kernel.shape[0]
    steps = range(0, x.shape[1] - k + 1, stride)
    out = np.stack([np.einsum("nkf,kfc->nc", x[:, i : i + k], kernel) for i in steps], 1)
    return out + (0 if bias is None else bias)


def layernorm_oracle(x, axes, gamma, beta, eps):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def attention_oracle(x, weights, heads, use_bias):
    """Multi-head self-attention in numpy from Keras' weight layout (F, h, k) / (h, k, F)."""
    w = [_np(v) for v in weights]
    if use_bias:
        wq, bq, wk, bk, wv, bv, wo, bo = w
    else:
        (wq, wk, wv, wo), (bq, bk, bv, bo) = w, (0.0,) * 4
    q = np.einsum("nlf,fhk->nlhk", x, wq) + bq
    k = np.einsum("nlf,fhk->nlhk", x, wk) + bk
    v = np.einsum("nlf,fhk->nlhk", x, wv) + bv
    scores = np.einsum("nqhk,nshk->nhqs", q, k) / np.sqrt(wq.shape[-1])
    scores = np.exp(scores - scores.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    context = np.einsum("nhqs,nshk->nqhk", scores, v)
    return np.einsum("nqhk,hkf->nqf", context, wo) + bo


@FEW
@given(
    seq=st.integers(1, 9),
    vocab=st.integers(1, 40),
    dim=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_embedding_is_a_table_lookup(seq, vocab, dim, seed):
    model = ModelBuilder([3, seq]).add_embedding(vocab, dim, name="emb").compile("float32", seed)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (3, seq))
    table = _np(model.get_layer("emb").embeddings)
    np.testing.assert_array_equal(_np(model(ids.astype("float32"))), table[ids])
    assert table.shape == (vocab, dim)


@FEW
@given(
    seq=st.integers(1, 12),
    feats=st.integers(1, 4),
    filters=st.integers(1, 5),
    kernel=st.integers(1, 5),
    stride=st.integers(1, 3),
    pad=st.integers(0, 2),
    bias=st.booleans(),
)
def test_conv1d_matches_numpy_cross_correlation(seq, feats, filters, kernel, stride, pad, bias):
    builder = ModelBuilder([2, seq, feats])
    if kernel > seq + 2 * pad:
        with pytest.raises(ValueError, match=r"conv1d\): kernel_size .* longer than"):
            builder.add_conv1d(filters, kernel, stride, pad, bias)
        assert len(builder) == 0
        return
    model = builder.add_conv1d(filters, kernel, stride, pad, bias, "c").compile("float32", 0)
    _randomise(model, seq)
    x = np.random.default_rng(kernel).normal(size=(2, seq, feats))
    layer = model.get_layer("c")
    want = conv1d_oracle(x, _np(layer.kernel), _np(layer.bias) if bias else None, stride, pad)
    got = _np(model(x.astype("float32")))
    assert got.shape[1:] == builder.output_shape
    assert model.count_params() == builder.total_parameters
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@FEW
@given(
    shape=st.sampled_from([(7,), (5, 6), (3, 4, 5)]),
    trailing=st.integers(0, 3),
    eps=st.sampled_from([1e-5, 1e-3, 0.5]),
    affine=st.booleans(),
)
def test_layer_norm_matches_numpy(shape, trailing, eps, affine):
    trailing = min(trailing, len(shape))
    normalized = list(shape[len(shape) - trailing :]) if trailing else None
    builder = ModelBuilder([2, *shape]).add_layer_norm(normalized, eps, affine, name="ln")
    model = builder.compile("float32", 0)
    _randomise(model, 1)
    x = np.random.default_rng(2).normal(3.0, 2.0, (2, *shape))
    # the oracle works in Go-Metal layout: an image is NCHW, the model takes NHWC
    axes = tuple(range(len(shape) + 1 - (trailing or 1), len(shape) + 1))
    layer = model.get_layer("ln")
    norm_shape = shape[len(shape) - len(axes) :]
    if affine:
        go = (2, 0, 1)[-len(axes) :] if len(shape) == 3 and len(axes) == 3 else None
        gamma, beta = _np(layer.gamma), _np(layer.beta)
        if go is not None:  # Keras holds (H, W, C); the oracle wants (C, H, W)
            gamma, beta = gamma.transpose(go), beta.transpose(go)
        gamma, beta = gamma.reshape(norm_shape), beta.reshape(norm_shape)
    else:
        gamma, beta = 1.0, 0.0
    want = layernorm_oracle(x, axes, gamma, beta, eps)
    keras_x = x.transpose(0, 2, 3, 1) if len(shape) == 3 else x
    got = _np(model(keras_x.astype("float32")))
    got = got.transpose(0, 3, 1, 2) if len(shape) == 3 else got
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert model.count_params() == builder.total_parameters
    assert builder.total_parameters == (2 * int(np.prod(norm_shape)) if affine else 0)


@FEW
@given(
    seq=st.integers(1, 6),
    heads=st.integers(1, 4),
    head_dim=st.integers(1, 4),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_multi_head_attention_matches_numpy(seq, heads, head_dim, bias, seed):
    feats = heads * head_dim
    builder = ModelBuilder([2, seq, feats]).add_multi_head_attention(heads, feats, 0.0, bias, "a")
    model = builder.compile("float32", seed)
    x = np.random.default_rng(seed).normal(size=(2, seq, feats))
    want = attention_oracle(x, model.get_layer("a").attention.weights, heads, bias)
    np.testing.assert_allclose(_np(model(x.astype("float32"))), want, rtol=1e-4, atol=1e-4)
    assert builder.output_shape == (seq, feats)
    assert model.count_params() == builder.total_parameters == 4 * (feats + bias) * feats


def test_attention_kernels_are_drawn_apart_and_reproducibly():
    def kernels(seed):
        model = (
            ModelBuilder([2, 4, 8]).add_multi_head_attention(2, name="a").compile("float32", seed)
        )
        att = model.get_layer("a").attention
        return [_np(d.kernel) for d in (att.query_dense, att.key_dense, att.value_dense)]

    first, again = kernels(5), kernels(5)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], first[1]) and not np.allclose(first[1], first[2])


def test_global_pool_and_dense_over_a_sequence():
    b = ModelBuilder([2, 5, 3]).add_global_avg_pool1d(name="p").add_dense(4, name="d")
    assert [s.output_shape for s in b.layers] == [(3,), (4,)]
    model = b.compile("float32", 0)
    x = np.random.default_rng(0).normal(size=(2, 5, 3))
    layer = model.get_layer("d")
    want = x.mean(1) @ _np(layer.kernel) + _np(layer.bias)
    np.testing.assert_allclose(_np(model(x.astype("float32"))), want, rtol=1e-5, atol=1e-5)
    flat = ModelBuilder([2, 5, 3]).add_dense(4, name="d")  # a dense flattens a sequence
    assert flat.total_parameters == 15 * 4 + 4
    assert [layer.name for layer in flat.compile("float32").layers] == ["d_flatten", "d"]


@pytest.mark.parametrize(
    "shape, chain, message",
    [
        ([2, 5], lambda b: b.add_relu().add_embedding(9, 4), r"must be the first layer"),
        ([2, 5, 3], lambda b: b.add_embedding(9, 4), r"needs token ids \(seq_len,\)"),
        ([2, 5], lambda b: b.add_conv1d(4, 3), r"needs a sequence input"),
        ([2, 3, 8, 8], lambda b: b.add_multi_head_attention(1), r"needs a sequence input"),
        ([2, 5, 6], lambda b: b.add_multi_head_attention(4), r"num_heads 4 does not divide"),
        ([2, 5, 6], lambda b: b.add_multi_head_attention(2, 8), r"embed_dim is 8 but .* 6 f"),
        ([2, 5, 6], lambda b: b.add_layer_norm([5]), r"normalized_shape \[5\] is not the end"),
        ([2, 5, 6], lambda b: b.add_layer_norm([2, 5, 6]), r"is not the end"),
        ([2, 6], lambda b: b.add_global_avg_pool1d(), r"needs a sequence input"),
        ([2, 5, 6], lambda b: b.add_multi_head_attention(2, dropout_rate=1.0), r"dropout_rate"),
        ([2, 5, 6], lambda b: b.add_batchnorm(5), r"num_features is 5 .* feature count is 6"),
    ],
)
def test_build_time_errors_name_the_layer(shape, chain, message):
    builder = ModelBuilder(shape)
    before = len(builder)
    with pytest.raises(ValueError, match=message) as err:
        chain(builder)
    assert str(err.value).startswith("Layer ")
    assert len(builder) in (before, before + 1)  # the rejected layer is never added
    with pytest.raises(TypeError, match="normalized_shape must be None or a non-empty list"):
        ModelBuilder([2, 5, 6]).add_layer_norm(6)


def transformer(batch: int) -> ModelBuilder:
    return (
        ModelBuilder([batch, 6])
        .add_embedding(12, 8, "emb")
        .add_conv1d(8, 3, padding=1, name="conv")
        .add_layer_norm(name="ln")
        .add_multi_head_attention(2, name="mha")
        .add_global_avg_pool1d(name="pool")
        .add_dense(3, name="out")
    )


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_a_tiny_sequence_model_trains(precision):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 12, (64, 6)).astype("float32")
    y = (x[:, 0] % 3).astype("int32")  # the class is the first token mod 3
    config = TrainerConfig(
        batch_size=16, precision=precision, seed=3, learning_rate=0.01, jit_compile=False
    )
    trainer = Trainer(transformer(16), config)
    if precision.startswith("mixed"):
        ln = trainer.model.get_layer("ln")
        assert ln.compute_dtype == "bfloat16" and ln.variable_dtype == "float32"
    run = trainer.fit(x, y, epochs=4)
    assert np.all(np.isfinite(run.losses)) and run.losses[-1] < run.losses[0]
    assert np.isfinite(trainer.predict(x)).all()


def test_onnx_export_of_a_sequence_input_matches_onnx_runtime():
    ort = pytest.importorskip("onnxruntime")
    model = ModelBuilder([2, 5, 3]).add_tanh().add_dense(4).add_softmax().compile("float32", 1)
    x = np.random.default_rng(0).normal(size=(3, 5, 3)).astype("float32")
    session = ort.InferenceSession(to_onnx(model).SerializeToString())
    got = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, _np(model(x)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "chain, kind",
    [
        (lambda b: ModelBuilder([2, 5]).add_embedding(9, 4), "embedding"),
        (lambda b: b.add_conv1d(4, 3), "conv1d"),
        (lambda b: b.add_conv1d(4, 3, padding=1), "conv1d"),
        (lambda b: b.add_layer_norm(), "layernorm"),
        (lambda b: b.add_multi_head_attention(2), "multi_head_attention"),
        (lambda b: b.add_global_avg_pool1d(), "global_avg_pool1d"),
        (lambda b: b.add_batchnorm(), "batchnorm over a sequence"),
    ],
)
def test_onnx_export_refuses_the_sequence_layers_by_name(chain, kind):
    builder = chain(ModelBuilder([2, 5, 4]))
    model = builder.add_dense(2).compile("float32")
    name = builder.layers[0].name
    with pytest.raises(ValueError, match=rf"'{name}.*' \({kind}\): ONNX export does not support"):
        to_onnx(model)
