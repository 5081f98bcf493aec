"""Go-Metal's JSON checkpoints, read into a `Trainer` that resumes their training.

Go-Metal (``checkpoints/checkpoint.go``) writes one JSON object: ``model_spec`` (its layer
specs: ``type`` as Go's ``LayerType`` number, ``name``, ``parameters``; ``input_shape``
``[batch, features]`` or ``[batch, C, H, W]``), ``weights`` (``name`` ``"<layer>.weight"`` /
``".bias"``, ``shape``, float32 ``data``, BatchNorm's gamma and beta as ``weight`` and
``bias``, its running statistics as ``running_mean`` / ``running_var``), ``training_state``
(``epoch``, ``step``, ``learning_rate``, ...) and ``optimizer_state`` (``type``,
``parameters`` with ``step_count``, ``state_data`` of flat buffers ``momentum_<i>`` /
``variance_<i>``, ``i`` counting the learnable tensors in order).

Go-Metal keeps a Dense weight ``[in, out]`` with the input flattened in NCHW order and a
convolution ``[out, in, kH, kW]``; Keras keeps ``[in, out]`` flattened in (H, W, C) order and
``[kH, kW, in, out]``: weights and optimizer moments are permuted, never rescaled, so they
arrive bit for bit. Every weight is checked against the shape its layer's input needs before
anything is built: Go-Metal's own ``demo_model.json`` stores a ``[28, 128]`` weight for a
784 -> 128 layer, and is refused in one sentence naming the layer and both shapes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from gometal_keras.core.config import TrainerConfig
from gometal_keras.model.onnx_import import ImportedModel
from gometal_keras.training.trainer import Trainer

#: Go-Metal's ``layers.LayerType`` names, in the order of its ``iota`` numbers.
LAYER_TYPES = (
    "Dense", "Conv2D", "ReLU", "Softmax", "MaxPool2D", "Dropout", "BatchNorm", "LeakyReLU",
    "ELU", "Sigmoid", "Tanh", "Swish",
)
#: Go-Metal optimizer type -> (our ``TrainerConfig.optimizer``, its state type -> Keras slot).
#: Adam's moments are the same numbers in Keras (its weight decay is decoupled in both).
OPTIMIZERS = {
    "Adam": ("adam", {"momentum": "momentum", "variance": "velocity"}),
    "SGD": ("sgd", {}),
}


@dataclasses.dataclass(frozen=True)
class GoMetalCheckpoint:
    """A Go-Metal JSON checkpoint, checked and in Keras' layout.

    Attributes:
        builder: The layer chain, carrying the file's weights (an `ImportedModel`).
        config: Settings the file fixes (``optimizer``, ``learning_rate``, betas, ...).
        slots: ``(learnable tensor index, Keras slot name, value)`` of the optimizer state.
        step: The optimizer's step count (Keras' ``iterations``).
        epoch: Epochs completed.
    """

    builder: ImportedModel
    config: dict[str, Any]
    slots: tuple[tuple[int, str, np.ndarray], ...]
    step: int
    epoch: int


def _fail(path: str, what: str) -> ValueError:
    return ValueError(f"Go-Metal checkpoint {path!r} {what}.")


def _get(table: Any, key: str, kind: type | tuple[type, ...], path: str, where: str) -> Any:
    value = table.get(key) if isinstance(table, dict) else None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _fail(path, f"has no usable {where}{key!r}; expected Go-Metal's JSON layout")
    return value


def _add_layer(b: ImportedModel, kind: str, name: str, p: dict[str, Any]) -> None:
    if kind == "Dense":
        b.add_dense(p["output_size"], p.get("use_bias", True), name)
    elif kind == "Conv2D":
        k, s, pad = p["kernel_size"], p.get("stride", 1), p.get("padding", 0)
        b.add_conv2d(p["output_channels"], k, s, pad, p.get("use_bias", True), name)
    elif kind == "BatchNorm":
        eps, momentum = p.get("eps", 1e-5), p.get("momentum", 0.1)
        b.add_batchnorm(p.get("num_features"), eps, momentum, p.get("affine", True), name)
    elif kind == "Softmax":
        b.add_softmax(p.get("axis", -1), name)
    elif kind == "Dropout":
        b.add_dropout(p["rate"], name)
    elif kind == "LeakyReLU":
        b.add_leaky_relu(p.get("negative_slope", 0.01), name)
    elif kind == "ELU":
        b.add_elu(p.get("alpha", 1.0), name)
    else:
        getattr(b, f"add_{kind.lower()}")(name=name)


def _learnable(spec: Any) -> list[tuple[str, tuple[int, ...], Callable[[np.ndarray], Any]]]:
    """A layer's learnable tensors in Go-Metal's order: (name suffix, Go shape, to Keras)."""
    a, same = spec.args, (lambda v: v)
    if spec.kind == "dense":
        inputs = spec.input_shape
        width, units = math.prod(inputs), a["units"]

        def kernel(v: np.ndarray) -> np.ndarray:
            if len(inputs) != 3:
                return v
            c, h, w = inputs  # Go-Metal flattened (C, H, W); Keras flattens (H, W, C)
            return v.reshape(c, h, w, units).transpose(1, 2, 0, 3).reshape(width, units)

        tensors = [("weight", (width, units), kernel)]
        return tensors + ([("bias", (units,), same)] if a["use_bias"] else [])
    if spec.kind == "conv2d":
        k, filters, channels = a["kernel_size"], a["filters"], spec.input_shape[0]
        tensors = [("weight", (filters, channels, k, k), lambda v: v.transpose(2, 3, 1, 0))]
        return tensors + ([("bias", (filters,), same)] if a["use_bias"] else [])
    if spec.kind == "batchnorm" and a["affine"]:
        features = spec.output_shape[0]
        return [("weight", (features,), same), ("bias", (features,), same)]
    return []


def read_gometal_checkpoint(
    path: str | os.PathLike[str], batch_size: int | None = None
) -> GoMetalCheckpoint:
    """Read and check a Go-Metal JSON checkpoint (see the module docstring); build nothing.

    Args:
        path: The ``.json`` file Go-Metal's ``CheckpointSaver`` (``FormatJSON``) wrote.
        batch_size: The builder's batch size; None takes the file's ``input_shape[0]``.

    Returns:
        A `GoMetalCheckpoint`.

    Raises:
        ValueError: Not JSON in Go-Metal's layout, a layer type this builder lacks, or a
            weight or optimizer buffer whose shape disagrees with its layer (named, with
            both shapes).

    Example:
        >>> import json, os, tempfile
        >>> spec = {"input_shape": [2, 3], "layers": [{"type": 0, "name": "fc",
        ...         "parameters": {"output_size": 1, "use_bias": False}}]}
        >>> w = [{"name": "fc.weight", "shape": [3, 1], "data": [1, 2, 3]}]
        >>> path = os.path.join(tempfile.mkdtemp(), "c.json")
        >>> with open(path, "w") as fh:
        ...     json.dump({"model_spec": spec, "weights": w, "training_state": {}}, fh)
        >>> read_gometal_checkpoint(path).builder.weights["fc"][0].ravel().tolist()
        [1.0, 2.0, 3.0]
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise _fail(
            path, "is not JSON; expected the file Go-Metal's SaveCheckpoint writes"
        ) from None
    spec = _get(data, "model_spec", dict, path, "")
    shape = _get(spec, "input_shape", list, path, "model_spec ")
    batch = shape[0] if batch_size is None and shape else batch_size
    try:
        builder = ImportedModel([batch, *shape[1:]])
    except (TypeError, ValueError):
        raise _fail(path, f"declares input_shape {shape}; expected [batch, features] or "
                    "[batch, C, H, W] of positive ints") from None
    for i, layer in enumerate(_get(spec, "layers", list, path, "model_spec ")):
        kind = layer.get("type") if isinstance(layer, dict) else None
        kind = LAYER_TYPES[kind] if isinstance(kind, int) and 0 <= kind < 12 else kind
        name = layer.get("name") if isinstance(layer, dict) else None
        if kind not in LAYER_TYPES or kind == "MaxPool2D":
            raise _fail(path, f"has layer {i + 1} ({name!r}) of type {kind!r}; expected one "
                        "of the types Go-Metal's ModelBuilder compiles")
        try:
            _add_layer(builder, kind, name, layer.get("parameters") or {})
        except (KeyError, TypeError, ValueError) as err:
            raise _fail(path, f"has layer {name!r} ({kind}) that does not build "
                        f"({str(err).rstrip('.')})") from None
    tensors = _weights(data, builder, path)
    config, slots, step = _optimizer(data, tensors, path)
    state = data.get("training_state") if isinstance(data.get("training_state"), dict) else {}
    if "learning_rate" not in config and (state.get("learning_rate") or 0) > 0:
        config["learning_rate"] = float(state["learning_rate"])
    epoch = state.get("epoch", 0)
    return GoMetalCheckpoint(builder, config, tuple(slots), step, max(int(epoch), 0))


