"""Tests for gometal_keras.reporting.jsonreport: schema gometal_keras.demo/3, strict
JSON, doc sync."""

from __future__ import annotations

import json
import math
import pathlib
import re

import pytest

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.jsondata import json_safe
from gometal_keras.core.plan import Precision, RunPlan
from gometal_keras.planning.decision import Candidate, Decision
from gometal_keras.reporting.compare import compare_runs
from gometal_keras.reporting.demo import DemoResult, DemoSettings
from gometal_keras.reporting.jsonreport import SCHEMA, check_writable, demo_report, write_json
from gometal_keras.training.record import TrainingRun

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "json-schema.md"


def _result(nan: bool = False) -> DemoResult:
    base = TrainingRun(
        "float32",
        [2.0, 1.0, 0.5],
        [0.5, 0.1, 0.1],
        device="CPU (test)",
        metrics={"accuracy": [0.1, 0.5, 0.9]},
    )
    mixed_losses = [2.0, 1.0, math.nan if nan else 0.52]
    mixed = TrainingRun(
        "mixed_bfloat16",
        mixed_losses,
        [0.6, 0.05, 0.05],
        device="CPU (test)",
        decision=Decision(
            RunPlan(Precision.MIXED_BFLOAT16, xla=False),
            "measured",
            (Candidate(RunPlan(Precision.FLOAT32, xla=False), 0.002),),
        ),
    )
    cmp = compare_runs(base, mixed)
    device = DeviceInfo("tensorflow", "cpu", "CPU", True, False, True, cpu_features=("bf16",))
    configs = (TrainerConfig(precision="float32"), TrainerConfig(precision="auto"))
    return DemoResult(base, mixed, cmp, ("a note",), DemoSettings(epochs=3), device, configs)


def test_report_holds_the_whole_comparison():
    data = demo_report(_result())
    json.dumps(data, allow_nan=False)
    assert data["schema"] == SCHEMA == "gometal_keras.demo/3"
    assert data["device"]["cpu_features"] == ["bf16"] and data["device"]["description"]
    assert data["versions"]["keras"]
    assert data["settings"]["epochs"] == 3
    assert data["configs"]["mixed"]["precision"] == "auto"
    base, mixed = data["phases"]["baseline"], data["phases"]["mixed"]
    assert base["losses"] == [2.0, 1.0, 0.5] and base["epoch_seconds"] == [0.5, 0.1, 0.1]
    assert base["metrics"] == {"accuracy": [0.1, 0.5, 0.9]}
    assert mixed["decision"]["reason"] == "measured"
    assert math.isclose(base["steady_seconds"], 0.2)
    cmp = data["comparison"]
    assert math.isclose(cmp["speedup_percent"], 100.0)
    assert cmp["speedup_verdict"] == "Excellent"
    assert cmp["convergence_verdict"] == "well preserved"
    assert data["notes"] == ["a note"]


def test_non_finite_numbers_become_null():
    data = demo_report(_result(nan=True))
    assert data["phases"]["mixed"]["losses"][-1] is None
    assert data["comparison"]["loss_difference"] is None
    assert data["comparison"]["convergence_verdict"] == "diverged"
    json.dumps(data, allow_nan=False)
    assert json_safe((1.0, float("inf"))) == [1.0, None]


def test_write_json_and_path_checks(tmp_path):
    out = write_json(demo_report(_result()), tmp_path / "r.json")
    assert json.loads(out.read_text())["schema"] == SCHEMA
    with pytest.raises(ValueError, match="does not exist"):
        check_writable(tmp_path / "missing" / "r.json")
    with pytest.raises(ValueError, match="is a folder"):
        check_writable(tmp_path)


def test_schema_doc_lists_every_field():
    text = DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_0-9]+)`", text))
    data = demo_report(_result())
    fields = set(data) | set(data["comparison"]) | set(data["phases"]["baseline"])
    fields |= set(data["device"]) | set(data["settings"])
    assert SCHEMA in text
    assert fields <= documented, sorted(fields - documented)
