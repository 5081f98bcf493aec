"""Synthetic data sets: the Go-Metal mixed-precision demo's, made reproducibly."""

from __future__ import annotations

import numpy as np


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
    for name, value in (("samples", samples), ("features", features), ("classes", classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"demo_dataset {name} is {value!r}; expected a positive int.")
    rng = np.random.default_rng(seed)
    labels = np.arange(samples) % classes
    j = np.arange(features)
    noise = rng.uniform(-0.15, 0.15, (samples, features))
    wave = 0.2 * np.sin(0.1 * j[None, :] + labels[:, None])
    x = np.clip(labels[:, None] / 10.0 + noise + wave, 0.0, 1.0).astype(np.float32)
    order = rng.permutation(samples)
    return x[order], labels[order].astype(np.int32)