def _array(entry: Any, want: tuple[int, ...], path: str, layer: Any, what: str) -> np.ndarray:
    """One stored tensor as float32 in Go's layout; ValueError naming both shapes."""
    shape, values = entry.get("shape"), entry.get("data")
    if not isinstance(values, list) or not isinstance(shape, list):
        raise _fail(path, f"stores {what} of layer {layer.name!r} without shape and data")
    if tuple(shape) != want:
        inputs = ", ".join(["batch", *map(str, layer.input_shape)])
        raise _fail(path, f"stores {what} of layer {layer.name!r} ({layer.kind}) as {shape}, "
                    f"but its [{inputs}] input needs {list(want)}")
    if len(values) != math.prod(want):
        raise _fail(path, f"stores {len(values)} values for {what} of layer {layer.name!r}, "
                    f"shape {list(want)}; expected {math.prod(want)}")
    try:
        return np.asarray(values, np.float32).reshape(want)  # float32 from JSON: bit exact
    except (TypeError, ValueError):
        raise _fail(path, f"stores non-numbers in {what} of layer {layer.name!r}") from None


def _weights(data: dict, b: ImportedModel, path: str) -> list[tuple[tuple[int, ...], Callable]]:
    """Check and convert every weight into ``b.weights``; return the learnable tensors'
    (Go shape, to-Keras) in Go-Metal's order, which the optimizer state counts by."""
    entries = _get(data, "weights", list, path, "")
    stored = {w.get("name"): w for w in entries if isinstance(w, dict)}
    learnable = []
    for spec in b.layers:
        values = []
        for suffix, want, to_keras in _learnable(spec):
            entry = stored.get(f"{spec.name}.{suffix}")
            if entry is None:
                raise _fail(path, f"has no {spec.name}.{suffix} for layer {spec.name!r}")
            values.append(to_keras(_array(entry, want, path, spec, f"{spec.name}.{suffix}")))
            learnable.append((want, to_keras))
        if spec.kind == "batchnorm":
            features = (spec.output_shape[0],)
            stats = {}
            for stat, default in (("running_mean", 0.0), ("running_var", 1.0)):
                entry = stored.get(f"{spec.name}.{stat}")
                stats[stat] = (np.full(features, default, np.float32) if entry is None
                               else _array(entry, features, path, spec, f"{spec.name}.{stat}"))
            values += [stats["running_mean"], stats["running_var"]]
        if values:
            b.weights[spec.name] = values
    return learnable


