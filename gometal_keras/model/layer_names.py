"""Layer names the builder accepts: exactly those Keras and its backends take everywhere.

A layer's name becomes a TensorFlow name scope, a path inside the ``.keras`` archive and a
key of the checkpoint's variables. TensorFlow refuses scope names with a space, ``:``, a
newline or most punctuation, but only when the first step is traced (a long "in user code"
error); Keras refuses ``/``; ``.`` and ``..`` are path components of their own. So the
builder takes ASCII letters, digits, ``_``, ``.`` and ``-``, starting with a letter or a
digit, and refuses anything else at once, in one sentence.

Example:
    >>> check_name("Layer 1 (dense)", "hidden_1.a-b") is None
    True
    >>> check_name("Layer 1 (dense)", "my layer")
    Traceback (most recent call last):
    ValueError: Layer 1 (dense): name 'my layer' has characters Keras refuses; expected \
ASCII letters, digits, '_', '.' or '-' (without '/', spaces or ':'), starting with a letter or \
digit.
"""

from __future__ import annotations

import re
from typing import Any

#: A name every backend takes as a name scope and Keras takes as a layer and path name.
VALID_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")

#: Longer names gain nothing and make unreadable paths; TensorFlow's limit is far above.
MAX_LENGTH = 200


def check_name(label: str, name: Any) -> None:
    """Raise unless `name` is None or a layer name Keras accepts (see the module docstring).

    Args:
        label: How the error names the layer, e.g. ``"Layer 3 (dense)"``.
        name: The name given (None: the builder makes one).

    Raises:
        TypeError: `name` is not a str.
        ValueError: Empty, too long, or with characters Keras refuses.

    Example:
        >>> check_name("Layer 2 (relu)", None) is None
        True
    """
    if name is None:
        return
    if not isinstance(name, str):
        raise TypeError(f"{label}: name must be a str or None, got {name!r}.")
    if not name or len(name) > MAX_LENGTH:
        raise ValueError(
            f"{label}: name must be non-empty and at most {MAX_LENGTH} characters, got {len(name)}."
        )
    if not VALID_NAME.fullmatch(name):
        raise ValueError(
            f"{label}: name {name!r} has characters Keras refuses; expected ASCII letters, "
            "digits, '_', '.' or '-' (without '/', spaces or ':'), starting with a letter or "
            "digit."
        )
