"""The demo's comparison as versioned JSON (schema ``gometal_keras.demo/3``).

`demo_report` turns a finished `DemoResult` into plain data: configuration, device,
library versions, each phase's precision decision, per-epoch losses and times, total and
steady-state times, trial and compile time, peak memory, the interleaved rounds, the speedup
with its range, and the verdicts (version 2: the speedup is the interleaved rounds' median
where they ran, and "No measurable difference" is a verdict). It only reads records; it
never trains. The schema is documented field by field in docs/json-schema.md. Non-finite
numbers become ``null`` so the file is strict JSON.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any

from gometal_keras.core.jsondata import json_safe
from gometal_keras.reporting.demo import DemoResult
from gometal_keras.reporting.environment import device_dict, versions
from gometal_keras.training.record import TrainingRun

#: Name and version of the schema; the number changes when a field changes meaning or goes.
SCHEMA = "gometal_keras.demo/3"

_RUN_FIELDS = (
    "precision",
    "plan",
    "device",
    "loop",
    "stopped_early",
    "epochs_run",
    "final_loss",
    "total_seconds",
    "steady_seconds",
    "steady_epoch_seconds",
    "trial_seconds",
    "compile_seconds",
    "training_seconds",
    "peak_memory_bytes",
    "memory_kind",
    "losses",
    "epoch_seconds",
    "val_losses",
    "metrics",
    "metric_history",
    "decision",
)


def run_dict(run: TrainingRun) -> dict[str, Any]:
    """Return one phase's record in the schema's ``phases`` layout.

    Args:
        run: A finished run.

    Returns:
        The fields named in docs/json-schema.md ("Phase"), per-epoch lists included.

    Example:
        >>> run_dict(TrainingRun("float32", [2.0, 1.0], [0.5, 0.1]))["steady_seconds"]
        0.1
    """
    data = run.to_dict()
    data["steady_epoch_seconds"] = run.steady_epoch_seconds
    return {key: data.get(key) for key in _RUN_FIELDS}


def demo_report(result: DemoResult) -> dict[str, Any]:
    """Return the whole comparison of a demo run as schema ``gometal_keras.demo/3`` data.

    Args:
        result: What `gometal_keras.reporting.demo.run_demo` returned.

    Returns:
        A strict-JSON-ready dict: ``schema``, ``created``, ``versions``, ``device``,
        ``settings``, ``configs``, ``phases`` (``baseline`` and ``mixed``), ``comparison``
        and ``notes``.

    Example:
        >>> from gometal_keras.reporting.compare import compare_runs
        >>> from gometal_keras.reporting.demo import DemoResult
        >>> run = TrainingRun("float32", [0.5, 0.4], [0.2, 0.1])
        >>> data = demo_report(DemoResult(run, run, compare_runs(run, run), ()))
        >>> data["schema"], data["phases"]["mixed"]["final_loss"]
        ('gometal_keras.demo/3', 0.4)
    """
    cmp = result.comparison
    comparison = {
        "timing": cmp.timing,
        "basis": cmp.basis,
        "baseline_seconds": cmp.baseline_seconds,
        "mixed_seconds": cmp.candidate_seconds,
        "baseline_total_seconds": cmp.baseline_total_seconds,
        "mixed_total_seconds": cmp.candidate_total_seconds,
        "baseline_steady_seconds": cmp.baseline_steady_seconds,
        "mixed_steady_seconds": cmp.candidate_steady_seconds,
        "speedup_percent": cmp.speedup_percent,
        "speedup_verdict": cmp.speedup_verdict.value,
        "loss_difference": cmp.loss_difference,
        "convergence_verdict": cmp.convergence_verdict.value,
        "rounds": {"baseline_seconds": cmp.baseline_rounds, "mixed_seconds": cmp.candidate_rounds},
        "speedup_low_percent": cmp.speedup_low_percent,
        "speedup_high_percent": cmp.speedup_high_percent,
        "measurable": cmp.measurable,
        "outcome": cmp.outcome.value,
        "headline": cmp.headline(),
        "speedup_source": cmp.source,
    }
    data = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "device": device_dict(result.device) if result.device is not None else None,
        "settings": result.settings.to_dict(),
        "configs": {
            name: config.to_dict()
            for name, config in zip(("baseline", "mixed"), result.configs, strict=False)
        },
        "phases": {"baseline": run_dict(result.baseline), "mixed": run_dict(result.mixed)},
        "comparison": comparison,
        "notes": list(result.notes),
    }
    return json_safe(data)


def write_json(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write `data` as indented strict JSON to `path`.

    Args:
        data: JSON-ready data, e.g. from `demo_report`.
        path: The file to write; its folder must exist.

    Returns:
        The path written.

    Raises:
        ValueError: If the folder does not exist or `data` holds a non-finite number.

    Example:
        >>> import tempfile
        >>> out = write_json({"schema": SCHEMA}, Path(tempfile.mkdtemp()) / "r.json")
        >>> json.loads(out.read_text())["schema"]
        'gometal_keras.demo/3'
    """
    path = Path(path)
    check_writable(path)
    text = json.dumps(data, indent=2, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise ValueError unless `path` can be written (its folder exists, it is not a folder).

    Called before training, so a typo in an output path fails at once, not after the run.

    Example:
        >>> check_writable("report.json")
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; expected a file name.")
    if not folder.is_dir():
        raise ValueError(f"The folder {folder} does not exist; create it or choose another path.")
