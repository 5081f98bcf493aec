"""Go-Metal JSON checkpoints read into a resuming `Trainer`, against a numpy Go-Metal model.

The files are written here in the layout of Go-Metal's ``checkpoints/checkpoint.go`` and
``layers/layer.go`` (layer ``type`` as its ``LayerType`` number, Dense weights ``[in, out]``
over an NCHW-flattened input, convolutions ``[out, in, kH, kW]``, Adam's ``momentum_<i>`` /
``variance_<i>`` flat buffers and ``step_count``). The oracles are a numpy forward pass of the
file's weights in Go-Metal's NCHW semantics and a numpy Adam step in Go-Metal's formula.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gometal_keras import TrainerConfig
from gometal_keras.gometal import LoadCheckpoint
from gometal_keras.training.gometal_checkpoint import LAYER_TYPES, load_gometal_checkpoint

CONFIG = TrainerConfig(4, precision="float32", jit_compile=False, loss="mse",
                       problem_type="regression", seed=0)


def _conv(x, w, b, stride, pad):
    """NCHW convolution, OIHW weights (the oracle: a plain sum over the window)."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[2]
    oh, ow = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out + (0 if b is None else b[None, :, None, None])


def go_forward(layers, weights, x):
    """Go-Metal's forward pass in inference mode, NCHW, float64."""
    x = x.astype(np.float64)
    for kind, name, p in layers:
        w = weights.get(f"{name}.weight")
        b = weights.get(f"{name}.bias")
        if kind == "Dense":
            x = x.reshape(len(x), -1) @ w + (0 if b is None else b)
        elif kind == "Conv2D":
            x = _conv(x, w, b, p["stride"], p["padding"])
        elif kind == "BatchNorm":
            shape = (1, -1) + (1,) * (x.ndim - 2)
            mean = weights[f"{name}.running_mean"].reshape(shape)
            var = weights[f"{name}.running_var"].reshape(shape)
            x = (x - mean) / np.sqrt(var + p["eps"]) * w.reshape(shape) + b.reshape(shape)
        elif kind == "ReLU":
            x = np.maximum(x, 0)
        elif kind == "LeakyReLU":
            x = np.where(x > 0, x, p["negative_slope"] * x)
        elif kind == "ELU":
            x = np.where(x > 0, x, p["alpha"] * np.expm1(np.minimum(x, 0)))
        elif kind == "Sigmoid":
            x = 1 / (1 + np.exp(-x))
        elif kind == "Tanh":
            x = np.tanh(x)
        elif kind == "Swish":
            x = x / (1 + np.exp(-x))
        elif kind == "Softmax":
            e = np.exp(x - x.max(axis=p["axis"], keepdims=True))
            x = e / e.sum(axis=p["axis"], keepdims=True)
    return x


def gometal_json(input_shape, layers, weights, optimizer=None, epoch=3):
    """A checkpoint as Go-Metal's SaveCheckpoint writes it (json.Encoder, 2-space indent)."""
    specs, order, shape = [], [], list(input_shape)
    for kind, name, p in layers:
        params = dict(p)
        if kind == "Dense":
            params["input_size"] = math.prod(shape[1:])
            out = [shape[0], p["output_size"]]
        elif kind == "Conv2D":
            params["input_channels"] = shape[1]
            side = [(d + 2 * p["padding"] - p["kernel_size"]) // p["stride"] + 1
                    for d in shape[2:]]
            out = [shape[0], p["output_channels"], *side]
        else:
            out = list(shape)
        names = [f"{name}.{t}" for t in ("weight", "bias") if f"{name}.{t}" in weights]
        order += names
        specs.append({"type": LAYER_TYPES.index(kind), "name": name, "parameters": params,
                      "input_shape": shape, "output_shape": out,
                      "parameter_shapes": [list(weights[n].shape) for n in names]})
        shape = out
    stored = [{"name": n, "shape": list(v.shape), "data": v.ravel().tolist(),
               "layer": n.split(".")[0], "type": n.split(".")[1]} for n, v in weights.items()]
    data = {
        "model_spec": {"layers": specs, "total_parameters": 0, "parameter_shapes": [],
                       "input_shape": list(input_shape), "output_shape": shape,
                       "compiled": True},
        "weights": stored,
        "training_state": {"epoch": epoch, "step": 40, "learning_rate": 0.001,
                           "best_loss": 0.5, "best_accuracy": 0.5, "total_steps": 40},
        "metadata": {"version": "1.0.0", "framework": "go-metal",
                     "created_at": "2025-08-01T00:00:00Z"},
    }
    if optimizer is not None:
        data["optimizer_state"] = optimizer
    return json.dumps(data, indent=2), order


