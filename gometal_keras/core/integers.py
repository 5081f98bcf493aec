"""The one rule for whole-number arguments across the API.

Every count a user passes (a batch size, a sample count, a cache size, an epoch number)
is accepted as any integral number, Python's `int` or numpy's (``np.int64(4)``, what an
array's ``.shape`` or ``.sum()`` gives), and is refused as a `bool` (``True`` is an int to
Python, never a count to a user), a float (``4.0``) or a string. Accepted values are handed
on as Python ints, so nothing downstream meets a numpy scalar.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """Whether `value` is a whole number by the API's rule: integral, not a bool.

    Args:
        value: Anything.

    Returns:
        True for Python and numpy ints; False for bools (Python's or numpy's), floats,
        strings and everything else.

    Example:
        >>> is_int(3), is_int(np.int64(3)), is_int(True), is_int(3.0)
        (True, True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def count(what: str, value: Any, minimum: int = 1) -> int:
    """`value` as a Python int of at least `minimum`, or ValueError naming `what`.

    Args:
        what: How the message names the argument (``"batch_size"``).
        value: The argument as given.
        minimum: The smallest value accepted (1 for sizes, 0 for limits that may be off).

    Returns:
        ``int(value)``.

    Raises:
        ValueError: `value` is not a whole number by `is_int`'s rule, or is below `minimum`.

    Example:
        >>> count("batch_size", np.int64(4))
        4
        >>> count("batch_size", 0)
        Traceback (most recent call last):
        ValueError: batch_size is 0; expected a positive int.
    """
    if not is_int(value) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int of at least {minimum}"
        raise ValueError(f"{what} is {value!r}; expected {expected}.")
    return int(value)
