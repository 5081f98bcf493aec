"""The terminal table of a benchmark result (rich when it is installed, else plain text)."""

from __future__ import annotations

import math
from typing import Any

HEADERS = (
    "config",
    "precision",
    "runner",
    "ms/step",
    "vs ref (p10-p90)",
    "TFLOP/s",
    "x floor",
    "vs fp32",
    "call ms",
    "predict/s",
    "loss",
)


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, fmt)


def _ratio(value: dict[str, float] | None) -> str:
    """``"1.043 (0.98-1.10)"`` of a ``vs_reference`` entry, or ``"-"``.

    Example:
        >>> _ratio({"ratio": 1.0431, "p10": 0.981, "p90": 1.1, "rounds": 20}), _ratio(None)
        ('1.043 (0.98-1.10)', '-')
    """
    if not value:
        return "-"
    return f"{value['ratio']:.3f} ({value['p10']:.2f}-{value['p90']:.2f})"


def rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row of strings per measured (config, precision, runner)."""
    out = []
    for r in result["results"]:
        if r.get("error"):
            out.append(
                (
                    r["config"],
                    r["precision"],
                    r["runner"],
                    "error: " + r["error"][:60],
                    *("",) * (len(HEADERS) - 4),
                )
            )
            continue
        overhead = r["call_overhead_seconds"]
        out.append(
            (
                r["config"],
                r["precision"],
                r["runner"],
                _num(r["seconds_per_step"] * 1e3, ".4f"),
                _ratio(r["vs_reference"]),
                _num(r["tflops"], ".3g"),
                _num(r["ratio_to_floor"], ".1f"),
                _num(r["speedup_vs_float32"], ".2f"),
                _num(None if overhead is None else overhead * 1e3, ".1f"),
                _num(r["predict_samples_per_s"], ",.0f"),
                _num(r["loss"], ".4f"),
            )
        )
    return out


def header_lines(result: dict[str, Any]) -> list[str]:
    rates = result["rates"]
    flops = ", ".join(f"{k} {v / 1e12:.3g}" for k, v in rates["matmul_flops"].items())
    s = result["settings"]
    return [
        f"device: {result['device']['description']}   backend: {result['backend']}   "
        f"{s['repeats']} interleaved rounds of {s['epochs']} epochs a call "
        f"(the first of each not counted), {s['warmup']} warm-up call(s)",
        f"measured matrix rate (TFLOP/s, n={rates['matmul_n']}): {flops};"
        f" copy bandwidth {rates['bandwidth'] / 1e9:.3g} GB/s",
    ]


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table (for bench/RESULTS.md), header lines first.

    Args:
        result: A benchmark result (what ``--json`` writes).

    Returns:
        The header lines, then a table of one row per result.

    Example:
        >>> result = {
        ...     "device": {"description": "CPU"}, "backend": "jax", "skipped": [],
        ...     "settings": {"repeats": 3, "epochs": 5, "warmup": 1},
        ...     "rates": {"matmul_flops": {"float32": 2e12}, "bandwidth": 5e10, "matmul_n": 512},
        ...     "results": [{"config": "seed", "precision": "float32", "runner": "keras",
        ...                  "error": "ValueError: no"}],
        ... }
        >>> print(markdown(result).splitlines()[-1])
        | seed | float32 | keras | error: ValueError: no |  |  |  |  |  |  |  |
    """
    lines = [f"{line}  " for line in header_lines(result)] + [""]
    lines.append("| " + " | ".join(HEADERS) + " |")
    lines.append("|" + "---|" * len(HEADERS))
    lines += ["| " + " | ".join(row) + " |" for row in rows(result)]
    return "\n".join(lines)


def plain(result: dict[str, Any]) -> str:
    """The table as plain text (also what RESULTS.md can hold)."""
    table = [HEADERS, *rows(result)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = header_lines(result)
    for j, row in enumerate(table):
        lines.append(
            "  ".join(
                c.rjust(w) if i >= 3 else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines += [
        f"skipped {s['config']}/{s['precision']}/{s['runner']}: {s['reason']}"
        for s in result["skipped"]
    ]
    return "\n".join(lines)


def show(result: dict[str, Any]) -> None:
    """Print the table to the terminal."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(plain(result))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 140))
    for line in header_lines(result):
        console.print(line, highlight=False)
    table = Table(*HEADERS)
    for i in range(3, len(HEADERS)):
        table.columns[i].justify = "right"
    for row in rows(result):
        table.add_row(*row)
    console.print(table)
    for s in result["skipped"]:
        console.print(
            f"skipped {s['config']}/{s['precision']}/{s['runner']}: {s['reason']}", highlight=False
        )