def _optimizer(data: dict, learnable: list, path: str) -> tuple[dict, list, int]:
    state = data.get("optimizer_state")
    if state is None:
        return {}, [], 0
    kind = _get(state, "type", str, path, "optimizer_state ")
    if kind not in OPTIMIZERS:
        raise _fail(path, f"holds {kind} optimizer state; expected one of "
                    f"{', '.join(OPTIMIZERS)} (load_gometal_checkpoint(..., "
                    "optimizer_state=False) keeps the weights and starts a fresh optimizer)")
    ours, slot_names = OPTIMIZERS[kind]
    params = state.get("parameters") or {}
    config: dict[str, Any] = {"optimizer": ours}
    keys = {"learning_rate": "learning_rate", "weight_decay": "weight_decay"}
    if kind == "Adam":
        keys.update(beta1="beta1", beta2="beta2", epsilon="epsilon")
    for theirs, key in keys.items():
        if isinstance(params.get(theirs), int | float):
            config[key] = float(np.float32(params[theirs]))
    slots = []
    for entry in state.get("state_data") or []:
        name, kind_of = str(entry.get("name", "")), entry.get("state_type")
        index = name.rpartition("_")[2]
        if kind_of not in slot_names or not index.isdigit() or int(index) >= len(learnable):
            raise _fail(path, f"holds {kind} state {name!r} ({kind_of}); expected "
                        f"{' or '.join(f'{s}_<i>' for s in slot_names) or 'none'} with i "
                        f"below {len(learnable)}")
        want, to_keras = learnable[int(index)]
        values = entry.get("data")
        if not isinstance(values, list) or len(values) != math.prod(want):
            count = len(values) if isinstance(values, list) else 0
            raise _fail(path, f"holds {count} values in {kind} state {name!r}; expected "
                        f"{math.prod(want)}, one per value of learnable tensor {index} "
                        f"{list(want)}")
        value = np.asarray(values, np.float32).reshape(want)
        slots.append((int(index), slot_names[kind_of], to_keras(value)))
    step = params.get("step_count", 0)
    return config, slots, int(step) if isinstance(step, int | float) and step > 0 else 0


