"""Benchmark configurations and their work counts (FLOPs and bytes per training step).

Every configuration is a `ModelBuilder` chain, so all runners train the same model. The
counts are computed from the builder's layer specs (Go-Metal layout, per sample):

* Forward FLOPs per sample: dense ``2 * in_features * units``; conv2d
  ``2 * C_in * k * k * C_out * H_out * W_out``; conv1d ``2 * F_in * k * filters * L_out``;
  multi-head attention over ``L`` steps of ``F`` features ``8 * L * F * F`` (the query,
  key, value and output projections) ``+ 4 * L * L * F`` (scores and their weighted sum)
  (one multiply-add = 2 FLOPs). Bias adds, activations, normalisation, the softmax,
  pooling, dropout, embedding look-ups, the loss and the optimizer are not counted.
* Training FLOPs per step = ``3 * batch * forward`` (forward, gradient w.r.t. inputs and
  gradient w.r.t. weights each cost one forward's matrix work).
* Bytes per step (an estimate of the least device-memory traffic):
  ``40 * P`` for the parameters (P = parameter count; float32 master weights read in the
  forward and the backward pass, the float32 gradient written, Adam reading weight,
  gradient, m, v and writing weight, m, v: 3*4 + 7*4 bytes), plus
  ``4 * A * c`` for the activations (A = elements of every layer output, summed over the
  batch; c = bytes of the compute dtype, 4 or 2; each output written and read back once
  in the forward pass and its gradient written and read once in the backward pass), plus
  the input batch read once in the compute dtype. An attention layer's inner tensors
  (queries, keys, values, scores) are not in ``A``: its bytes are under-counted.
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
        name: ``seed``, ``wide``, ``wide-4096``, ``cnn`` or ``transformer`` (`configs`).
        batch: Samples per step.
        steps: Steps per timed epoch (the data set is ``batch * steps`` samples).
        make: Returns a fresh `ModelBuilder` for the model.
        note: What was changed for ``--quick`` (empty otherwise).
        vocab: For a model of token ids (an embedding first): ids are drawn from
            ``[0, vocab)``; 0 for the others (inputs uniform in [0, 1]).
    """

    name: str
    batch: int
    steps: int
    make: Callable[[int], ModelBuilder]
    note: str = ""
    vocab: int = 0

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


def transformer(
    seq_len: int = 128, vocab: int = 8000, width: int = 256, heads: int = 8, ffn: int = 1024
) -> Callable[[int], ModelBuilder]:
    """Go-Metal's "Transformer (small)": token ids -> embedding -> one encoder block
    (self-attention, layer norm, a position-wise feed-forward of two kernel-1 conv1d with
    ReLU, layer norm; no residual adds, which a chain cannot write) -> mean over the
    sequence -> dense 10 classes."""

    def make(batch: int) -> ModelBuilder:
        return (
            ModelBuilder([batch, seq_len])
            .add_embedding(vocab, width, "embed")
            .add_multi_head_attention(heads, name="attention")
            .add_layer_norm(name="norm1")
            .add_conv1d(ffn, 1, name="ffn1")
            .add_relu("ffn_relu")
            .add_conv1d(width, 1, name="ffn2")
            .add_layer_norm(name="norm2")
            .add_global_avg_pool1d("pool")
            .add_dense(10, True, "output")
        )

    return make


#: What ``--configs`` runs when not given: ``transformer`` is asked for by name, since the
#: hand-written runners (jax-reference, torch) have no sequence layers.
DEFAULT = ("seed", "wide", "wide-4096", "cnn")


def configs(quick: bool = False) -> dict[str, BenchConfig]:
    """The models timed through ``fit``, each at its own batch and steps per epoch.

    ``seed`` is Go-Metal's MLP at its batch of 64 (15 steps an epoch, about 1.6 ms on an
    H200: a per-epoch cost shows here first); ``wide`` the 784-4096-2048-10 MLP at 1024,
    ``wide-4096`` the same MLP at 4096 (the matrix units busy); ``cnn`` three conv blocks
    on 32x32x3 images; ``transformer`` one encoder block over 128 tokens of width 256
    (`transformer`). ``quick`` scales them down for a small CPU.

    Example:
        >>> {name: (c.batch, c.steps) for name, c in configs().items()}  # doctest: +ELLIPSIS
        {'seed': (64, 15), 'wide': (1024, 64), 'wide-4096': (4096, 16), 'cnn': (256, 32), ...}
        >>> configs()["transformer"].batch, configs()["transformer"].vocab
        (64, 8000)
    """
    wide = mlp((784, 4096, 2048, 10))
    if not quick:
        return {
            "seed": BenchConfig("seed", 64, 15, mlp((784, 512, 256, 10), 0.2)),
            "wide": BenchConfig("wide", 1024, 64, wide),
            "wide-4096": BenchConfig("wide-4096", 4096, 16, wide),
            "cnn": BenchConfig("cnn", 256, 32, cnn()),
            "transformer": BenchConfig("transformer", 64, 16, transformer(), vocab=8000),
        }
    small = mlp((784, 1024, 512, 10))
    return {
        "seed": BenchConfig("seed", 64, 15, mlp((784, 512, 256, 10), 0.2)),
        "wide": BenchConfig("wide", 256, 8, small, "quick: 784-1024-512-10, batch 256"),
        "wide-4096": BenchConfig("wide-4096", 1024, 4, small, "quick: 784-1024-512-10, batch 1024"),
        "cnn": BenchConfig(
            "cnn", 64, 4, cnn((16, 32, 64), 128), "quick: filters 16/32/64, dense 128, batch 64"
        ),
        "transformer": BenchConfig(
            "transformer",
            32,
            8,
            transformer(32, 1000, 64, 4, 256),
            "quick: 32 tokens of 1000, width 64, 4 heads, feed-forward 256, batch 32",
            vocab=1000,
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
    """Matrix FLOPs of one sample's forward pass (dense, conv and attention layers only).

    Example:
        >>> forward_flops_per_sample(ModelBuilder([2, 4, 8]).add_multi_head_attention(2))
        2560
    """
    total = 0
    for spec in builder.layers:
        if spec.kind == "dense":
            total += 2 * math.prod(spec.input_shape) * spec.args["units"]
        elif spec.kind == "conv2d":
            c_in, k = spec.input_shape[0], spec.args["kernel_size"]
            c_out, h, w = spec.output_shape
            total += 2 * c_in * k * k * c_out * h * w
        elif spec.kind == "conv1d":
            length, filters = spec.output_shape
            total += 2 * spec.input_shape[1] * spec.args["kernel_size"] * filters * length
        elif spec.kind == "multi_head_attention":
            length, width = spec.input_shape
            total += 8 * length * width * width + 4 * length * length * width
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
