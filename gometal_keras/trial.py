"""Synthetic data for trial steps: the shapes and label kinds a model and loss expect.

`Trainer` times a few steps of the user's model under each candidate precision before
choosing one. The values do not matter for speed; shapes, dtypes and label ranges do, and
they must give a finite loss when training is sound.
"""

from __future__ import annotations

import keras
import numpy as np

from gometal_keras.config import TrainerConfig


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
