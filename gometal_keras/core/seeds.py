"""Seeds: the range a seed may take, and independent per-layer seeds derived from one.

A seed reaches the device as an integer tensor (Keras' `SeedGenerator` state, int32 on
PyTorch), so it must fit there: seeds are ints in ``[0, SEED_MAX]``, ``2**31 - 1``. Each
layer of a built model gets its own seed from numpy's `SeedSequence`, so runs with nearby
seeds (7 and 8) share no random stream, as ``seed + i`` per layer did (run 7's second layer
was run 8's first).

Example:
    >>> layer_seeds(7, 3) != layer_seeds(8, 3)[:3], len(set(layer_seeds(7, 3) + layer_seeds(8, 3)))
    (True, 6)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gometal_keras.core.integers import is_int

#: The largest seed: Keras' PyTorch backend holds seeds as int32.
SEED_MAX = 2**31 - 1


def check_seed(value: Any, what: str) -> int | None:
    """Return `value` as a seed (an int, numpy integers included) or None; raise if it is not.

    Args:
        value: The seed given.
        what: How error messages name it, e.g. ``"TrainerConfig.seed"``.

    Raises:
        TypeError: Not an int (a bool is not a seed).
        ValueError: Outside ``[0, SEED_MAX]``.

    Example:
        >>> check_seed(np.int64(3), "seed"), check_seed(None, "seed")
        (3, None)
        >>> check_seed(2**64, "seed")
        Traceback (most recent call last):
        ValueError: seed is 18446744073709551616; expected an int in [0, 2147483647].
    """
    if value is None:
        return None
    if not is_int(value):
        raise TypeError(f"{what} is {value!r}; expected an int or None.")
    if not 0 <= int(value) <= SEED_MAX:
        raise ValueError(f"{what} is {value!r}; expected an int in [0, {SEED_MAX}].")
    return int(value)


def layer_seeds(seed: int, count: int) -> list[int]:
    """`count` independent seeds in ``[0, SEED_MAX]`` for the layers of a model seeded `seed`.

    Args:
        seed: The model's seed.
        count: How many layers.

    Returns:
        The seeds, one per layer; the same for the same `seed`.

    Example:
        >>> layer_seeds(0, 2) == layer_seeds(0, 2), len(layer_seeds(0, 5))
        (True, 5)
    """
    state = np.random.SeedSequence(seed).generate_state(count, np.uint32)
    return [int(s) >> 1 for s in state]  # 31 bits: within SEED_MAX


def run_seed(seed: int | None) -> int:
    """`seed`, or a fresh one from the OS when it is None (global random state untouched).

    Example:
        >>> run_seed(5), 0 <= run_seed(None) <= SEED_MAX
        (5, True)
    """
    return seed if seed is not None else int(np.random.SeedSequence().entropy % (SEED_MAX + 1))
