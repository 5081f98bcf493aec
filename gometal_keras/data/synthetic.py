"""Synthetic data: the Go-Metal demo's data set, and trial batches shaped for any model.

`Trainer` times a few steps of the user's model under each candidate precision before
choosing one (`gometal_keras.planning.autotune`). The values of those trial batches do not matter
for speed; shapes, dtypes and label ranges do, and they must give a finite loss when
training is sound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gometal_keras.core.integers import count

if TYPE_CHECKING:
    import keras

    from gometal_keras.core.config import TrainerConfig


def demo_dataset(
    samples: int = 1000, features: int = 784, classes: int = 10, seed: int = 42
) -> tuple[np.ndarray, np.ndarray]:
    """Return the seed demo's synthetic classification data.

    Sample i has class ``i mod classes``; feature j is
    ``clip(class/10 + U(-0.15, 0.15) + 0.2*sin(0.1*j + class), 0, 1)``; the samples are then
    shuffled. A private generator is used, so global random state is untouched.

    Args:
        samples: Number of samples.
        features: Features per sample.
        classes: Number of classes.
        seed: Seed of the generator.

    Returns:
        ``(x, y)``: float32 features ``(samples, features)`` and int32 labels ``(samples,)``.

    Example:
        >>> x, y = demo_dataset(samples=20, features=8)
        >>> x.shape, y.shape, int(y.max()) < 10
        ((20, 8), (20,), True)
    """
    samples, features, classes = (
        count(f"demo_dataset {name}", value)
        for name, value in (("samples", samples), ("features", features), ("classes", classes))
    )
    rng = np.random.default_rng(seed)
    labels = np.arange(samples) % classes
    j = np.arange(features)
    noise = rng.uniform(-0.15, 0.15, (samples, features))
    wave = 0.2 * np.sin(0.1 * j[None, :] + labels[:, None])
    x = np.clip(labels[:, None] / 10.0 + noise + wave, 0.0, 1.0).astype(np.float32)
    order = rng.permutation(samples)
    return x[order], labels[order].astype(np.int32)


def demo_tokens(
    samples: int = 1000, tokens: int = 32, vocab: int = 1000, classes: int = 10, seed: int = 42
) -> tuple[np.ndarray, np.ndarray]:
    """Return synthetic token sequences whose class is the vocabulary band they lean on.

    The vocabulary is cut into `classes` equal bands. Sample i has class ``i mod classes``;
    each of its tokens is drawn from its class's band with probability 1/2, else from the
    whole vocabulary; the samples are then shuffled. So the class is the band most of a
    sequence's tokens fall in: learnable by an embedding and a mean over the sequence, the
    demo's small transformer. A private generator is used.

    Args:
        samples: Number of sequences.
        tokens: Tokens per sequence.
        vocab: Token ids are ``0..vocab-1``; at least `classes`.
        classes: Number of classes.
        seed: Seed of the generator.

    Returns:
        ``(x, y)``: int32 token ids ``(samples, tokens)`` and int32 labels ``(samples,)``.

    Example:
        >>> x, y = demo_tokens(samples=20, tokens=8, vocab=50, classes=5)
        >>> x.shape, x.dtype, int(x.max()) < 50, sorted(set(y.tolist()))
        ((20, 8), dtype('int32'), True, [0, 1, 2, 3, 4])
    """
    samples, tokens, vocab, classes = (
        count(f"demo_tokens {name}", value)
        for name, value in (("samples", samples), ("tokens", tokens), ("vocab", vocab),
                            ("classes", classes))
    )
    if vocab < classes:
        raise ValueError(f"demo_tokens vocab is {vocab}; expected at least classes ({classes}).")
    rng = np.random.default_rng(seed)
    labels = np.arange(samples) % classes
    band = vocab // classes
    own = labels[:, None] * band + rng.integers(0, band, (samples, tokens))
    anywhere = rng.integers(0, vocab, (samples, tokens))
    x = np.where(rng.random((samples, tokens)) < 0.5, own, anywhere).astype(np.int32)
    order = rng.permutation(samples)
    return x[order], labels[order].astype(np.int32)


def synthetic_batches(
    model: keras.Model, config: TrainerConfig, steps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return `steps` batches of random inputs and matching labels for `model`.

    Args:
        model: A built Keras model.
        config: Gives the batch size and the loss (which decides the label kind).
        steps: Number of batches.
        seed: Seed of a private generator (global random state is left alone).

    Returns:
        ``(xs, ys)`` stacked on a leading ``steps`` axis.

    Example:
        >>> import keras
        >>> from gometal_keras.core.config import TrainerConfig
        >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        >>> xs, ys = synthetic_batches(m, TrainerConfig(batch_size=2), 5, seed=0)
        >>> xs.shape, ys.shape
        ((5, 2, 4), (5, 2))
    """
    rng = np.random.default_rng(seed)
    batch = (steps, config.batch_size)
    x = rng.uniform(0.0, 1.0, (*batch, *model.input_shape[1:])).astype(np.float32)
    out = tuple(model.output_shape[1:])
    if config.loss == "sparse_categorical_crossentropy":
        return x, rng.integers(0, out[-1], batch).astype(np.int32)
    if config.loss == "categorical_crossentropy":
        return x, np.eye(out[-1], dtype=np.float32)[rng.integers(0, out[-1], (*batch, *out[:-1]))]
    if config.problem_type == "classification":
        return x, rng.integers(0, 2, (*batch, *out)).astype(np.float32)
    return x, rng.standard_normal((*batch, *out)).astype(np.float32)
