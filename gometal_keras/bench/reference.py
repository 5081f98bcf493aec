"""A hand-written JAX training loop: the yardstick the Trainer is held to on JAX.

The same model as a bench config's builder chain, written directly in `jax.numpy`: one
`jax.jit` program runs a whole epoch as a `lax.scan` over device-resident batches, with a
hand-written Adam (float32 master weights) and, under mixed precision, float16/bfloat16
compute with a static loss scale (no overflow check: the cheapest honest loop). It is what
"a hand-written whole-epoch JAX loop" means in bench/RESULTS.md. ``make_epoch(dynamic=True)``
scales the loss dynamically instead, as the Trainer does under mixed_float16: a second
yardstick, for the work the static loop leaves out. JAX backend only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gometal_keras.bench.measurement import Call, RunRequest, timed, timed_epochs
from gometal_keras.bench.precisions import compute_dtype, precision_context
from gometal_keras.model.builder import ModelBuilder

STATIC_LOSS_SCALE = 1024.0
#: The dynamic loss scale's start and growth interval (`make_epoch(dynamic=True)`): the
#: Trainer's defaults (`TrainerConfig.initial_loss_scale`, `loss_scale_growth_interval`).
DYNAMIC_START, DYNAMIC_GROWTH = 65536.0, 2000


def init_params(builder: ModelBuilder, seed: int) -> list[dict[str, Any]]:
    """Glorot-uniform kernels and zero biases for the builder's dense and conv layers."""
    rng = np.random.default_rng(seed)
    params = []
    for spec in builder.layers:
        a, shape = spec.args, spec.input_shape
        if spec.kind == "dense":
            fan_in, fan_out = int(np.prod(shape)), a["units"]
            kshape: tuple[int, ...] = (fan_in, fan_out)
        elif spec.kind == "conv2d":
            k, cin, fan_out = a["kernel_size"], shape[0], a["filters"]
            kshape, fan_in = (k, k, cin, fan_out), k * k * cin
            fan_out *= k * k
        else:
            params.append({})
            continue
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = rng.uniform(-limit, limit, kshape).astype(np.float32)
        b = np.zeros(kshape[-1], np.float32)
        params.append({"w": w, "b": b} if a.get("use_bias", True) else {"w": w})
    return params


def _layer(spec: Any, p: dict[str, Any], h: Any, key: Any, cdt: Any, training: bool) -> Any:
    """One layer's forward pass in the compute dtype `cdt` (NHWC images)."""
    import jax
    import jax.numpy as jnp

    a = spec.args
    if spec.kind == "dense":
        h = h.reshape(h.shape[0], -1) @ p["w"].astype(cdt)
        return h + p["b"].astype(cdt) if "b" in p else h
    if spec.kind == "conv2d":
        pad = a["padding"]
        h = jax.lax.conv_general_dilated(
            h,
            p["w"].astype(cdt),
            (a["stride"],) * 2,
            [(pad, pad)] * 2,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return h + p["b"].astype(cdt) if "b" in p else h
    if spec.kind == "maxpool2d":
        s, w = a["stride"] or a["pool_size"], a["pool_size"]
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, w, w, 1), (1, s, s, 1), "VALID")
    if spec.kind == "relu":
        return jax.nn.relu(h)
    if spec.kind == "dropout":
        if not training:
            return h
        keep = jax.random.bernoulli(key, 1 - a["rate"], h.shape)
        return jnp.where(keep, h / (1 - a["rate"]), 0).astype(cdt)
    raise ValueError(f"The reference loop has no {spec.kind} layer.")


def forward(
    builder: ModelBuilder,
    params: list[dict[str, Any]],
    x: Any,
    key: Any,
    cdt: Any,
    training: bool = True,
) -> Any:
    """The model's float32 logits of a batch, computed in `cdt` (dropout keys from `key`)."""
    import jax
    import jax.numpy as jnp

    h = x.astype(cdt)
    for i, (spec, p) in enumerate(zip(builder.layers, params, strict=True)):
        h = _layer(spec, p, h, jax.random.fold_in(key, i), cdt, training)
    return h.astype(jnp.float32)


