"""ONNX import: an ONNX chain of builder layers back to a `ModelBuilder` and its weights.

Go-Metal's ``ImportFromONNX``. It reads graphs that are one chain of the nodes the builder's
layers become: ``Conv``, ``BatchNormalization``, ``MaxPool``, ``Gemm`` (or ``MatMul`` +
``Add``) after an optional ``Flatten``/``Reshape``, ``Relu``, ``LeakyRelu``, ``Elu``,
``Sigmoid``, ``Tanh``, ``Sigmoid`` + ``Mul`` (swish), ``Softmax``, ``Dropout`` and
``Identity``, NCHW inside. Our own export (channels-last input, a ``Transpose`` to NCHW) and
a ``torch.onnx.export`` of an equivalent ``nn.Sequential`` (NCHW input) both qualify. Weights
are converted to the Keras layout: the imported model takes channels-last samples, as every
builder model does. A BatchNorm whose scale is all ones and bias all zeros reads back as
``affine=False``; the outputs are the same either way.

Go-Metal's own exports (``producer_name`` ``"go-metal"``, its ``checkpoints/onnx.go``) are read
as Go-Metal means them, where that differs from the ONNX text: its attributes carry no type
(each is typed from the operator's schema, a missing value being Go's zero), its ``Dropout``
keeps ``ratio`` as an attribute (moved to the input opset 12 wants), its ``MatMul`` weights are
stored ``[out, in]`` (read back transposed, as Go-Metal's importer does) and its BatchNorm
``momentum`` is PyTorch's. Every weight is checked against the width that reaches it: a
``MatMul`` fed an image with no ``Flatten`` (Go-Metal's sample ``demo_model.onnx``), or a
declared input that disagrees with the first weight, is refused in one sentence naming the
node and both shapes, never read into a wrong model.
"""

from __future__ import annotations

import math
import os
from typing import Any

import keras
import numpy as np

from gometal_keras.core.integers import is_int
from gometal_keras.model.builder import ModelBuilder, PolicyLike
from gometal_keras.model.onnx_export import require_onnx

#: Node types the importer maps, for its messages.
MAPPED = (
    "Conv, BatchNormalization, MaxPool, Flatten, Gemm, MatMul, Relu, LeakyRelu, Elu, "
    "Sigmoid, Tanh, Mul (swish), Softmax, Dropout, Identity"
)


class ImportedModel(ModelBuilder):
    """What `import_onnx` returns: a `ModelBuilder` that carries the file's weights.

    It is a builder in every way (``layers``, ``summary()``, more ``add_*`` calls, a `Trainer`
    takes it); `compile` loads the imported weights into the layers they belong to, so a
    trainer made from it starts from them. Layers added afterwards start fresh.

    An ONNX file keeps its batch dimension dynamic, so unless `import_onnx` was given a
    ``batch_size`` the model's batch is left open (``batch_size`` None, shown as ``None`` in
    ``summary()``): a `Trainer` takes it at its own ``TrainerConfig.batch_size``.

    Attributes:
        weights: Keras layer name -> that layer's weights in ``get_weights()`` order.
    """

    def __init__(self, input_shape: list[int | None]) -> None:
        batch = input_shape[0]
        super().__init__([1 if batch is None else batch, *input_shape[1:]])
        self._batch_size = batch  # None: the trainer's batch size
        self.weights: dict[str, list[np.ndarray]] = {}

    @property
    def batch_size(self) -> int | None:  # type: ignore[override]
        """The batch size `import_onnx` was given, or None: the trainer's."""
        return self._batch_size

    def compile(self, dtype_policy: PolicyLike = None, seed: int | None = None) -> keras.Sequential:
        """`ModelBuilder.compile`, then the imported weights are loaded.

        Example:
            >>> import tempfile, os
            >>> from gometal_keras.model.onnx_export import export_onnx
            >>> m = ModelBuilder([4, 3]).add_dense(2, name="fc").compile("float32")
            >>> path = export_onnx(m, os.path.join(tempfile.mkdtemp(), "m.onnx"))
            >>> back = import_onnx(path).compile()
            >>> all((a == b).all() for a, b in zip(back.get_weights(), m.get_weights()))
            True
        """
        model = super().compile(dtype_policy, seed)
        for name, values in self.weights.items():
            model.get_layer(name).set_weights(values)
        return model

    Compile = compile