def adam_state(weights, order, rng, step, lr=0.01):
    data = []
    for kind, label in (("momentum", "momentum"), ("variance", "variance")):
        for i, n in enumerate(order):
            value = rng.normal(size=weights[n].size).astype(np.float32)
            value = np.abs(value) if kind == "variance" else value
            data.append({"name": f"{label}_{i}", "shape": [value.size],
                         "data": value.tolist(), "state_type": kind})
    params = {"learning_rate": lr, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8,
              "weight_decay": 0.0, "step_count": step}
    return {"type": "Adam", "parameters": params, "state_data": data}


@st.composite
def gometal_layers(draw):
    """Go-Metal layer chains (image or flat input), with float32 weights drawn by numpy."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    image = draw(st.booleans())
    shape = [4, draw(st.integers(1, 3)), 5, 5] if image else [4, draw(st.integers(1, 5))]
    here, layers, weights = list(shape[1:]), [], {}

    def rand(*dims):
        return rng.normal(size=dims).astype(np.float32)

    for i in range(draw(st.integers(1, 4))):
        kinds = ["ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Swish", "BatchNorm", "Dropout",
                 "Dense", "Softmax"] + (["Conv2D", "Conv2D"] if len(here) == 3 else [])
        kind, name, p = draw(st.sampled_from(kinds)), f"layer{i}", {}
        if kind == "Dense":
            units, bias = draw(st.integers(1, 4)), draw(st.booleans())
            p = {"output_size": units, "use_bias": bias}
            weights[f"{name}.weight"] = rand(math.prod(here), units)
            weights.update({f"{name}.bias": rand(units)} if bias else {})
            here = [units]
        elif kind == "Conv2D":
            pad, stride, out = draw(st.integers(0, 1)), draw(st.integers(1, 2)), draw(
                st.integers(1, 3))
            if min(here[1:]) + 2 * pad < 3:
                continue
            p = {"output_channels": out, "kernel_size": 3, "stride": stride, "padding": pad,
                 "use_bias": True}
            weights[f"{name}.weight"], weights[f"{name}.bias"] = rand(out, here[0], 3, 3), rand(out)
            here = [out, *[(d + 2 * pad - 3) // stride + 1 for d in here[1:]]]
        elif kind == "BatchNorm":
            p = {"num_features": here[0], "eps": 1e-5, "momentum": 0.1, "affine": True,
                 "track_running_stats": True, "training": True}
            weights[f"{name}.weight"], weights[f"{name}.bias"] = rand(here[0]), rand(here[0])
            weights[f"{name}.running_mean"] = rand(here[0])
            weights[f"{name}.running_var"] = np.abs(rand(here[0])) + 0.5
        elif kind == "LeakyReLU":
            p = {"negative_slope": draw(st.sampled_from([0.0, 0.01, 0.2]))}
        elif kind == "ELU":
            p = {"alpha": draw(st.sampled_from([0.5, 1.0]))}
        elif kind == "Dropout":
            p = {"rate": draw(st.sampled_from([0.0, 0.3])), "training": True}
        elif kind == "Softmax":
            p = {"axis": draw(st.sampled_from([1, -1]))}
        layers.append((kind, name, p))
    return shape, layers, weights, rng


def _keras_layout(value, kind, input_shape):
    """The test's own permutation to Keras' layout, by index arithmetic (not the module's)."""
    if kind == "Conv2D" and value.ndim == 4:
        return np.moveaxis(value, (0, 1), (3, 2))
    if kind == "Dense" and value.ndim == 2 and len(input_shape) == 3:
        c, h, w = input_shape
        nchw_index = np.arange(c * h * w).reshape(c, h, w)
        return value[np.transpose(nchw_index, (1, 2, 0)).ravel()]
    return value


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=gometal_layers(), step=st.integers(0, 500))
def test_a_gometal_checkpoint_resumes_with_its_weights_moments_and_step(
    case, step, tmp_path_factory
):
    shape, layers, weights, rng = case
    order = order_of(layers, weights)
    text, _ = gometal_json(shape, layers, weights, adam_state(weights, order, rng, step))
    path = tmp_path_factory.mktemp("gm") / "checkpoint.json"
    path.write_text(text)
    trainer = LoadCheckpoint(str(path), CONFIG)
    x = rng.normal(size=shape).astype(np.float32)
    nhwc = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    want = go_forward(layers, weights, x)
    want = want.transpose(0, 2, 3, 1) if want.ndim == 4 else want
    np.testing.assert_allclose(trainer.predict(nhwc), want, rtol=1e-4, atol=1e-5)
    optimizer = json.loads(text)["optimizer_state"]
    inputs = {name: s["input_shape"][1:] for name, s in
              ((s["name"], s) for s in json.loads(text)["model_spec"]["layers"])}
    kinds = {name: kind for kind, name, _ in layers}
    slots = {v.path: np.asarray(v.value) for v in trainer.optimizer.variables}
    for i, (n, variable) in enumerate(zip(order, trainer.model.trainable_variables, strict=True)):
        layer = n.split(".")[0]
        keras_value = _keras_layout(weights[n], kinds[layer], inputs[layer])
        np.testing.assert_array_equal(np.asarray(variable.value), keras_value)  # bit for bit
        for kind, slot in (("momentum", "momentum"), ("variance", "velocity")):
            stored = next(d for d in optimizer["state_data"] if d["name"] == f"{kind}_{i}")
            value = np.asarray(stored["data"], np.float32).reshape(weights[n].shape)
            key = f"{trainer.optimizer.name}/{variable.path.replace('/', '_')}_{slot}"
            np.testing.assert_array_equal(slots[key], _keras_layout(value, kinds[layer],
                                                                    inputs[layer]))
    assert int(trainer.optimizer.iterations) == step and trainer.epoch == 3
    assert trainer.config.learning_rate == pytest.approx(0.01)