def make_epoch(
    builder: ModelBuilder, precision: str, lr: float = 1e-3, dynamic: bool = False
) -> Any:
    """Return ``epoch(state, xs, ys) -> (state, losses)``, jitted; state = (p, m, v, t, key).

    With `dynamic` (float16 only), the loss scale is dynamic instead of static, as Keras'
    `LossScaleOptimizer` with the Trainer's defaults does it: a step whose gradients are
    not all finite is skipped and halves the scale, 2000 finite steps in a row double it;
    the state then ends with the scale and that count.
    """
    import jax
    import jax.numpy as jnp

    cdt = jnp.dtype(compute_dtype(precision))
    dynamic = dynamic and cdt == jnp.float16
    static = STATIC_LOSS_SCALE if cdt == jnp.float16 and not dynamic else 1.0

    def loss_fn(params, x, y, key, scale):
        logits = forward(builder, params, x, key, cdt)
        logp = jax.nn.log_softmax(logits)
        loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return loss * scale, loss

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def adam(params, m, v, t, grads):
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        c1, c2 = 1 - 0.9**t, 1 - 0.999**t
        params = jax.tree.map(
            lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + 1e-7), params, m, v
        )
        return params, m, v

    def step(carry, batch):
        if not dynamic:
            params, m, v, t, key = carry
            key, sub = jax.random.split(key)
            grads, loss = grad_fn(params, *batch, sub, static)
            grads = jax.tree.map(lambda g: g / static, grads)
            return (*adam(params, m, v, t + 1, grads), t + 1, key), loss
        params, m, v, t, key, scale, good = carry
        key, sub = jax.random.split(key)
        grads, loss = grad_fn(params, *batch, sub, scale)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        grads = jax.tree.map(lambda g: g / scale, grads)
        new = adam(params, m, v, t + 1, grads)
        params, m, v = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, (params, m, v))
        grow = finite & (good == DYNAMIC_GROWTH - 1)
        scale = jnp.where(finite, jnp.where(grow, scale * 2, scale), scale / 2)
        good = jnp.where(finite & ~grow, good + 1, 0)
        return (params, m, v, t + jnp.where(finite, 1, 0), key, scale, good), loss

    @jax.jit
    def epoch(state, xs, ys):
        state, losses = jax.lax.scan(step, state, (xs, ys))
        return state, losses

    return epoch


class ReferenceSession:
    """The hand-written loop of a request, its state and data on the device (a `Session`).

    Each `call` runs the request's epochs, one jitted ``lax.scan`` epoch each, timed on
    the host clock after the epoch's losses are read back; `predict` runs the forward
    pass (jitted, in the compute dtype, dropout off) over the data's batches from the host
    and reads the outputs back, as `Trainer.predict` does.
    """

    def __init__(self, request: RunRequest):
        import jax
        import jax.numpy as jnp

        cfg, (x, y) = request.config, request.data
        builder = cfg.builder()
        self._context = precision_context(request.precision)
        self.request, self.precision = request, ""
        with self._context:
            params = jax.device_put(init_params(builder, request.seed))
            zeros = jax.tree.map(jnp.zeros_like, params)
            self.state = (params, zeros, zeros, jnp.float32(0), jax.random.key(request.seed))
            steps = len(x) // cfg.batch
            self.x = x[: steps * cfg.batch].reshape(steps, cfg.batch, *x.shape[1:])
            self.xs = jax.device_put(self.x)
            self.ys = jax.device_put(y[: steps * cfg.batch].reshape(steps, cfg.batch))
            self.epoch = make_epoch(builder, request.precision)
            cdt = jnp.dtype(compute_dtype(request.precision))
            # Dropout off at inference: a forward pass without the builder's dropout layers.
            self._forward = jax.jit(
                lambda p, xb: jax.lax.map(
                    lambda b: forward(builder, p, b, jax.random.key(0), cdt, training=False), xb
                )
            )
        scaled = compute_dtype(request.precision) == "float16"
        scale = f", static loss scale {STATIC_LOSS_SCALE:g}" if scaled else ""
        self.detail = f"hand-written lax.scan epoch, Adam{scale}"

    def _one_epoch(self) -> np.ndarray:
        self.state, losses = self.epoch(self.state, self.xs, self.ys)
        return np.asarray(losses)  # waits for the device

    def call(self) -> Call:
        with self._context:
            return timed_epochs(self._one_epoch, self.request.epochs)

    def predict(self) -> float:
        import jax

        def run() -> np.ndarray:
            return np.asarray(self._forward(self.state[0], jax.device_put(self.x)))

        with self._context:
            return timed(run)


def prepare_reference(request: RunRequest) -> ReferenceSession:
    """The ``jax-reference`` runner: the hand-written loop's `ReferenceSession`."""
    return ReferenceSession(request)
