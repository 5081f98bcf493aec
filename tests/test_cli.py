"""Tests for the gometal-keras command: help, exit codes, demo outputs, info, bench delegation."""

from __future__ import annotations

import json
import runpy
import sys

import pytest

from gometal_keras.cli import commands as cli
from gometal_keras.reporting import demo as demo_program

SMALL = ["--epochs", "2", "--samples", "128", "--hidden", "16", "--precision", "float32"]


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["info", "--help"]])
def test_help_exits_zero(argv, capsys):
    assert cli.main(argv) == 0
    assert "usage:" in capsys.readouterr().out


def test_bench_help_is_the_benchmarks(capsys, monkeypatch):
    seen = {}

    def fake_main(argv):
        seen["argv"] = argv
        return 0

    import gometal_keras.bench.__main__ as bench_main

    monkeypatch.setattr(bench_main, "main", fake_main)
    assert cli.main(["bench", "--quick", "--json", "x.json"]) == 0
    assert seen["argv"] == ["--quick", "--json", "x.json"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["nonsense"], "invalid choice"),
        (["demo", "--bogus"], "unrecognized arguments"),
        (["demo", "--epochs", "0"], "--epochs must be a positive integer"),
        (["demo", "--plot", "curves.txt"], "no image suffix"),
        (["demo", "--json", "/no/such/folder/r.json"], "does not exist"),
    ],
)
def test_usage_errors_exit_two(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_failure_is_one_line_and_exit_one(capsys, monkeypatch):
    def boom(*_, **__):
        raise RuntimeError("device lost\nsecond line")

    monkeypatch.setattr(demo_program, "run_demo", boom)
    assert cli.main(["demo", *SMALL, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "gometal-keras: error: RuntimeError: device lost" in err
    assert "Traceback" not in err and "second line" not in err
    assert cli.main(["--debug", "demo", *SMALL, "--quiet"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_demo_writes_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    assert cli.main(["demo", *SMALL, "--json", str(out_json), "--plot", str(out_png)]) == 0
    text = capsys.readouterr().out
    assert "Phase 1" in text and "Performance Comparison" in text
    assert f"JSON report written to {out_json}" in text
    data = json.loads(out_json.read_text())
    assert data["schema"] == "gometal_keras.demo/3"
    assert len(data["phases"]["baseline"]["losses"]) == 2
    assert out_png.read_bytes().startswith(b"\x89PNG")


# `demo --quiet` (only the final report): test_demo.py runs the example script, which is
# this command, with these flags and --quiet.


def test_info_text_and_json(capsys):
    assert cli.main(["info"]) == 0
    text = capsys.readouterr().out
    for line in ("Backend:", "Device:", "XLA:", "tensorflow-metal:", 'precision="auto"'):
        assert line in text
    assert cli.main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert "float32" in facts["auto_candidates"]
    assert facts["versions"]["keras"]


def test_python_dash_m_runs(capsys, monkeypatch):
    # `python -m gometal_keras`, run as __main__ in this process (a new interpreter would
    # spend seconds importing TensorFlow again; tests/test_startup.py starts one for --help).
    monkeypatch.setattr(sys, "argv", ["gometal_keras", "demo", "--epochs", "-1"])
    monkeypatch.delitem(sys.modules, "gometal_keras.__main__", raising=False)  # run it afresh
    with pytest.raises(SystemExit) as done:
        runpy.run_module("gometal_keras", run_name="__main__", alter_sys=True)
    assert done.value.code == 2
    assert "python -m gometal_keras demo: error: --epochs must be a positive integer" in (
        capsys.readouterr().err
    )


def test_tune_stores_a_decision_that_info_lists(capsys):
    from gometal_keras.cli.commands import main

    flags = ["--layers", "16", "--batch-size", "16", "--samples", "64"]
    assert main(["tune", *flags]) == 0
    out = capsys.readouterr().out
    assert "Chosen:  " in out and "Stored in " in out
    assert main(["info"]) == 0
    info = capsys.readouterr().out
    assert "Decision cache: " in info and "(1 cached)" in info
    assert "dense(16)-relu-dropout-dense(10), input (784,), batch 16" in info
