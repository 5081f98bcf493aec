"""JSON-ready data: what every record's ``to_dict`` and every JSON file we write goes through."""

from __future__ import annotations

import math
from typing import Any


def json_safe(value: Any) -> Any:
    """Return `value` with non-finite floats as None and tuples as lists, recursively.

    Args:
        value: Plain data (dicts, lists, tuples, numbers, strings).

    Returns:
        Data that ``json.dumps(..., allow_nan=False)`` accepts.

    Example:
        >>> json_safe({"a": float("nan"), "b": (1.5, float("inf"))})
        {'a': None, 'b': [1.5, None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value
