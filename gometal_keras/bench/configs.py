"""Benchmark configurations and their work counts (FLOPs and bytes per training step).

Every configuration is a `ModelBuilder` chain, so all runners train the same model. The
counts are computed from the builder's layer specs (Go-Metal layout, per sample):

* Forward FLOPs per sample: dense ``2 * in_features * units``; conv2d
  ``2 * C_in * k * k * C_out * H_out * W_out`` (one multiply-add = 2 FLOPs). Bias adds,
  activations, pooling, dropout, the loss and the optimizer are not counted.
* Training FLOPs per step = ``3 * batch * forward`` (forward, gradient w.r.t. inputs and
  gradient w.r.t. weights each cost one forward's matrix work).
* Bytes per step (an estimate of the least device-memory traffic):
  ``40 * P`` for the parameters (P = parameter count; float32 master weights read in the
  forward and the backward pass, the float32 gradient written, Adam reading weight,
  gradient, m, v and writing weight, m, v: 3*4 + 7*4 bytes), plus
  ``4 * A * c`` for the activations (A = elements of every layer output, summed over the
  batch; c = bytes of the compute dtype, 4 or 2; each output written and read back once
  in the forward pass and its gradient written and read once in the backward pass), plus
  the input batch read once in the compute dtype.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from gometal_keras.model.builder import ModelBuilder

#: Bytes moved per parameter per Adam step (see the module docstring).
PARAM_BYTES = 40
#: Passes over each activation tensor per step (forward write + read, backward write + read).
ACTIVATION_PASSES = 4


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One benchmark model.

    Attributes:
        name: ``seed``, ``wide``, ``wide-4096`` or ``cnn`` (`configs`).
        batch: Samples per step.
        steps: Steps per timed epoch (the data set is ``batch * steps`` samples).
        make: Returns a fresh `ModelBuilder` for the model.
        note: What was changed for ``--quick`` (empty otherwise).
    """

    name: str
    batch: int
    steps: int
    make: Callable[[int], ModelBuilder]
    note: str = ""

    def builder(self) -> ModelBuilder:
        return self.make(self.batch)

    @property
    def samples(self) -> int:
        return self.batch * self.steps


def mlp(widths: tuple[int, ...], dropout: float = 0.0) -> Callable[[int], ModelBuilder]:
    """An MLP ``widths[0] -> ... -> widths[-1]`` with ReLU (and Dropout) between layers."""

    def make(batch: int) -> ModelBuilder:
        b = ModelBuilder([batch, widths[0]])
        for i, units in enumerate(widths[1:], 1):
            b.add_dense(units, True, f"dense{i}" if i < len(widths) - 1 else "output")
            if i < len(widths) - 1:
                b.add_relu(f"relu{i}")
                if dropout:
                    b.add_dropout(dropout, f"dropout{i}")
        return b

    return make


def cnn(
    filters: tuple[int, ...] = (32, 64, 128), hidden: int = 256
) -> Callable[[int], ModelBuilder]:
    """32x32x3 input; per filter count conv3x3 (pad 1), ReLU, maxpool2; dense, ReLU, dense 10."""

    def make(batch: int) -> ModelBuilder:
        b = ModelBuilder([batch, 3, 32, 32])
        for i, f in enumerate(filters, 1):
            b.add_conv2d(f, 3, 1, 1, True, f"conv{i}").add_relu(f"crelu{i}")
            b.add_maxpool2d(2, name=f"pool{i}")
        return b.add_dense(hidden, True, "fc1").add_relu("relu_fc").add_dense(10, True, "output")

    return make


def configs(quick: bool = False) -> dict[str, BenchConfig]:
    """The models timed through ``fit``, each at its own batch and steps per epoch.

    ``seed`` is Go-Metal's MLP at its batch of 64 (15 steps an epoch, about 1.6 ms on an
    H200: a per-epoch cost shows here first); ``wide`` the 784-4096-2048-10 MLP at 1024,
    ``wide-4096`` the same MLP at 4096 (the matrix units busy); ``cnn`` three conv blocks
    on 32x32x3 images. ``quick`` scales them down for a small CPU.

    Example:
        >>> {name: (c.batch, c.steps) for name, c in configs().items()}
        {'seed': (64, 15), 'wide': (1024, 64), 'wide-4096': (4096, 16), 'cnn': (256, 32)}
    """
    wide = mlp((784, 4096, 2048, 10))
    if not quick:
        return {
            "seed": BenchConfig("seed", 64, 15, mlp((784, 512, 256, 10), 0.2)),
            "wide": BenchConfig("wide", 1024, 64, wide),
            "wide-4096": BenchConfig("wide-4096", 4096, 16, wide),
            "cnn": BenchConfig("cnn", 256, 32, cnn()),
        }
    small = mlp((784, 1024, 512, 10))
    return {
        "seed": BenchConfig("seed", 64, 15, mlp((784, 512, 256, 10), 0.2)),
        "wide": BenchConfig("wide", 256, 8, small, "quick: 784-1024-512-10, batch 256"),
        "wide-4096": BenchConfig("wide-4096", 1024, 4, small, "quick: 784-1024-512-10, batch 1024"),
        "cnn": BenchConfig(
            "cnn", 64, 4, cnn((16, 32, 64), 128), "quick: filters 16/32/64, dense 128, batch 64"
        ),
    }


def describe(cfg: BenchConfig) -> dict[str, Any]:
    """Return a config as the JSON ``configs`` entry: sizes, work count, layers and note.

    Example:
        >>> d = describe(configs(quick=True)["seed"])
        >>> d["batch"], d["steps"], d["samples"], d["layers"][0]
        (64, 15, 960, 'dense (512,)')
    """
    b = cfg.builder()
    return dict(
        batch=cfg.batch,
        steps=cfg.steps,
        samples=cfg.samples,
        parameters=b.total_parameters,
        train_flops_per_step=train_flops_per_step(b),
        layers=[f"{s.kind} {s.output_shape}" for s in b.layers],
        note=cfg.note,
    )


def forward_flops_per_sample(builder: ModelBuilder) -> int:
    """Matrix FLOPs of one sample's forward pass (dense and conv2d layers only)."""
    total = 0
    for spec in builder.layers:
        if spec.kind == "dense":
            total += 2 * math.prod(spec.input_shape) * spec.args["units"]
        elif spec.kind == "conv2d":
            c_in, k = spec.input_shape[0], spec.args["kernel_size"]
            c_out, h, w = spec.output_shape
            total += 2 * c_in * k * k * c_out * h * w
    return total


def train_flops_per_step(builder: ModelBuilder, batch: int | None = None) -> int:
    """Training FLOPs of one step: 3 x forward x batch (the builder's batch by default)."""
    batch = builder.batch_size if batch is None else batch
    return 3 * batch * forward_flops_per_sample(builder)


def bytes_per_step(builder: ModelBuilder, precision: str, batch: int | None = None) -> int:
    """Estimated device-memory bytes of one Adam training step (see the module docstring)."""
    batch = builder.batch_size if batch is None else batch
    c = 2 if precision.startswith("mixed_") else 4
    activations = batch * sum(math.prod(s.output_shape) for s in builder.layers)
    inputs = batch * math.prod(builder.input_shape)
    return PARAM_BYTES * builder.total_parameters + ACTIVATION_PASSES * activations * c + inputs * c