def read_onnx(path: str | os.PathLike[str]) -> Any:
    """Load and check an ONNX file; one ValueError sentence when it is not a usable one.

    External data must lie in files inside the model's folder; a Go-Metal export's untyped
    attributes are typed first (see the module docstring), so the checker reads them.

    Example:
        >>> read_onnx(__file__)
        Traceback (most recent call last):
        ...
        ValueError: ... is not an ONNX model; expected a .onnx file such as Trainer.export writes.
    """
    onnx = require_onnx()
    from onnx import external_data_helper

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No ONNX file at {path!r}.")
    with open(path, "rb") as fh:
        head = fh.read(1)
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception:  # protobuf's DecodeError
        raise _damaged(path, head) from None
    _check_external_data(proto, path)
    try:
        external_data_helper.load_external_data_for_model(proto, os.path.dirname(path) or ".")
        if proto.producer_name == GOMETAL:
            _as_gometal_means(proto)
        onnx.checker.check_model(proto)
        if not proto.graph.node:
            raise ValueError("empty graph")
    except Exception:  # onnx's ValidationError, a short external file, an empty graph
        raise _damaged(path, head) from None
    if proto.producer_name == GOMETAL:
        _check_gometal_matmuls(proto)
    return proto


def _damaged(path: str, head: bytes) -> ValueError:
    if head == b"\x08":  # ModelProto opens with ir_version (field 1, varint)
        return ValueError(
            f"{path!r} is a truncated or corrupted ONNX file; expected a complete model."
        )
    return ValueError(
        f"{path!r} is not an ONNX model; expected a .onnx file such as Trainer.export writes."
    )


def _check_external_data(proto: Any, path: str) -> None:
    """Refuse external data that lies outside the model's folder, or in no file at all."""
    from onnx import external_data_helper

    folder = os.path.realpath(os.path.dirname(path) or ".")
    graph = proto.graph
    tensors = [*graph.initializer]
    tensors += [a.t for node in graph.node for a in node.attribute if a.HasField("t")]
    for tensor in tensors:
        if not external_data_helper.uses_external_data(tensor):
            continue
        location = external_data_helper.ExternalDataInfo(tensor).location
        target = os.path.realpath(os.path.join(folder, location))
        if os.path.isabs(location) or os.path.commonpath([folder, target]) != folder:
            raise ValueError(
                f"ONNX file {path!r} keeps tensor {tensor.name!r} in external data at "
                f"{location!r}, outside the model's folder; expected a relative path to a file "
                f"inside {folder!r}."
            )
        if not os.path.isfile(target):
            raise ValueError(
                f"ONNX file {path!r} keeps tensor {tensor.name!r} in external data file "
                f"{location!r}, which is missing; expected that file beside the model."
            )


#: The ``producer_name`` Go-Metal's exporter writes.
GOMETAL = "go-metal"


