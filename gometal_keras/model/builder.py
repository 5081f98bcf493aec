"""Go-Metal's chainable ``ModelBuilder`` on Keras 3.

Example:
    >>> from gometal_keras.model.builder import ModelBuilder
    >>> model = (ModelBuilder([64, 784]).AddDense(512, True, "dense1").AddReLU("relu1")
    ...          .AddDropout(0.2, "dropout1").AddDense(10, True, "output").Compile())
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras

from gometal_keras.core.seeds import check_seed, layer_seeds
from gometal_keras.model.layer_names import check_name
from gometal_keras.model.layer_rules import resolve_policy
from gometal_keras.model.layers import LayerSpec, make_spec

PolicyLike = str | keras.DTypePolicy | None


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


#: The attribute a model made by `ModelBuilder.compile` (or read from a checkpoint) carries:
#: the dtype policy it was built under. Its layers cannot always say: under a mixed policy
#: the last layer runs in float32, so a model whose only weighted layer is its last shows
#: no mixed layer at all.
BUILT_UNDER = "gometal_built_under"


class ModelBuilder:
    """Chainable model builder with Go-Metal's API, compiling to a ``keras.Sequential``.

    Images are given NCHW as in Go-Metal (``[batch, channels, height, width]``) and every shape
    the builder reports is in that layout; inside Keras they are channels-last, so the compiled
    model's input is ``(H, W, C)`` and you feed it NHWC arrays. Every ``add_*`` validates at once
    (ValueError/TypeError naming the layer) and leaves the builder unchanged when it rejects.
    Unnamed layers are called ``f"{kind}_{n}"``, n being the layer's ordinal among layers of its
    kind (``dense_1``, ``relu_1``, ``dense_2``), bumped past names already taken.

    Sequences are ``[batch, seq_len, features]`` (the same layout in Keras); ``[batch,
    seq_len]`` of integer token ids is a ``[batch, features]`` input that an embedding, the
    first layer, reads as ids (fed as numbers, ids below 2**24, within ``num_embeddings``).

    Args:
        input_shape: ``[batch, features]`` (or ``[batch, seq_len]`` token ids), ``[batch,
            seq_len, features]`` or ``[batch, channels, height, width]``, positive ints.

    Example:
        >>> builder = ModelBuilder([32, 1, 28, 28]).add_conv2d(8, 3, padding=1).add_relu()
        >>> builder.add_maxpool2d(2).add_dense(10).output_shape
        (10,)
    """

    def __init__(self, input_shape: Sequence[int]) -> None:
        if not isinstance(input_shape, list | tuple):
            raise TypeError(f"input_shape must be a list or tuple of ints, got {input_shape!r}.")
        if len(input_shape) not in (2, 3, 4) or not all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0
            for d in input_shape
        ):
            raise ValueError(
                f"input_shape must be [batch, features], [batch, seq_len, features] or "
                f"[batch, channels, height, width] of positive ints, got {list(input_shape)!r}."
            )
        self._batch_size = int(input_shape[0])
        self._input_shape = tuple(int(d) for d in input_shape[1:])
        self._layers: list[LayerSpec] = []

    @property
    def batch_size(self) -> int:
        """The batch size (first entry of the Go-Metal input shape)."""
        return self._batch_size

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape, Go-Metal layout: ``(features,)``, ``(L, F)`` or ``(C, H, W)``."""
        return self._input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Per-sample output shape of the last layer (the input shape when empty), Go layout."""
        return self._layers[-1].output_shape if self._layers else self._input_shape

    @property
    def layers(self) -> tuple[LayerSpec, ...]:
        """The validated layers, in order."""
        return tuple(self._layers)

    @property
    def total_parameters(self) -> int:
        """Go-Metal's parameter count: the weights training updates.

        It equals the compiled model's trainable parameters. ``model.count_params()`` is
        larger by ``2 * features`` per BatchNorm: Keras also counts its moving mean and
        variance, which are non-trainable.

        Example:
            >>> b = ModelBuilder([8, 4]).add_dense(3).add_batchnorm()
            >>> model = b.compile()
            >>> b.total_parameters, model.count_params(), sum(w.size for w in model.get_weights())
            (21, 27, 27)
        """
        return sum(spec.params for spec in self._layers)

    TotalParameters = total_parameters

    def __len__(self) -> int:
        return len(self._layers)

    def __repr__(self) -> str:
        return (
            f"ModelBuilder(input_shape={[self._batch_size, *self._input_shape]}, "
            f"layers={len(self)}, total_parameters={self.total_parameters})"
        )

    def _add(self, kind: str, name: str | None, **args: Any) -> ModelBuilder:
        index = len(self._layers) + 1
        check_name(f"Layer {index} ({kind})", name)
        label = f"layer '{name}' ({kind})" if name else f"layer {index} ({kind})"
        if kind == "embedding" and self._layers:
            raise ValueError(
                f"{label.capitalize()}: an embedding reads the input's token ids, so it must be "
                f"the first layer; expected it before layer 1 ({self._layers[0].kind})."
            )
        spec = make_spec(kind, name or kind, args, self.output_shape, label)
        taken = {n for layer in self._layers for n in layer.keras_names}
        if name is None:
            n = sum(layer.kind == kind for layer in self._layers) + 1
            while not taken.isdisjoint(
                (spec := make_spec(kind, f"{kind}_{n}", args, spec.input_shape)).keras_names
            ):
                n += 1
        elif clash := sorted(taken.intersection(spec.keras_names)):
            raise ValueError(
                f"Layer '{name}' ({kind}): the name {clash[0]!r} is already used; "
                "expected a unique layer name."
            )
        self._layers.append(spec)
        return self

    def add_dense(self, units: int, use_bias: bool = True, name: str | None = None) -> ModelBuilder:
        """Fully connected layer; flattens an image (Keras' (H, W, C) order) or a sequence."""
        return self._add("dense", name, units=units, use_bias=use_bias)

    def add_conv2d(
        self,
        filters: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        use_bias: bool = True,
        name: str | None = None,
    ) -> ModelBuilder:
        """2-D convolution, square kernel, zero padding of ``padding`` pixels on each side."""
        return self._add_conv("conv2d", name, filters, kernel_size, stride, padding, use_bias)

    def _add_conv(self, kind: str, name: str | None, *args: Any) -> ModelBuilder:
        keys = ("filters", "kernel_size", "stride", "padding", "use_bias")
        return self._add(kind, name, **dict(zip(keys, args, strict=True)))

    def add_maxpool2d(
        self, pool_size: int, stride: int | None = None, name: str | None = None
    ) -> ModelBuilder:
        """Max pooling, no padding; ``stride`` defaults to ``pool_size``."""
        return self._add("maxpool2d", name, pool_size=pool_size, stride=stride)

    def add_relu(self, name: str | None = None) -> ModelBuilder:
        """ReLU activation."""
        return self._add("relu", name)

    def add_leaky_relu(self, negative_slope: float = 0.01, name: str | None = None) -> ModelBuilder:
        """Leaky ReLU with slope ``negative_slope`` (>= 0) below zero."""
        return self._add("leaky_relu", name, negative_slope=negative_slope)

    def add_elu(self, alpha: float = 1.0, name: str | None = None) -> ModelBuilder:
        """ELU activation with scale ``alpha``."""
        return self._add("elu", name, alpha=alpha)

    def add_sigmoid(self, name: str | None = None) -> ModelBuilder:
        """Sigmoid activation."""
        return self._add("sigmoid", name)

    def add_tanh(self, name: str | None = None) -> ModelBuilder:
        """Tanh activation."""
        return self._add("tanh", name)

    def add_swish(self, name: str | None = None) -> ModelBuilder:
        """Swish (SiLU) activation."""
        return self._add("swish", name)

    def add_softmax(self, axis: int = -1, name: str | None = None) -> ModelBuilder:
        """Softmax; ``axis`` in Go-Metal layout counting the batch dim (-1 = last, 1 = C)."""
        return self._add("softmax", name, axis=axis)

    def add_dropout(self, rate: float, name: str | None = None) -> ModelBuilder:
        """Dropout with ``rate`` in [0, 1), active in training only."""
        return self._add("dropout", name, rate=rate)

    def add_batchnorm(
        self,
        num_features: int | None = None,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        name: str | None = None,
    ) -> ModelBuilder:
        """Batch norm over channels/features; PyTorch ``momentum`` (Keras gets 1 - momentum)."""
        return self._add(
            "batchnorm", name, num_features=num_features, eps=eps, momentum=momentum, affine=affine
        )

    def add_embedding(
        self, num_embeddings: int, embedding_dim: int, name: str | None = None
    ) -> ModelBuilder:
        """Token embedding, the first layer on a ``[batch, seq_len]`` input of token ids.

        Args:
            num_embeddings: Vocabulary size; ids must lie in ``[0, num_embeddings)``.
            embedding_dim: Features per token: the output is ``(seq_len, embedding_dim)``.
            name: The layer's name (None: ``embedding_N``).

        Returns:
            This builder.

        Example:
            >>> ModelBuilder([8, 12]).add_embedding(100, 16).output_shape
            (12, 16)
        """
        return self._add(
            "embedding", name, num_embeddings=num_embeddings, embedding_dim=embedding_dim
        )

    def add_conv1d(
        self,
        filters: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        use_bias: bool = True,
        name: str | None = None,
    ) -> ModelBuilder:
        """1-D convolution over a sequence ``(seq_len, features)``, zero padding on each end.

        Args:
            filters: Output features per step.
            kernel_size: Steps the kernel spans.
            stride: Step of the kernel.
            padding: Zero steps added at each end.
            use_bias: Whether to add a bias.
            name: The layer's name (None: ``conv1d_N``).

        Returns:
            This builder.

        Example:
            >>> ModelBuilder([4, 10, 3]).add_conv1d(8, 3, padding=1).output_shape
            (10, 8)
        """
        return self._add_conv("conv1d", name, filters, kernel_size, stride, padding, use_bias)

    def add_layer_norm(
        self,
        normalized_shape: Sequence[int] | None = None,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        name: str | None = None,
    ) -> ModelBuilder:
        """Layer normalisation over the trailing dimensions ``normalized_shape`` (Go layout).

        Args:
            normalized_shape: The input's last dimensions to normalise over (None: the last).
            eps: Added to the variance (> 0).
            elementwise_affine: Whether to learn a scale and shift of that shape.
            name: The layer's name (None: ``layernorm_N``).

        Returns:
            This builder.

        Example:
            >>> ModelBuilder([4, 10, 16]).add_layer_norm([16]).total_parameters
            32
        """
        return self._add(
            "layernorm",
            name,
            normalized_shape=normalized_shape,
            eps=eps,
            elementwise_affine=elementwise_affine,
        )

    def add_multi_head_attention(
        self,
        num_heads: int,
        embed_dim: int | None = None,
        dropout_rate: float = 0.0,
        use_bias: bool = True,
        name: str | None = None,
    ) -> ModelBuilder:
        """Multi-head self-attention over a sequence ``(seq_len, features)``; same shape out.

        Query, key, value and output projections are ``features x features`` (each head
        ``features / num_heads`` wide), as in Go-Metal's fork, which always projects the
        output.

        Args:
            num_heads: Heads; must divide the features.
            embed_dim: The input's features, checked (None: taken from the input).
            dropout_rate: Dropout on the attention weights, in [0, 1), training only.
            use_bias: Whether the four projections have biases.
            name: The layer's name (None: ``multi_head_attention_N``).

        Returns:
            This builder.

        Example:
            >>> ModelBuilder([4, 10, 16]).add_multi_head_attention(4).total_parameters
            1088
        """
        return self._add(
            "multi_head_attention",
            name,
            num_heads=num_heads,
            embed_dim=embed_dim,
            dropout_rate=dropout_rate,
            use_bias=use_bias,
        )

    def add_global_avg_pool1d(self, name: str | None = None) -> ModelBuilder:
        """Mean over a sequence's steps: ``(seq_len, features)`` to ``(features,)``.

        A dense layer after a sequence flattens it instead (as it does an image).

        Example:
            >>> ModelBuilder([4, 10, 16]).add_global_avg_pool1d().output_shape
            (16,)
        """
        return self._add("global_avg_pool1d", name)

    def compile(self, dtype_policy: PolicyLike = None, seed: int | None = None) -> keras.Sequential:
        """Build a new Keras model from the layers (a fresh one on every call).

        Under a mixed policy (``mixed_*``, given or global) the last layer's Keras layers run in
        float32, so the output is float32. The global Keras policy is never changed.

        Args:
            dtype_policy: None (Keras' global policy), a policy name or a ``keras.DTypePolicy``.
            seed: Seed for initial weights and dropout masks (reproducible without touching
                Keras' global seed); None draws fresh ones.

        Returns:
            A built ``keras.Sequential`` named ``"gometal_model"`` taking ``(H, W, C)`` or
            ``(features,)`` samples.

        Example:
            >>> model = ModelBuilder([8, 4]).add_dense(2).compile("mixed_float16")
        """
        if not self._layers:
            raise ValueError("Cannot compile an empty model; expected at least one add_* call.")
        policy = resolve_policy(dtype_policy)
        effective = policy if policy is not None else keras.config.dtype_policy()
        mixed = effective.name.startswith("mixed_")
        last = len(self._layers) - 1
        seed = check_seed(seed, "compile(seed=...)")
        seeds = [None] * len(self._layers) if seed is None else layer_seeds(seed, len(self._layers))
        built = [
            layer
            for i, spec in enumerate(self._layers)
            for layer in spec.build("float32" if mixed and i == last else policy, seeds[i])
        ]
        taken, input_name, i = {layer.name for layer in built}, "input", 0
        while input_name in taken:
            i, input_name = i + 1, f"input_{i + 1}"
        dtype = None if policy is None else policy.variable_dtype  # not Keras' global floatx
        inputs = keras.Input(shape=_channels_last(self._input_shape), name=input_name, dtype=dtype)
        model = keras.Sequential([inputs, *built], name="gometal_model")
        setattr(model, BUILT_UNDER, effective.name)
        return model

    def summary(self) -> str:
        """Return a text table: name, kind, output shape (batch first, Go layout), params."""
        rows = [
            ("Layer", "Kind", "Output shape", "Params"),
            ("input", "input", str((self._batch_size, *self._input_shape)), "0"),
        ]
        rows += [
            (s.name, s.kind, str((self._batch_size, *s.output_shape)), f"{s.params:,}")
            for s in self._layers
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(
                cell.rjust(w) if i == 3 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            for row in rows
        ]
        rule = "-" * len(max(lines, key=len))
        return "\n".join(
            [lines[0], rule, *lines[1:], rule, f"Total parameters: {self.total_parameters:,}"]
        )

    AddDense = add_dense
    AddConv2D = add_conv2d
    AddMaxPool2D = add_maxpool2d
    AddReLU = add_relu
    AddLeakyReLU = add_leaky_relu
    AddELU = add_elu
    AddSigmoid = add_sigmoid
    AddTanh = add_tanh
    AddSwish = add_swish
    AddSoftmax = add_softmax
    AddDropout = add_dropout
    AddBatchNorm = add_batchnorm
    AddEmbedding = add_embedding
    AddConv1D = add_conv1d
    AddLayerNorm = add_layer_norm
    AddMultiHeadAttention = add_multi_head_attention
    AddGlobalAvgPool1D = add_global_avg_pool1d
    Compile = compile
    Summary = summary
