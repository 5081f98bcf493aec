"""ONNX export: a builder-made Keras model as a float32, inference-mode ONNX graph.

The graph is written layer by layer with ``onnx.helper``, as Go-Metal's exporter does, from
the Keras layers the builder's layer table makes (``gometal_keras.model.layers``). It reads only
the layers' weights, so it works under every Keras backend (TensorFlow, JAX, PyTorch) and
whatever the training precision: every weight, moving statistic and op is float32.

The graph takes what `Trainer.predict` takes, channels-last (``(batch, H, W, C)`` or
``(batch, features)``) with a dynamic batch dimension, transposes images once to NCHW and
runs ONNX's NCHW ops from there. Dropout is an inference-mode ``Dropout`` node (identity),
BatchNorm uses its moving statistics. Opset `OPSET`.

A sequence input ``(batch, seq_len, features)`` exports when its layers are ones above (a
dense layer flattens it as Keras does). The sequence layers (`NOT_YET`: embedding, conv1d,
layer norm, multi-head attention, the sequence pool) and a batch norm over a sequence are
refused in one sentence naming the layer, never written wrong.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

#: The ONNX opset the exporter writes (ONNX Runtime 1.16+ runs it).
OPSET = 17
#: The graph's input and output names.
INPUT, OUTPUT = "input", "output"
#: What to install when onnx is missing.
INSTALL_HINT = "pip install 'gometal_keras[onnx]'"


#: Keras layers the builder makes that the exporter does not write yet, by builder kind.
NOT_YET = {
    "Embedding": "embedding",
    "Conv1D": "conv1d",
    "ZeroPadding1D": "conv1d",
    "LayerNormalization": "layernorm",
    "SelfAttention": "multi_head_attention",
    "GlobalAveragePooling1D": "global_avg_pool1d",
}


def require_onnx() -> Any:
    """Return the ``onnx`` module, or raise ImportError naming the ``onnx`` extra.

    Example:
        >>> require_onnx().__name__
        'onnx'
    """
    try:
        import onnx
    except ImportError:
        raise ImportError(f"ONNX support needs onnx; install it with {INSTALL_HINT}.") from None
    return onnx


def _f32(variable: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(variable), dtype=np.float32)


class _Graph:
    """Nodes and float32 initializers of one chain, each node feeding the next."""

    def __init__(self, onnx: Any) -> None:
        self.onnx, self.nodes, self.weights, self.tensor = onnx, [], [], INPUT

    def add(self, op: str, name: str, *weights: tuple[str, np.ndarray], **attrs: Any) -> None:
        inputs = [self.tensor]
        for suffix, value in weights:
            inputs.append(f"{name}.{suffix}")
            self.weights.append(self.onnx.numpy_helper.from_array(value, inputs[-1]))
        self.tensor = f"{name}:0"
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [self.tensor], name, **attrs))


def _dense(g: _Graph, layer: Any, image: tuple[int, ...] | None) -> None:
    kernel = _f32(layer.kernel)
    if image is not None:  # Keras flattened (H, W, C); the graph flattens NCHW as (C, H, W)
        h, w, c = image
        kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
    weights = [("weight", np.ascontiguousarray(kernel.T))]
    weights += [("bias", _f32(layer.bias))] if layer.use_bias else []
    g.add("Gemm", layer.name, *weights, transB=1)


def _conv(g: _Graph, layer: Any, pad: int) -> None:
    kernel = np.ascontiguousarray(_f32(layer.kernel).transpose(3, 2, 0, 1))
    weights = [("weight", kernel)] + ([("bias", _f32(layer.bias))] if layer.use_bias else [])
    g.add(
        "Conv",
        layer.name,
        *weights,
        kernel_shape=list(kernel.shape[2:]),
        strides=list(layer.strides),
        pads=[pad] * 4,
    )


def _batchnorm(g: _Graph, layer: Any) -> None:
    n = layer.moving_mean.shape[0]
    scale = _f32(layer.gamma) if layer.scale else np.ones(n, np.float32)
    shift = _f32(layer.beta) if layer.center else np.zeros(n, np.float32)
    stats = [("scale", scale), ("bias", shift)]
    stats += [("mean", _f32(layer.moving_mean)), ("var", _f32(layer.moving_variance))]
    g.add(
        "BatchNormalization",
        layer.name,
        *stats,
        epsilon=float(layer.epsilon),
        momentum=float(layer.momentum),
    )


def _activation(g: _Graph, layer: Any) -> None:
    fn = getattr(layer.activation, "__name__", "")
    if fn in ("swish", "silu"):  # x * sigmoid(x), as torch.onnx writes SiLU
        x = g.tensor
        g.add("Sigmoid", f"{layer.name}.sigmoid")
        g.nodes.append(
            g.onnx.helper.make_node("Mul", [x, g.tensor], [f"{layer.name}:0"], layer.name)
        )
        g.tensor = f"{layer.name}:0"
    elif fn in ("sigmoid", "tanh", "relu"):
        g.add(fn.capitalize(), layer.name)
    else:
        raise ValueError(
            f"Layer {layer.name!r} uses the activation {fn!r}, which the ONNX exporter does "
            "not map; expected relu, sigmoid, tanh or swish."
        )


_SIMPLE: dict[str, Callable[[_Graph, Any], None]] = {
    "ReLU": lambda g, layer: g.add("Relu", layer.name),
    "LeakyReLU": lambda g, layer: g.add("LeakyRelu", layer.name, alpha=float(layer.negative_slope)),
    "ELU": lambda g, layer: g.add("Elu", layer.name, alpha=float(layer.alpha)),
    "Activation": _activation,
    "BatchNormalization": _batchnorm,
    "Dropout": lambda g, layer: g.add(
        "Dropout", layer.name, ("ratio", np.array(layer.rate, np.float32))
    ),
    "MaxPooling2D": lambda g, layer: g.add(
        "MaxPool", layer.name, kernel_shape=list(layer.pool_size), strides=list(layer.strides)
    ),
    "Flatten": lambda g, layer: g.add("Flatten", layer.name, axis=1),
}


def to_onnx(model: keras.Model) -> Any:
    """Return `model` (built by `ModelBuilder.compile`) as a float32 ``onnx.ModelProto``.

    Args:
        model: A ``keras.Sequential`` of the layers the builder makes, any dtype policy.

    Returns:
        A checked ONNX model: input ``"input"`` with a dynamic batch, output ``"output"``.

    Raises:
        ValueError: A layer the layer table does not make (the message names it).

    Example:
        >>> from gometal_keras import ModelBuilder
        >>> m = ModelBuilder([4, 3]).add_dense(2).add_softmax().compile("mixed_bfloat16")
        >>> [node.op_type for node in to_onnx(m).graph.node]
        ['Gemm', 'Softmax']
    """
    onnx = require_onnx()
    if not isinstance(model, keras.Sequential):
        raise ValueError(
            f"The ONNX exporter takes a keras.Sequential from ModelBuilder.compile, got a "
            f"{type(model).__name__}; expected a builder-made model."
        )
    sample = tuple(model.input_shape[1:])
    g, image, pad, flat = _Graph(onnx), len(sample) == 3, 0, None
    if image:
        g.add("Transpose", "to_nchw", perm=[0, 3, 1, 2])
    for layer in model.layers:
        kind = type(layer).__name__
        sequence_norm = kind == "BatchNormalization" and len(layer.input.shape) == 3
        if kind in NOT_YET or sequence_norm:
            what = NOT_YET.get(kind, "batchnorm over a sequence")
            raise ValueError(
                f"Layer {layer.name!r} ({what}): ONNX export does not support this layer yet; "
                "expected dense, conv2d, pooling, batch norm, dropout and activation layers."
            )
        if kind == "ZeroPadding2D" and len({*np.ravel(layer.padding)}) == 1:
            pad = int(np.ravel(layer.padding)[0])
            continue
        if kind == "Conv2D" and layer.padding == "valid" and layer.dilation_rate == (1, 1):
            _conv(g, layer, pad)
        elif kind == "Dense":
            _dense(g, layer, flat if g.nodes and g.nodes[-1].op_type == "Flatten" else None)
        elif kind == "Softmax":
            axis = int(np.ravel(layer.axis)[0])
            rank = len(layer.output.shape)  # channels-last axis -> NCHW axis
            nchw = {1: 2, 2: 3, 3: 1}.get(axis % rank, axis % rank) if rank == 4 else axis
            g.add("Softmax", layer.name, axis=int(nchw))
        elif kind in _SIMPLE and (kind != "Flatten" or len(layer.input.shape) in (3, 4)):
            if kind == "Flatten":  # a sequence flattens alike in Keras and ONNX
                flat = tuple(layer.input.shape[1:]) if len(layer.input.shape) == 4 else None
            _SIMPLE[kind](g, layer)
        else:
            raise ValueError(
                f"Layer {layer.name!r} ({kind}) is not one the builder makes, so the ONNX "
                "exporter cannot map it; expected the layers of gometal_keras.model.layers."
            )
        pad = 0
    out_sample = tuple(model.output_shape[1:])
    if len(out_sample) == 3:
        g.add("Transpose", "to_nhwc", perm=[0, 2, 3, 1])
    g.nodes[-1].output[0] = OUTPUT
    helper, f32 = onnx.helper, onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        g.nodes,
        model.name,
        [helper.make_tensor_value_info(INPUT, f32, ["batch", *sample])],
        [helper.make_tensor_value_info(OUTPUT, f32, ["batch", *out_sample])],
        g.weights,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gometal_keras"
    )
    proto.ir_version = 8  # what ONNX Runtime 1.16+ reads
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model: keras.Model, path: str | os.PathLike[str]) -> str:
    """Write `to_onnx(model)` to `path` (a ``.onnx`` file) and return the path.

    Example:
        >>> import os, tempfile
        >>> from gometal_keras import ModelBuilder
        >>> m = ModelBuilder([4, 3]).add_dense(2).compile("float32")
        >>> os.path.getsize(export_onnx(m, os.path.join(tempfile.mkdtemp(), "m.onnx"))) > 0
        True
    """
    onnx = require_onnx()
    path = os.fspath(path)
    onnx.save(to_onnx(model), path)
    return path