def _as_gometal_means(proto: Any) -> None:
    """Rewrite a Go-Metal export as the ONNX model Go-Metal means, so that the importer and
    ONNX Runtime (`Predictor`) read the same network: type the attributes it writes untyped,
    from the operator's schema (a value Go's proto3 encoder left out is that type's zero),
    move ``Dropout``'s ``ratio`` attribute to the input opset 12 and later read it from, and
    store each ``MatMul`` weight ``[in, out]`` as ONNX multiplies it (Go-Metal writes it
    transposed, ``[out, in]``, and its own importer transposes it back)."""
    import onnx
    from onnx import AttributeProto, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    for name in {n.input[1] for n in proto.graph.node if n.op_type == "MatMul"}:
        if name in inits and len(inits[name].dims) == 2:
            kernel = numpy_helper.to_array(inits[name]).T
            inits[name].CopyFrom(numpy_helper.from_array(kernel, name))

    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=1)
    for node in proto.graph.node:
        try:
            schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
        except Exception:  # an operator onnx does not know: the checker names it
            continue
        for attr in [a for a in node.attribute if a.type == AttributeProto.UNDEFINED]:
            if attr.name in schema.attributes:
                attr.type = int(schema.attributes[attr.name].type)
            elif node.op_type == "Dropout" and attr.name == "ratio" and len(node.input) < 2:
                ratio = numpy_helper.from_array(np.array(attr.f, np.float32), f"{node.name}.ratio")
                proto.graph.initializer.append(ratio)
                node.input.append(ratio.name)
                node.attribute.remove(attr)