def load_gometal_checkpoint(
    path: str | os.PathLike[str],
    config: TrainerConfig | None = None,
    optimizer_state: bool = True,
) -> Trainer:
    """A `Trainer` that resumes a Go-Metal JSON checkpoint (Go-Metal's ``LoadCheckpoint``).

    The file's weights arrive bit for bit; its optimizer (Adam, or SGD without momentum
    buffers), learning rate and Adam settings replace the config's, its Adam moments become
    the Keras optimizer's, its ``step_count`` the optimizer's ``iterations`` and its epoch the
    trainer's ``epoch``. Everything is checked before the trainer is made.

    Args:
        path: The ``.json`` file.
        config: Loss, precision, ... (None: `TrainerConfig` defaults); its ``batch_size``
            is used when given, else the file's ``input_shape[0]``.
        optimizer_state: False: keep the config's optimizer and start it fresh.

    Returns:
        The `Trainer`; its ``model`` computes what the Go-Metal model computed, on
        channels-last images.

    Raises:
        ValueError: See `read_gometal_checkpoint`.

    Example:
        >>> import json, os, tempfile
        >>> spec = {"input_shape": [2, 3], "layers": [{"type": 0, "name": "fc",
        ...         "parameters": {"output_size": 1, "use_bias": False}}]}
        >>> w = [{"name": "fc.weight", "shape": [3, 1], "data": [1, 2, 3]}]
        >>> opt = {"type": "Adam", "parameters": {"learning_rate": 0.01, "step_count": 7},
        ...        "state_data": []}
        >>> path = os.path.join(tempfile.mkdtemp(), "c.json")
        >>> with open(path, "w") as fh:
        ...     json.dump({"model_spec": spec, "weights": w, "optimizer_state": opt,
        ...                "training_state": {"epoch": 2}}, fh)
        >>> cfg = TrainerConfig(2, precision="float32", jit_compile=False, loss="mse",
        ...                     problem_type="regression")
        >>> t = load_gometal_checkpoint(path, cfg)
        >>> t.epoch, int(t.optimizer.iterations), t.predict(np.ones((2, 3))).ravel().tolist()
        (2, 7, [6.0, 6.0])
    """
    batch = None if config is None else config.batch_size
    read = read_gometal_checkpoint(path, batch)
    base = config or TrainerConfig(batch_size=read.builder.batch_size)
    if not optimizer_state:
        trainer = Trainer(read.builder, base)
        trainer.epoch = read.epoch
        return trainer
    trainer = Trainer(read.builder, base.replace(**read.config))
    inner = getattr(trainer.optimizer, "inner_optimizer", trainer.optimizer)
    slots = {v.path: v for v in inner.variables}
    trainable = trainer.model.trainable_variables
    for index, slot, value in read.slots:
        variable = slots[f"{inner.name}/{trainable[index].path.replace('/', '_')}_{slot}"]
        variable.assign(keras.ops.convert_to_tensor(value, variable.dtype))
    inner.iterations.assign(read.step)
    trainer.epoch = read.epoch
    return trainer