def order_of(layers, weights):
    """Go-Metal's learnable-tensor order: per layer, weight then bias."""
    return [f"{n}.{t}" for _, n, _ in layers for t in ("weight", "bias") if f"{n}.{t}" in weights]


@pytest.mark.parametrize("step", [0, 2, 300])
def test_the_next_step_is_go_metals_adam_step(step, tmp_path):
    """A linear layer under MSE: the gradient and Go-Metal's Adam update in numpy."""
    rng = np.random.default_rng(step)
    weights = {"fc.weight": rng.normal(size=(3, 2)).astype(np.float32),
               "fc.bias": rng.normal(size=2).astype(np.float32)}
    layers = [("Dense", "fc", {"output_size": 2, "use_bias": True})]
    order = order_of(layers, weights)
    opt = adam_state(weights, order, rng, step, lr=0.05)
    text, _ = gometal_json([4, 3], layers, weights, opt)
    (tmp_path / "c.json").write_text(text)
    trainer = load_gometal_checkpoint(tmp_path / "c.json", CONFIG)
    x, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    trainer.train_batch(x.astype(np.float32), y.astype(np.float32))
    residual = (x @ weights["fc.weight"] + weights["fc.bias"] - y) * 2 / y.size
    grads = [x.T @ residual, residual.sum(0)]
    t = step + 1
    for i, (n, g) in enumerate(zip(order, grads, strict=True)):
        m = np.asarray(opt["state_data"][i]["data"]).reshape(g.shape)
        v = np.asarray(opt["state_data"][len(order) + i]["data"]).reshape(g.shape)
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        update = (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        want = weights[n] - 0.05 * update
        got = np.asarray(trainer.model.trainable_variables[i].value)
        np.testing.assert_allclose(got - weights[n], want - weights[n], rtol=2e-3, atol=1e-6)


def _demo_like(stored_in: int, side: int):
    weights = {"hidden1.weight": np.zeros((stored_in, 8), np.float32),
               "hidden1.bias": np.zeros(8, np.float32)}
    layers = [("Dense", "hidden1", {"output_size": 8, "use_bias": True}), ("ReLU", "relu1", {})]
    return gometal_json([32, 1, side, side], layers, weights)[0]


def test_go_metals_own_demo_layout_is_refused_naming_the_layer_and_both_shapes(tmp_path):
    """Go-Metal's ``demo_model.json``: a [28, 128] weight for a 784 -> 128 layer."""
    weights = {"hidden1.weight": np.zeros((28, 128), np.float32),
               "hidden1.bias": np.zeros(128, np.float32)}
    layers = [("Dense", "hidden1", {"output_size": 128, "use_bias": True})]
    path = tmp_path / "demo_model.json"
    path.write_text(gometal_json([32, 1, 28, 28], layers, weights)[0])
    with pytest.raises(ValueError) as refused:
        load_gometal_checkpoint(path)
    said = str(refused.value)
    assert "layer 'hidden1'" in said and "[28, 128]" in said and "[784, 128]" in said
    assert said.count(". ") == 0 and "\n" not in said


@settings(max_examples=8, deadline=None)
@given(st.integers(2, 6), st.integers(1, 80))
def test_any_stored_shape_that_disagrees_is_refused_before_a_model_is_built(side, stored_in):
    import tempfile

    if stored_in == side * side:
        stored_in += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/c.json"
        with open(path, "w") as fh:
            fh.write(_demo_like(stored_in, side))
        with pytest.raises(ValueError, match=r"^Go-Metal checkpoint .* stores hidden1\.weight "
                           rf"of layer 'hidden1' \(dense\) as \[{stored_in}, 8\], but its "
                           rf"\[batch, 1, {side}, {side}\] input needs \[{side * side}, 8\]\.$"):
            load_gometal_checkpoint(path)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=gometal_layers(), pick=st.integers(0, 2**16), grow=st.integers(1, 3),
       buffer=st.booleans())
