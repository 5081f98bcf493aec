"""A hand-written JAX training loop: the yardstick the Trainer is held to on JAX.

The same model as a bench config's builder chain, written directly in `jax.numpy`: one
`jax.jit` program runs a whole epoch as a `lax.scan` over device-resident batches, with a
hand-written Adam (float32 master weights) and, under mixed precision, float16/bfloat16
compute with a static loss scale (no overflow check: the cheapest honest loop). It is what
"a hand-written whole-epoch JAX loop" means in bench/RESULTS.md. JAX backend only.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from gometal_keras.builder import ModelBuilder

STATIC_LOSS_SCALE = 1024.0
COMPUTE = {
    "float32": "float32",
    "float32-full": "float32",
    "mixed_float16": "float16",
    "mixed_bfloat16": "bfloat16",
}


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


def make_epoch(builder: ModelBuilder, precision: str, lr: float = 1e-3) -> Any:
    """Return ``epoch(state, xs, ys, key) -> (state, losses)``, jitted; state = (p, m, v, t)."""
    import jax
    import jax.numpy as jnp

    cdt = jnp.dtype(COMPUTE[precision])
    scale = STATIC_LOSS_SCALE if cdt == jnp.float16 else 1.0
    specs = builder.layers

    def forward(params, x, key):
        h = x.astype(cdt)
        for i, (spec, p) in enumerate(zip(specs, params, strict=True)):
            a = spec.args
            if spec.kind == "dense":
                h = h.reshape(h.shape[0], -1) @ p["w"].astype(cdt)
                h = h + p["b"].astype(cdt) if "b" in p else h
            elif spec.kind == "conv2d":
                pad = a["padding"]
                h = jax.lax.conv_general_dilated(
                    h,
                    p["w"].astype(cdt),
                    (a["stride"],) * 2,
                    [(pad, pad)] * 2,
                    dimension_numbers=("NHWC", "HWIO", "NHWC"),
                )
                h = h + p["b"].astype(cdt) if "b" in p else h
            elif spec.kind == "maxpool2d":
                s, w = a["stride"] or a["pool_size"], a["pool_size"]
                h = jax.lax.reduce_window(
                    h, -jnp.inf, jax.lax.max, (1, w, w, 1), (1, s, s, 1), "VALID"
                )
            elif spec.kind == "relu":
                h = jax.nn.relu(h)
            elif spec.kind == "dropout":
                keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1 - a["rate"], h.shape)
                h = jnp.where(keep, h / (1 - a["rate"]), 0).astype(cdt)
            else:
                raise ValueError(f"The reference loop has no {spec.kind} layer.")
        return h.astype(jnp.float32)

    def loss_fn(params, x, y, key):
        logits = forward(params, x, key)
        logp = jax.nn.log_softmax(logits)
        loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
        return loss * scale, loss

    grad_fn = jax.grad(loss_fn, has_aux=True)

    def step(carry, batch):
        params, m, v, t, key = carry
        key, sub = jax.random.split(key)
        grads, loss = grad_fn(params, *batch, sub)
        t = t + 1
        grads = jax.tree.map(lambda g: g / scale, grads)
        m = jax.tree.map(lambda m, g: 0.9 * m + 0.1 * g, m, grads)
        v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g * g, v, grads)
        c1, c2 = 1 - 0.9**t, 1 - 0.999**t
        params = jax.tree.map(
            lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + 1e-7), params, m, v
        )
        return (params, m, v, t, key), loss

    @jax.jit
    def epoch(state, xs, ys):
        state, losses = jax.lax.scan(step, state, (xs, ys))
        return state, losses

    return epoch


def run_reference(
    cfg: Any, precision: str, data: tuple, warmup: int, repeats: int, seed: int
) -> tuple[list[float], np.ndarray]:
    """Time `warmup + repeats` epochs; return the timed epochs' seconds and last losses."""
    import jax
    import jax.numpy as jnp

    builder = cfg.builder()
    params = jax.device_put(init_params(builder, seed))
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = (params, zeros, zeros, jnp.float32(0), jax.random.key(seed))
    steps = len(data[0]) // cfg.batch
    n = steps * cfg.batch
    xs = jax.device_put(data[0][:n].reshape(steps, cfg.batch, *data[0].shape[1:]))
    ys = jax.device_put(data[1][:n].reshape(steps, cfg.batch))
    epoch = make_epoch(builder, precision)
    times, losses = [], None
    for i in range(warmup + repeats):
        start = time.perf_counter()
        state, losses = epoch(state, xs, ys)
        losses = np.asarray(losses)  # waits for the device
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times, losses
