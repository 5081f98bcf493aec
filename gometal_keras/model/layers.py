"""The layer table: one spec per Go-Metal layer kind, mapped onto Keras 3 layers.

Shapes here are per-sample and in Go-Metal layout: ``(features,)`` (``(seq_len,)`` token ids
for an embedding), ``(seq_len, features)`` or ``(C, H, W)``. The Keras layers made from a spec
work channels-last, ``(H, W, C)``, as Keras expects; sequences are the same in both.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import keras

from gometal_keras.core.seeds import layer_seeds
from gometal_keras.model.layer_rules import (
    Check,
    Shape,
    check_attention,
    check_batchnorm,
    check_conv1d,
    check_layernorm,
    check_pool1d,
    check_softmax,
    check_tokens,
    check_window,
    features,
    flag,
    integer,
    keras_axis,
    layernorm_axes,
    non_negative_int,
    optional_positive_int,
    optional_shape,
    positive_int,
    real,
    window_out,
)


def _glorot(seed: int | None) -> keras.initializers.Initializer:
    return keras.initializers.GlorotUniform(seed=seed)


def _make_dense(name: str, a: dict, s: Shape, dtype: Any) -> list[keras.layers.Layer]:
    head = [keras.layers.Flatten(name=f"{name}_flatten", dtype=dtype)] if len(s) > 1 else []
    return [
        *head,
        keras.layers.Dense(
            a["units"],
            use_bias=a["use_bias"],
            name=name,
            dtype=dtype,
            kernel_initializer=_glorot(a["seed"]),
        ),
    ]


def _conv_maker(pad: type, conv: type) -> Callable[[str, dict, Shape, Any], list]:
    """A conv kind's ``make``: zero padding of ``padding`` on each side, then a valid conv."""

    def make(name: str, a: dict, s: Shape, dtype: Any) -> list[keras.layers.Layer]:
        p = a["padding"]
        head = [pad(p, name=f"{name}_pad", dtype=dtype)] if p else []
        return [
            *head,
            conv(
                a["filters"],
                a["kernel_size"],
                strides=a["stride"],
                padding="valid",
                use_bias=a["use_bias"],
                name=name,
                dtype=dtype,
                kernel_initializer=_glorot(a["seed"]),
            ),
        ]

    return make


#: The arguments of conv2d and conv1d.
_CONV_FIELDS = MappingProxyType(
    {
        "filters": positive_int,
        "kernel_size": positive_int,
        "stride": positive_int,
        "padding": non_negative_int,
        "use_bias": flag,
    }
)


