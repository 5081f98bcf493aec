"""The report's text pieces: precision labels, which epochs a table shows, emoji, seconds.

Plain functions of plain values, shared by the console report and the plot; nothing here
prints.
"""

from __future__ import annotations

import math

from gometal_keras.core.plan import Precision

#: ASCII stand-ins for the emoji the report uses, for consoles that cannot encode them.
EMOJI_ASCII: dict[str, str] = {
    "🚀": "[DEMO]",
    "📊": "[BASE]",
    "⚡": "[MIXED]",
    "📈": "[PERF]",
    "✅": "[OK]",
    "🎉": "[GREAT]",
    "👍": "[GOOD]",
    "⚠️": "[WARN]",
    "❌": "[FAIL]",
    "🏁": "[DONE]",
}

def label_for(precision: Precision | str) -> str:
    """Short display label of a precision (`Precision.label`), or the name unchanged.

    Args:
        precision: A `Precision` or Keras dtype-policy name, e.g. ``"mixed_float16"``.

    Returns:
        ``"FP32"``, ``"FP16"`` or ``"BF16"`` for the policies we train under; any other
        name unchanged.

    Example:
        >>> label_for("mixed_bfloat16"), label_for("float64")
        ('BF16', 'float64')
    """
    try:
        return Precision(precision).label
    except ValueError:
        return str(precision)


def epoch_rows(epochs: int) -> list[int]:
    """Epoch numbers the epoch table shows: 1-5, every 10th, and the last, once each.

    Args:
        epochs: Number of epochs that ran.

    Returns:
        The 1-based epoch numbers, ascending.

    Example:
        >>> epoch_rows(23)
        [1, 2, 3, 4, 5, 10, 20, 23]
    """
    rows = {e for e in range(1, epochs + 1) if e <= 5 or e % 10 == 0}
    if epochs > 0:
        rows.add(epochs)
    return sorted(rows)


def can_encode(encoding: str) -> bool:
    """Whether `encoding` can carry the report's emoji.

    Example:
        >>> can_encode("utf-8"), can_encode("ascii")
        (True, False)
    """
    try:
        "".join(EMOJI_ASCII).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def seconds_text(*values: float) -> list[str]:
    """Format times with one shared number of decimals, enough to tell them apart.

    Example:
        >>> seconds_text(1.5, 0.05)
        ['1.500', '0.050']
    """
    finite = [v for v in values if math.isfinite(v) and v > 0]
    smallest = min(finite, default=1.0)
    decimals = 2 if smallest >= 0.1 else 3 if smallest >= 0.01 else 4
    return [f"{v:.{decimals}f}" for v in values]
