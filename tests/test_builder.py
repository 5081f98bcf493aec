"""Tests for gometal_keras.model.builder.ModelBuilder and the layer table behind it."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import seed_mlp

from gometal_keras.model.builder import ModelBuilder


def small_cnn() -> ModelBuilder:
    return (ModelBuilder([4, 3, 12, 10]).add_conv2d(8, 3, stride=2, padding=1, name="c1")
            .add_batchnorm(8, name="bn1").add_relu(name="r1").add_maxpool2d(2, name="p1")
            .add_conv2d(6, 2, use_bias=False, name="c2").add_dense(5, name="fc")
            .add_softmax(name="sm"))


class ShapesAndParamsTest(tf.test.TestCase):
    def test_seed_mlp_params_match_keras(self):
        builder = seed_mlp()
        self.assertEqual(builder.total_parameters, 784 * 512 + 512 + 512 * 256 + 256 + 2570)
        self.assertEqual(builder.TotalParameters, builder.total_parameters)
        model = builder.Compile()
        self.assertEqual(model.count_params(), builder.total_parameters)
        self.assertEqual(model.input_shape, (None, 784))
        self.assertEqual(builder.output_shape, (10,))
        self.assertEqual([s.name for s in builder.layers][-1], "output")
        self.assertEqual(model.layers[-1].name, "output")
        self.assertEqual(model(np.zeros((3, 784), "float32")).shape, (3, 10))

    def test_cnn_shapes_params_and_forward_pass(self):
        builder = small_cnn()
        shapes = [s.output_shape for s in builder.layers]
        # conv: floor((12 + 2 - 3) / 2) + 1 = 6, floor((10 + 2 - 3) / 2) + 1 = 5
        self.assertEqual(shapes, [(8, 6, 5), (8, 6, 5), (8, 6, 5), (8, 3, 2), (6, 2, 1),
                                  (5,), (5,)])
        params = [s.params for s in builder.layers]
        self.assertEqual(params, [3 * 8 * 9 + 8, 16, 0, 0, 8 * 6 * 4, 12 * 5 + 5, 0])
        model = builder.compile()
        self.assertEqual(model.count_params(), builder.total_parameters + 2 * 8)
        self.assertEqual(model.input_shape, (None, 12, 10, 3))
        names = [layer.name for layer in model.layers]
        self.assertEqual(names, ["c1_pad", "c1", "bn1", "r1", "p1", "c2", "fc_flatten", "fc",
                                 "sm"])
        out = model(np.random.default_rng(0).random((4, 12, 10, 3), dtype="float32"))
        self.assertEqual(out.shape, (4, 5))
        self.assertAllClose(np.sum(out, axis=-1), np.ones(4), atol=1e-5)
        self.assertEqual(model.get_layer("c2").output.shape, (None, 2, 1, 6))

    def test_conv_and_pool_shapes_match_keras(self):
        for h, w, k, stride, pad in [(7, 9, 3, 2, 1), (5, 5, 5, 1, 0), (8, 6, 2, 3, 2)]:
            builder = ModelBuilder([1, 2, h, w]).add_conv2d(3, k, stride, pad).add_maxpool2d(1, 2)
            model = builder.compile()
            c, oh, ow = builder.output_shape
            self.assertEqual(model.output_shape, (None, oh, ow, c), msg=str((h, w, k, stride)))
            self.assertEqual(model.count_params(), builder.total_parameters)

    def test_batchnorm_affine_false_and_2d(self):
        builder = ModelBuilder([2, 6]).add_batchnorm(affine=False).add_batchnorm(6)
        self.assertEqual([s.params for s in builder.layers], [0, 12])
        self.assertEqual(builder.compile().count_params(), 12 + 2 * 6 * 2)

    def test_batchnorm_momentum_and_eps_conversion(self):
        model = ModelBuilder([2, 3, 4, 4]).add_batchnorm(eps=1e-3, momentum=0.25).compile()
        bn = model.layers[-1]
        self.assertAllClose(bn.momentum, 0.75)
        self.assertAllClose(bn.epsilon, 1e-3)
        self.assertIn(bn.axis, (-1, 3, [3], [-1]))

    def test_softmax_axis_mapping(self):
        for axis, keras_axis in [(1, 3), (2, 1), (3, 2), (-1, 2), (-2, 1), (-3, 3)]:
            layer = ModelBuilder([2, 3, 4, 5]).add_softmax(axis).compile().layers[-1]
            self.assertEqual(layer.axis, keras_axis, msg=f"axis {axis}")
        self.assertEqual(ModelBuilder([2, 5]).add_softmax(1).compile().layers[-1].axis, 1)
        x = np.random.default_rng(1).random((2, 4, 5, 3), dtype="float32")
        out = ModelBuilder([2, 3, 4, 5]).add_softmax(1).compile()(x)
        self.assertAllClose(np.sum(out, axis=3), np.ones((2, 4, 5)), atol=1e-5)

    def test_activation_mapping(self):
        builder = (ModelBuilder([2, 4]).add_leaky_relu(0.2).add_elu(0.5).add_sigmoid()
                   .add_tanh().add_swish())
        model = builder.compile()
        self.assertAllClose(model.get_layer("leaky_relu_1").negative_slope, 0.2)
        self.assertAllClose(model.get_layer("elu_1").alpha, 0.5)
        x = np.array([[-1.0, 0.0, 1.0, 2.0]], "float32")
        y = x.copy()
        y = np.where(y > 0, y, 0.2 * y)
        y = np.where(y > 0, y, 0.5 * (np.exp(y) - 1))
        y = np.tanh(1 / (1 + np.exp(-y)))
        y = y / (1 + np.exp(-y))
        self.assertAllClose(model(x), y, atol=1e-5)

    def test_summary_and_repr(self):
        text = seed_mlp().summary()
        self.assertIn("(64, 512)", text)
        self.assertIn("401,920", text)
        self.assertTrue(text.splitlines()[-1].endswith("535,818"))
        self.assertEqual(len(text.splitlines()), 7 + 5)
        self.assertIn("total_parameters=535818", repr(seed_mlp()))
        self.assertEqual(len(seed_mlp()), 7)


class GoAliasTest(tf.test.TestCase):
    def test_aliases_are_the_same_functions(self):
        for go, py in [("AddDense", "add_dense"), ("AddConv2D", "add_conv2d"),
                       ("AddMaxPool2D", "add_maxpool2d"), ("AddReLU", "add_relu"),
                       ("AddLeakyReLU", "add_leaky_relu"), ("AddELU", "add_elu"),
                       ("AddSigmoid", "add_sigmoid"), ("AddTanh", "add_tanh"),
                       ("AddSwish", "add_swish"), ("AddSoftmax", "add_softmax"),
                       ("AddDropout", "add_dropout"), ("AddBatchNorm", "add_batchnorm"),
                       ("Compile", "compile"), ("Summary", "summary")]:
            self.assertIs(getattr(ModelBuilder, go), getattr(ModelBuilder, py), msg=go)

    def test_seed_chain_equals_python_chain(self):
        py = (ModelBuilder([64, 784]).add_dense(512, name="dense1").add_relu("relu1")
              .add_dropout(0.2, "dropout1").add_dense(256, name="dense2").add_relu("relu2")
              .add_dropout(0.2, "dropout2").add_dense(10, name="output"))
        self.assertEqual(seed_mlp().Summary(), py.summary())
        self.assertEqual(seed_mlp().layers, py.layers)
        self.assertEqual(seed_mlp().Compile().count_params(), py.compile().count_params())

    def test_compile_returns_a_new_model_each_call(self):
        builder = seed_mlp()
        first, second = builder.compile(), builder.compile()
        self.assertIsNot(first, second)
        self.assertIsNot(first.layers[0], second.layers[0])
        self.assertTrue(first.built and second.built)


class AutoNameTest(tf.test.TestCase):
    def test_auto_names_count_per_kind(self):
        builder = ModelBuilder([2, 8]).add_dense(4).add_relu().add_dense(3).add_relu()
        self.assertEqual([s.name for s in builder.layers],
                         ["dense_1", "relu_1", "dense_2", "relu_2"])

    def test_auto_names_skip_taken_names(self):
        builder = ModelBuilder([2, 1, 8, 8]).add_relu(name="dense_1").add_relu(name="conv2d_1_pad")
        builder.add_conv2d(2, 3, padding=1).add_dense(4)
        self.assertEqual([s.name for s in builder.layers][2:], ["conv2d_2", "dense_2"])
        self.assertEqual(len(builder.compile().layers), 6)

    def test_input_name_never_collides(self):
        model = ModelBuilder([2, 4]).add_relu(name="input").compile()
        self.assertEqual(model(np.ones((1, 4), "float32")).shape, (1, 4))


def FLAT(b: ModelBuilder) -> None:
    b.add_dense(3)


def AUTO(b: ModelBuilder) -> None:
    b.add_relu()


BAD_ADDS = [
    (lambda b: b.add_dense(0), ValueError, r"Layer 2 \(dense\): units must be an int >= 1, got 0"),
    (lambda b: b.add_dense(-3, name="fc"), ValueError, r"Layer 'fc' \(dense\): units"),
    (lambda b: b.add_dense(2.5), TypeError, "units must be an int"),
    (lambda b: b.add_dense(True), TypeError, "units must be an int"),
    (lambda b: b.add_dense(4, use_bias=1), TypeError, "use_bias must be a bool"),
    (lambda b: b.add_conv2d(0, 3), ValueError, "filters must be an int >= 1"),
    (lambda b: b.add_conv2d(4, 3, stride=0), ValueError, "stride must be an int >= 1"),
    (lambda b: b.add_conv2d(4, 3, padding=-1), ValueError, "padding must be an int >= 0"),
    (lambda b: b.add_conv2d(4, 9), ValueError, r"kernel_size 9 is larger than its 4x4 input"),
    (lambda b: b.add_conv2d(4, 7, padding=1), ValueError, "larger than its 6x6 padded input"),
    (lambda b: b.add_maxpool2d(5), ValueError, "pool_size 5 is larger than its 4x4 input"),
    (lambda b: b.add_maxpool2d(2, stride=0), ValueError, "stride must be an int >= 1"),
    (lambda b: b.add_conv2d(4, 1), ValueError, r"Layer 3 \(conv2d\): needs an image", FLAT),
    (lambda b: b.add_maxpool2d(1), ValueError, "needs an image input", FLAT),
    (lambda b: b.add_batchnorm(4), ValueError, "input's feature count is 3; expected 3", FLAT),
    (lambda b: b.add_dropout(1.0), ValueError, r"rate must be a finite number in \[0.0, 1.0\)"),
    (lambda b: b.add_dropout(-0.1), ValueError, "rate must be"),
    (lambda b: b.add_dropout("0.2"), TypeError, "rate must be a number"),
    (lambda b: b.add_leaky_relu(-0.1), ValueError, "negative_slope must be"),
    (lambda b: b.add_elu(float("inf")), ValueError, "alpha must be a finite number"),
    (lambda b: b.add_softmax(0), ValueError, "axis 0 is the batch axis"),
    (lambda b: b.add_softmax(4), ValueError, "axis 4 is out of range"),
    (lambda b: b.add_softmax(-4), ValueError, "out of range|batch axis"),
    (lambda b: b.add_softmax(1.0), TypeError, "axis must be an int"),
    (lambda b: b.add_batchnorm(3), ValueError, "num_features is 3 but its input's channel count"),
    (lambda b: b.add_batchnorm(eps=-1e-5), ValueError, "eps must be a finite number"),
    (lambda b: b.add_batchnorm(eps=float("nan")), ValueError, "eps must be a finite number"),
    (lambda b: b.add_batchnorm(momentum=1.5), ValueError, r"momentum must be .* \[0.0, 1.0\]"),
    (lambda b: b.add_batchnorm(affine="yes"), TypeError, "affine must be a bool"),
    (lambda b: b.add_relu(name="first"), ValueError, "'first' is already used"),
    (lambda b: b.add_relu(name="relu_2"), ValueError, "'relu_2' is already used", AUTO),
    (lambda b: b.add_relu(name=""), ValueError, "name must be non-empty"),
    (lambda b: b.add_relu(name="a/b"), ValueError, "without '/'"),
    (lambda b: b.add_relu(name=3), TypeError, "name must be a str"),
]


class ValidationTest(tf.test.TestCase):
    def test_rejected_adds_leave_builder_unchanged(self):
        for i, (add, error, pattern, *prep) in enumerate(BAD_ADDS):
            builder = ModelBuilder([2, 2, 4, 4]).add_relu(name="first")
            for step in prep:
                step(builder)
            with self.assertRaisesRegex(error, pattern, msg=f"case {i}"):
                add(builder)
            before = builder.layers
            with pytest.raises(error):
                add(builder)
            self.assertEqual(builder.layers, before, msg=f"case {i}")

    def test_dense_flatten_name_collision(self):
        builder = ModelBuilder([2, 1, 4, 4]).add_relu(name="fc_flatten")
        with self.assertRaisesRegex(ValueError, "'fc_flatten' is already used"):
            builder.add_dense(3, name="fc")
        self.assertEqual(len(builder), 1)

    def test_bad_input_shapes(self):
        for shape, error in [([64], ValueError), ([2, 3, 4, 5, 6], ValueError),
                             ([0, 4], ValueError), ([2, -1], ValueError), ([2, True], ValueError),
                             ([2, 4.0], ValueError), ("64,784", TypeError), (None, TypeError)]:
            with self.assertRaisesRegex(error, "input_shape must be", msg=str(shape)):
                ModelBuilder(shape)
        builder = ModelBuilder((np.int64(8), 3, 5, 5))
        self.assertEqual((builder.batch_size, builder.input_shape), (8, (3, 5, 5)))

    def test_compile_errors(self):
        with self.assertRaisesRegex(ValueError, "Cannot compile an empty model"):
            ModelBuilder([2, 4]).compile()
        with self.assertRaisesRegex(ValueError, "Unknown dtype_policy 'float33'"):
            ModelBuilder([2, 4]).add_relu().compile("float33")
        with self.assertRaisesRegex(TypeError, "dtype_policy must be"):
            ModelBuilder([2, 4]).add_relu().compile(32)


class DTypePolicyTest(tf.test.TestCase):
    def test_mixed_float16_hidden_fp16_last_fp32(self):
        global_before = keras.config.dtype_policy().name
        builder = (ModelBuilder([4, 1, 6, 6]).add_conv2d(2, 3).add_batchnorm().add_relu()
                   .add_dense(8).add_dense(3).add_softmax())
        model = builder.compile("mixed_float16")
        self.assertEqual(keras.config.dtype_policy().name, global_before)
        hidden = model.get_layer("dense_1")
        self.assertEqual(hidden.compute_dtype, "float16")
        self.assertEqual(hidden.variable_dtype, "float32")
        self.assertEqual(hidden.kernel.dtype, "float32")
        self.assertEqual(model.get_layer("conv2d_1").compute_dtype, "float16")
        self.assertEqual(model.layers[-1].name, "softmax_1")
        self.assertEqual(model.layers[-1].compute_dtype, "float32")
        out = model(np.ones((2, 6, 6, 1), "float32"))
        self.assertEqual(out.dtype, tf.float32)
        self.assertEqual(model.count_params(), builder.total_parameters + 2 * 2)

    def test_policy_objects_bfloat16_and_default(self):
        model = ModelBuilder([2, 4]).add_dense(3).add_dense(2).compile(
            keras.DTypePolicy("mixed_bfloat16"))
        self.assertEqual(model.layers[0].compute_dtype, "bfloat16")
        self.assertEqual(model.layers[-1].compute_dtype, "float32")
        pure = ModelBuilder([2, 4]).add_dense(3).add_dense(2).compile("bfloat16")
        self.assertEqual(pure.layers[-1].compute_dtype, "bfloat16")
        default = ModelBuilder([2, 4]).add_dense(2).compile()
        self.assertEqual(default.layers[-1].dtype_policy.name, keras.config.dtype_policy().name)
        self.assertEqual(keras.config.dtype_policy().name, "float32")


if __name__ == "__main__":
    tf.test.main()