@keras.saving.register_keras_serializable(package="gometal_keras")
class SelfAttention(keras.layers.Layer):
    """Self-attention over a sequence: Keras' ``MultiHeadAttention`` with query = key = value.

    A ``keras.Sequential`` hands a layer one input; this layer hands it to the attention as
    query and value. Its dtype policy is the attention's, so Keras' own mixed-precision
    handling applies (the softmax of ``MultiHeadAttention`` as Keras runs it).

    Args:
        num_heads: Attention heads; ``key_dim`` is the features divided by the heads.
        key_dim: Size of each head.
        dropout: Dropout rate on the attention weights (training only).
        use_bias: Whether the query, key, value and output projections have biases.
        seed: Seed of the four kernels' Glorot-uniform draws (one seed each) and of the
            dropout; None draws fresh ones.
        **kwargs: ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Example:
        >>> layer = SelfAttention(2, 4, seed=1)
        >>> tuple(layer(keras.ops.ones((3, 5, 8))).shape)
        (3, 5, 8)
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        dropout: float = 0.0,
        use_bias: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.num_heads, self.key_dim, self.rate = num_heads, key_dim, dropout
        self.use_bias, self.seed = use_bias, seed
        self.attention = keras.layers.MultiHeadAttention(
            num_heads,
            key_dim,
            dropout=dropout,
            use_bias=use_bias,
            seed=seed,
            dtype=self.dtype_policy,
            name="attention",
        )

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.attention.build(input_shape, input_shape)
        if self.seed is not None:  # Keras would draw the four kernels from one seed alike
            kernels = [self.attention.query_dense, self.attention.key_dense]
            kernels += [self.attention.value_dense, self.attention.output_dense]
            for dense, seed in zip(kernels, layer_seeds(self.seed, 4), strict=True):
                init = keras.initializers.GlorotUniform(seed=seed)
                dense.kernel.assign(init(dense.kernel.shape, dense.kernel.dtype))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.attention(inputs, inputs, training=training)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "dropout": self.rate,
            "use_bias": self.use_bias,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class LayerKind:
    """How one Go-Metal layer kind is validated, sized, counted and turned into Keras layers.

    Attributes:
        fields: Argument name -> checker ``(label, key, value) -> normalised value``.
        make: ``(name, args, input_shape, dtype) -> [keras layers]`` (channels-last).
        check: Shape-dependent validation ``(label, args, input_shape)``; raises ValueError.
        out: ``(args, input_shape) -> output_shape`` in Go-Metal layout.
        params: ``(args, input_shape) -> Go-Metal parameter count``.
        extra_names: ``(args, input_shape) -> suffixes`` of helper layers (``"_flatten"``, ...).
    """

    fields: Mapping[str, Check]
    make: Callable[[str, dict, Shape, Any], list[keras.layers.Layer]]
    check: Callable[[str, dict, Shape], None] = lambda label, a, s: None
    out: Callable[[dict, Shape], Shape] = lambda a, s: s
    params: Callable[[dict, Shape], int] = lambda a, s: 0
    extra_names: Callable[[dict, Shape], tuple[str, ...]] = lambda a, s: ()


def _activation(make: Callable[[str, dict, Any], keras.layers.Layer], **fields: Check) -> LayerKind:
    return LayerKind(fields=fields, make=lambda name, a, s, dtype: [make(name, a, dtype)])


def _act(fn: str) -> LayerKind:
    return _activation(lambda n, a, d: keras.layers.Activation(fn, name=n, dtype=d))


LAYER_KINDS: Mapping[str, LayerKind] = MappingProxyType(
    {
        "dense": LayerKind(
            fields={"units": positive_int, "use_bias": flag},
            make=_make_dense,
            out=lambda a, s: (a["units"],),
            params=lambda a, s: math.prod(s) * a["units"] + a["units"] * a["use_bias"],
            extra_names=lambda a, s: ("_flatten",) if len(s) > 1 else (),
        ),
        "conv2d": LayerKind(
            fields=_CONV_FIELDS,
            make=_conv_maker(keras.layers.ZeroPadding2D, keras.layers.Conv2D),
            check=lambda lb, a, s: check_window(
                lb, "kernel_size", a["kernel_size"], s, a["padding"]
            ),
            out=lambda a, s: window_out(
                a["filters"], s, a["kernel_size"], a["stride"], a["padding"]
            ),
            params=lambda a, s: (s[0] * a["kernel_size"] ** 2 + a["use_bias"]) * a["filters"],
            extra_names=lambda a, s: ("_pad",) if a["padding"] else (),
        ),
        "maxpool2d": LayerKind(
            fields={"pool_size": positive_int, "stride": optional_positive_int},
            check=lambda lb, a, s: check_window(lb, "pool_size", a["pool_size"], s),
            out=lambda a, s: window_out(s[0], s, a["pool_size"], a["stride"] or a["pool_size"]),
            make=lambda n, a, s, d: [
                keras.layers.MaxPooling2D(
                    a["pool_size"],
                    strides=a["stride"] or a["pool_size"],
                    padding="valid",
                    name=n,
                    dtype=d,
                )
            ],
        ),
        "relu": _activation(lambda n, a, d: keras.layers.ReLU(name=n, dtype=d)),
        "leaky_relu": _activation(
            lambda n, a, d: keras.layers.LeakyReLU(
                negative_slope=a["negative_slope"], name=n, dtype=d
            ),
            negative_slope=real(0.0, math.inf, hi_open=True),
        ),
        "elu": _activation(
            lambda n, a, d: keras.layers.ELU(alpha=a["alpha"], name=n, dtype=d),
            alpha=real(-math.inf, math.inf, True, True),
        ),
        "sigmoid": _act("sigmoid"),
        "tanh": _act("tanh"),
        "swish": _act("swish"),
        "softmax": LayerKind(
            fields={"axis": integer},
            check=check_softmax,
            make=lambda n, a, s, d: [
                keras.layers.Softmax(axis=keras_axis(a["axis"], s), name=n, dtype=d)
            ],
        ),
        "dropout": _activation(
            lambda n, a, d: keras.layers.Dropout(a["rate"], seed=a["seed"], name=n, dtype=d),
            rate=real(0.0, 1.0, hi_open=True),
        ),
        "batchnorm": LayerKind(
            fields={
                "num_features": optional_positive_int,
                "eps": real(0.0, math.inf, True, True),
                "momentum": real(0.0, 1.0),
                "affine": flag,
            },
            check=check_batchnorm,
            params=lambda a, s: 2 * features(s) if a["affine"] else 0,
            make=lambda n, a, s, d: [
                keras.layers.BatchNormalization(
                    axis=-1,
                    epsilon=a["eps"],
                    momentum=1.0 - a["momentum"],
                    center=a["affine"],
                    scale=a["affine"],
                    name=n,
                    dtype=d,
                )
            ],
        ),
        "embedding": LayerKind(
            fields={"num_embeddings": positive_int, "embedding_dim": positive_int},
            check=check_tokens,
            out=lambda a, s: (s[0], a["embedding_dim"]),
            params=lambda a, s: a["num_embeddings"] * a["embedding_dim"],
            make=lambda n, a, s, d: [
                keras.layers.Embedding(
                    a["num_embeddings"],
                    a["embedding_dim"],
                    embeddings_initializer=keras.initializers.RandomUniform(seed=a["seed"]),
                    name=n,
                    dtype=d,
                )
            ],
        ),
        "conv1d": LayerKind(
            fields=_CONV_FIELDS,
            make=_conv_maker(keras.layers.ZeroPadding1D, keras.layers.Conv1D),
            check=check_conv1d,
            out=lambda a, s: (
                (s[0] + 2 * a["padding"] - a["kernel_size"]) // a["stride"] + 1,
                a["filters"],
            ),
            params=lambda a, s: (s[1] * a["kernel_size"] + a["use_bias"]) * a["filters"],
            extra_names=lambda a, s: ("_pad",) if a["padding"] else (),
        ),
        "layernorm": LayerKind(
            fields={
                "normalized_shape": optional_shape,
                "eps": real(0.0, math.inf, True, True),
                "elementwise_affine": flag,
            },
            check=check_layernorm,
            params=lambda a, s: (
                2 * math.prod(a["normalized_shape"] or s[-1:]) if a["elementwise_affine"] else 0
            ),
            make=lambda n, a, s, d: [
                keras.layers.LayerNormalization(
                    axis=layernorm_axes(a["normalized_shape"], s),
                    epsilon=a["eps"],
                    center=a["elementwise_affine"],
                    scale=a["elementwise_affine"],
                    name=n,
                    dtype=d,
                )
            ],
        ),
        "multi_head_attention": LayerKind(
            fields={
                "num_heads": positive_int,
                "embed_dim": optional_positive_int,
                "dropout_rate": real(0.0, 1.0, hi_open=True),
                "use_bias": flag,
            },
            check=check_attention,
            params=lambda a, s: 4 * (s[1] * s[1] + s[1] * a["use_bias"]),
            make=lambda n, a, s, d: [
                SelfAttention(
                    a["num_heads"],
                    s[1] // a["num_heads"],
                    dropout=a["dropout_rate"],
                    use_bias=a["use_bias"],
                    seed=a["seed"],
                    name=n,
                    dtype=d,
                )
            ],
        ),
        "global_avg_pool1d": LayerKind(
            fields={},
            check=check_pool1d,
            out=lambda a, s: (s[1],),
            make=lambda n, a, s, d: [keras.layers.GlobalAveragePooling1D(name=n, dtype=d)],
        ),
    }
)


@dataclass(frozen=True)
class LayerSpec:
    """One validated layer of a model, as the builder stores it.

    Attributes:
        kind: A key of ``LAYER_KINDS`` (``"dense"``, ``"conv2d"``, ...).
        name: The layer's unique name; the main Keras layer gets exactly this name.
        args: The normalised arguments (read-only mapping).
        input_shape: Per-sample input shape, Go-Metal layout.
        output_shape: Per-sample output shape, Go-Metal layout.
        params: Go-Metal parameter count (Keras' BatchNorm also holds 2*features moving stats).

    Example:
        >>> make_spec("dense", "fc", {"units": 10, "use_bias": True}, (784,)).params
        7850
    """

    kind: str
    name: str
    args: Mapping[str, Any] = field(hash=False)
    input_shape: Shape
    output_shape: Shape
    params: int

    @property
    def keras_names(self) -> tuple[str, ...]:
        """Names of every Keras layer this spec builds (helpers first, then ``name``)."""
        extra = LAYER_KINDS[self.kind].extra_names(dict(self.args), self.input_shape)
        return (*(self.name + suffix for suffix in extra), self.name)

    def build(
        self, dtype: str | keras.DTypePolicy | None = None, seed: int | None = None
    ) -> list[keras.layers.Layer]:
        """Make fresh Keras layers for this spec (channels-last).

        Dense after an image flattens Keras' (H, W, C) order, not Go-Metal's (C, H, W) order.

        Args:
            dtype: Keras dtype policy (name or object) for every layer; None = global policy.
            seed: Seed for the initial weights and dropout masks; None draws fresh ones.

        Returns:
            The Keras layers, in call order.

        Example:
            >>> spec = make_spec("conv2d", "c1", {"filters": 8, "kernel_size": 3, "stride": 1,
            ...                  "padding": 1, "use_bias": True}, (1, 28, 28))
            >>> [layer.name for layer in spec.build("float32")]
            ['c1_pad', 'c1']
        """
        args = {**self.args, "seed": seed}
        return LAYER_KINDS[self.kind].make(self.name, args, self.input_shape, dtype)


def make_spec(
    kind: str, name: str, args: Mapping[str, Any], input_shape: Shape, label: str | None = None
) -> LayerSpec:
    """Validate a layer's arguments against its input and compute its shape and parameters.

    Args:
        kind: A key of ``LAYER_KINDS``.
        name: The layer's name.
        args: Exactly the argument names the kind declares in ``LayerKind.fields``.
        input_shape: Per-sample input shape, Go-Metal layout.
        label: How error messages name the layer; default ``"layer 'NAME' (KIND)"``.

    Returns:
        The validated LayerSpec.

    Example:
        >>> make_spec("maxpool2d", "p", {"pool_size": 2, "stride": None}, (8, 28, 28)).output_shape
        (8, 14, 14)
    """
    label = label or f"layer '{name}' ({kind})"
    if kind not in LAYER_KINDS:
        raise ValueError(f"Unknown layer kind {kind!r}; expected one of {sorted(LAYER_KINDS)}.")
    table = LAYER_KINDS[kind]
    if set(args) != set(table.fields):
        raise TypeError(
            f"{label.capitalize()}: arguments {sorted(args)} do not match the "
            f"expected {sorted(table.fields)}."
        )
    clean = {key: check(label, key, args[key]) for key, check in table.fields.items()}
    shape = tuple(input_shape)
    table.check(label, clean, shape)
    return LayerSpec(
        kind,
        name,
        MappingProxyType(clean),
        shape,
        table.out(clean, shape),
        table.params(clean, shape),
    )