def test_a_weight_or_moment_that_disagrees_with_its_layer_is_refused_naming_it(
    case, pick, grow, buffer, tmp_path_factory
):
    """Any stored tensor of a drawn chain, one size off; or its Adam buffer one length off."""
    shape, layers, weights, rng = case
    order = order_of(layers, weights)
    if not order:
        return
    name = order[pick % len(order)]
    good = weights[name]
    if not buffer:
        axis = pick % good.ndim
        size = good.shape[axis] + grow
        bad = np.zeros((*good.shape[:axis], size, *good.shape[axis + 1:]), np.float32)
        weights = {**weights, name: bad}
    text, _ = gometal_json(shape, layers, weights, adam_state(weights, order, rng, 5))
    data = json.loads(text)
    if buffer:
        stored = data["optimizer_state"]["state_data"][order.index(name)]
        stored["data"] += [0.0] * grow
    path = tmp_path_factory.mktemp("bad") / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError) as refused:
        load_gometal_checkpoint(path, CONFIG)
    said = str(refused.value)
    assert said.startswith(f"Go-Metal checkpoint {str(path)!r} ") and "\n" not in said
    if buffer:
        assert f"holds {good.size + grow} values in Adam state 'momentum_{order.index(name)}'" \
            in said and f"expected {good.size}" in said
    else:
        assert f"stores {name} of layer {name.split('.')[0]!r}" in said
        assert str(list(bad.shape)) in said and said.endswith(f"needs {list(good.shape)}.")