class _Chain:
    """The graph as one chain: the node after each tensor, constants by name."""

    def __init__(self, proto: Any) -> None:
        from onnx import numpy_helper

        graph = proto.graph
        self.const = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        nodes = []
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute[0].name == "value":
                self.const[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
            else:
                nodes.append(node)
        self.users: dict[str, list[Any]] = {}
        for node in nodes:
            for name in node.input:
                self.users.setdefault(name, []).append(node)
        self.output = graph.output[0].name
        self.gometal = proto.producer_name == GOMETAL  # see _as_gometal_means

    def next(self, tensor: str) -> Any | None:
        users = self.users.get(tensor, [])
        if len(users) > 1 and not _is_swish(users, tensor):
            raise ValueError(
                f"ONNX node {users[1].name!r} ({users[1].op_type}) branches off the chain, "
                "which the builder cannot map; expected one chain of layers."
            )
        return None if tensor == self.output or not users else users[0]


def _is_swish(users: list[Any], tensor: str) -> bool:
    ops = sorted(u.op_type for u in users)
    return ops == ["Mul", "Sigmoid"]


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _g6(value: float) -> float:
    """ONNX stores float attributes as float32: read 0.8999999762 back as 0.9."""
    return float(f"{float(value):.6g}")


def _disagrees(
    node: Any, reach: Any, tensor: str, shape: Any, expected: str, note: str = ""
) -> ValueError:
    """One sentence naming the node, the per-sample shape reaching it and its weight's shape."""
    dims = ", ".join(["N", *map(str, reach)])
    return ValueError(
        f"ONNX node {node.name!r} ({node.op_type}) gets a [{dims}] input but its weight "
        f"{tensor!r} is {list(shape)}{note}; expected {expected}."
    )


#: How a refusal names a Go-Metal ``MatMul`` weight's shape (as the file stores it).
GOMETAL_LAYOUT = " (Go-Metal's [out, in] layout)"


def _check_gometal_matmuls(proto: Any) -> None:
    """Refuse a Go-Metal ``MatMul`` (a Dense) whose input is not flat or not as wide as its
    weight: ONNX would multiply an image's last axis alone (Go-Metal's ``demo_model.onnx``
    feeds ``[N, 1, 28, 28]`` with no ``Flatten``), a model no one trained."""
    from onnx import shape_inference

    try:
        graph = shape_inference.infer_shapes(proto).graph
    except Exception:  # shapes that do not infer: the importer's own checks name them
        return
    shapes = {
        v.name: [d.dim_value or "?" for d in v.type.tensor_type.shape.dim[1:]]
        for v in [*graph.input, *graph.value_info]
        if v.type.tensor_type.HasField("shape")
    }
    weights = {t.name: list(t.dims) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2:
            continue
        reach, weight = shapes.get(node.input[0]), weights.get(node.input[1])
        if reach is None or weight is None or len(weight) != 2:
            continue
        if len(reach) != 1 or reach[0] != weight[0]:
            expected = "a Flatten before it" if len(reach) != 1 else f"{reach[0]} inputs"
            raise _disagrees(node, reach, node.input[1], weight[::-1], expected, GOMETAL_LAYOUT)


def _unmappable(node: Any, why: str = "") -> ValueError:
    return ValueError(
        f"ONNX node {node.name!r} ({node.op_type}) cannot be mapped to a builder layer"
        f"{why}; expected a chain of {MAPPED}."
    )


#: The largest per-sample input an ONNX file may declare: one size, and all of them together.
MAX_DIM, MAX_SAMPLE = 1 << 24, 1 << 28


def _check_declared(proto: Any, path: Any) -> None:
    """Refuse what a file declares but this importer cannot honour: a newer opset than the
    installed onnx knows, or any number of graph outputs but one (one would be dropped)."""
    import onnx

    known = onnx.defs.onnx_opset_version()
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > known:
            raise ValueError(
                f"ONNX file {str(path)!r} uses opset {opset.version}, newer than the {known} "
                f"this onnx {onnx.__version__} knows; expected opset {known} or older."
            )
    outputs = [o.name for o in proto.graph.output]
    if len(outputs) != 1:
        raise ValueError(
            f"ONNX file {str(path)!r} has {len(outputs)} graph outputs ({', '.join(outputs)}); "
            "expected exactly one (a builder chain ends in one output)."
        )


def import_onnx(path: str | os.PathLike[str], batch_size: int | None = None) -> ImportedModel:
    """Rebuild the builder chain and weights of an ONNX file (see the module docstring).

    Args:
        path: The ``.onnx`` file.
        batch_size: The builder's batch size; None (default) leaves it open, as the ONNX
            file does: ``Trainer(import_onnx(path), TrainerConfig(batch_size=16))`` trains
            in batches of 16. A number must then equal the trainer's.

    Returns:
        An `ImportedModel` (a `ModelBuilder`); ``.compile()`` gives the Keras model with the
        file's weights.

    Raises:
        ValueError: Not a readable ONNX file, a node the builder cannot map (named), or
            a `batch_size` that is not a positive int.

    Example:
        >>> import tempfile, os
        >>> from gometal_keras import Trainer, TrainerConfig
        >>> from gometal_keras.model.onnx_export import export_onnx
        >>> m = ModelBuilder([32, 3]).add_dense(2).compile("float32")
        >>> path = export_onnx(m, os.path.join(tempfile.mkdtemp(), "m.onnx"))
        >>> imported = import_onnx(path)
        >>> config = TrainerConfig(batch_size=16, precision="float32", jit_compile=False)
        >>> imported.batch_size, Trainer(imported, config).model.count_params()
        (None, 8)
    """
    if batch_size is not None and not (is_int(batch_size) and batch_size >= 1):
        raise ValueError(f"batch_size is {batch_size!r}; expected None or a positive int.")
    batch_size = None if batch_size is None else int(batch_size)
    proto = read_onnx(path)
    _check_declared(proto, path)
    chain = _Chain(proto)
    inputs = [i for i in proto.graph.input if i.name not in chain.const]
    if len(inputs) != 1:
        raise ValueError(
            f"ONNX file {str(path)!r} has {len(inputs)} data inputs besides its initializers; "
            "expected exactly one (a builder chain takes one input)."
        )
    inp = inputs[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]]
    if not dims or any(d < 1 or d > MAX_DIM for d in dims) or math.prod(dims) > MAX_SAMPLE:
        raise ValueError(
            f"ONNX file {str(path)!r} declares the input {inp.name!r} as [N, "
            f"{', '.join(map(str, dims))}]; expected known sizes of 1 to {MAX_DIM} and at "
            f"most {MAX_SAMPLE} values per sample."
        )
    tensor, node = inp.name, chain.next(inp.name)
    if node is not None and node.op_type == "Transpose" and _attrs(node)["perm"] == [0, 3, 1, 2]:
        dims = [dims[2], dims[0], dims[1]]  # our export: channels-last input
        tensor = node.output[0]
        node = chain.next(tensor)
    builder = ImportedModel([batch_size, *dims])
    used = {"to_nchw", "to_nhwc"}
    while node is not None:
        name = node.name if node.name and "/" not in node.name and node.name not in used else None
        node, tensor = _map(chain, node, builder, builder.weights, name)
        used.update(s.name for s in builder.layers)
        node = chain.next(tensor) if node is None else node
    return builder


def _map(chain: _Chain, node: Any, b: ModelBuilder, weights: dict, name: str | None) -> tuple:
    """Add the layer `node` starts to `b`; return (next node or None, last tensor)."""
    op, a, c = node.op_type, _attrs(node), chain.const
    simple = {"Relu": b.add_relu, "Tanh": b.add_tanh}
    if op in ("Identity",) or (op == "Transpose" and a.get("perm") == [0, 2, 3, 1]):
        return None, node.output[0]
    if op in simple:
        simple[op](name=name)
    elif op == "LeakyRelu":
        b.add_leaky_relu(_g6(a.get("alpha", 0.01)), name=name)
    elif op == "Elu":
        b.add_elu(_g6(a.get("alpha", 1.0)), name=name)
    elif op == "Sigmoid":
        users = chain.users.get(node.input[0], [])
        mul = next((u for u in users if u.op_type == "Mul"), None)
        if mul is None:
            b.add_sigmoid(name=name)
        else:
            ok = mul.name and "/" not in mul.name
            b.add_swish(name=mul.name if ok else None)
            return None, mul.output[0]
    elif op == "Softmax":
        axis = a.get("axis", -1)  # the last axis reads back as the builder's default, -1
        b.add_softmax(-1 if axis == len(b.output_shape) else axis, name=name)
    elif op == "Dropout":
        ratio = c.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        b.add_dropout(_g6(a.get("ratio", 0.5) if ratio is None else ratio), name=name)
    elif op == "MaxPool":
        k, s = a["kernel_shape"], a.get("strides", a["kernel_shape"])
        if len({*k, *s}) > 2 or any(a.get("pads", [0])) or a.get("ceil_mode", 0):
            raise _unmappable(node, " (non-square, padded or ceil-mode pooling)")
        b.add_maxpool2d(k[0], None if s[0] == k[0] else s[0], name=name)
    elif op == "Conv":
        return _conv(node, a, c, b, weights, name)
    elif op == "BatchNormalization":
        scale, bias, mean, var = (c[t] for t in node.input[1:5])
        features = b.output_shape[0]
        for tensor, value in zip(node.input[1:5], (scale, bias, mean, var), strict=True):
            if value.shape != (features,):
                raise _disagrees(
                    node, b.output_shape, tensor, value.shape, f"[{features}] (one per channel)"
                )
        affine = not (np.all(scale == 1) and np.all(bias == 0))
        # ONNX's momentum keeps the old statistic (Keras'); Go-Metal writes PyTorch's
        onnx_momentum = _g6(a.get("momentum", 0.9))
        eps = _g6(a.get("epsilon", 1e-5))
        momentum = onnx_momentum if chain.gometal else _g6(1.0 - onnx_momentum)
        b.add_batchnorm(None, eps, momentum, affine, name)
        weights[b.layers[-1].name] = [*([scale, bias] if affine else []), mean, var]
    elif op in ("Flatten", "Reshape", "Gemm", "MatMul"):
        return _dense(chain, node, b, weights)
    else:
        raise _unmappable(node)
    return None, node.output[0]


def _conv(node: Any, a: dict, c: dict, b: ModelBuilder, weights: dict, name: str | None) -> tuple:
    w = c.get(node.input[1])
    pads, strides = a.get("pads", [0, 0, 0, 0]), a.get("strides", [1, 1])
    if (
        w is None
        or w.shape[2] != w.shape[3]
        or len(set(pads)) > 1
        or len(set(strides)) > 1
        or a.get("group", 1) != 1
        or any(d != 1 for d in a.get("dilations", [1]))
        or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
    ):
        raise _unmappable(node, " (grouped, dilated, asymmetric or non-constant convolution)")
    bias = c.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(b.output_shape) == 3 and w.shape[1] != b.output_shape[0]:
        channels = f"{b.output_shape[0]} input channels"
        raise _disagrees(node, b.output_shape, node.input[1], w.shape, channels)
    if bias is not None and bias.shape != (w.shape[0],):
        bias_of = f"a bias of [{w.shape[0]}]"
        raise _disagrees(node, b.output_shape, node.input[2], bias.shape, bias_of)
    b.add_conv2d(w.shape[0], w.shape[2], strides[0], pads[0], bias is not None, name)
    weights[b.layers[-1].name] = [w.transpose(2, 3, 1, 0), *([] if bias is None else [bias])]
    return None, node.output[0]


def _dense(chain: _Chain, node: Any, b: ModelBuilder, weights: dict) -> tuple:
    image = b.output_shape if len(b.output_shape) == 3 else None
    if node.op_type in ("Flatten", "Reshape"):
        if image is None:
            raise _unmappable(node, " (a flatten of a non-image tensor)")
        node = chain.next(node.output[0])
        if node is None or node.op_type not in ("Gemm", "MatMul"):
            raise _unmappable(node or chain.output, " (a flatten not followed by Gemm)")
        flattened = True
    else:
        flattened = False
    a, c = _attrs(node), chain.const
    stored = c.get(node.input[1])
    if stored is None or a.get("transA", 0) or a.get("alpha", 1.0) != 1 or a.get("beta", 1.0) != 1:
        raise _unmappable(node, " (a Gemm with non-constant or scaled operands)")
    gometal = chain.gometal and node.op_type == "MatMul" and stored.ndim == 2
    # read_onnx stored Go-Metal's [out, in] weight [in, out]: say the file's
    shown, note = (stored.shape[::-1], GOMETAL_LAYOUT) if gometal else (stored.shape, "")
    if image is not None and not flattened:  # MatMul of NCHW multiplies the last axis only
        flatten = "a Flatten before it"
        raise _disagrees(node, b.output_shape, node.input[1], shown, flatten, note)
    kernel = stored.T if a.get("transB", 0) else stored
    width = math.prod(b.output_shape)
    if kernel.ndim != 2 or kernel.shape[0] != width:
        raise _disagrees(node, b.output_shape, node.input[1], shown, f"{width} inputs", note)
    bias_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    out = node.output[0]
    add = chain.next(out) if node.op_type == "MatMul" else None
    if add is not None and add.op_type == "Add" and {*add.input} - {out} <= set(c):
        bias_name, out = next(t for t in add.input if t != out), add.output[0]
    bias = None if bias_name is None else c.get(bias_name)
    if bias is not None and bias.size != kernel.shape[1]:
        bias_of = f"a bias of [{kernel.shape[1]}]"
        raise _disagrees(node, b.output_shape, bias_name, bias.shape, bias_of)
    if image is not None:  # ONNX flattened (C, H, W); Keras flattens (H, W, C)
        ch, h, w = image
        kernel = kernel.reshape(ch, h, w, -1).transpose(1, 2, 0, 3).reshape(ch * h * w, -1)
    name = node.name if node.name and "/" not in node.name else None
    if gometal and node.input[1].endswith(".weight"):  # Go-Metal: "<layer>.weight"
        name = node.input[1].removesuffix(".weight")
    b.add_dense(kernel.shape[1], bias is not None, name)
    weights[b.layers[-1].name] = [kernel, *([] if bias is None else [bias.reshape(-1)])]
    return None, out
