"""Tests for the gometal-keras command: help, exit codes, demo outputs, info, bench delegation."""

from __future__ import annotations

import json
import os
import runpy
import sys

import numpy as np
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
        (["demo", "--epochs", "0"], "argument --epochs: expected an integer of at least 1"),
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
    assert "python -m gometal_keras demo: error: argument --epochs: expected an integer" in (
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


# `predict` / `export`: every path is checked while the arguments are parsed (exit 2),
# before the command imports Keras or TensorFlow (tests/test_image_folder_workflow.py runs
# predict on an image folder; tests/test_predictor.py on .npy samples).
BLOCK_BACKEND = (
    "import sys; sys.modules['tensorflow'] = sys.modules['keras'] = None\n"
    "from gometal_keras.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "{model}", "{missing}.npy"], "argument INPUT: no file or folder at"),
        (["predict", "{missing}.onnx", "{folder}"], "argument model: no file at"),
        (["predict", "{model}", "{folder}", "--output", "result"], "does not end in .csv or .npy"),
        (["predict", "{model}", "{folder}", "--output", "{missing}/r.csv"], "does not exist"),
        (["predict", "{model}", "{folder}", "{model}.npy"], "a .npy file among 2 inputs"),
        (["predict", "{model}", "{folder}", "--batch-size", "0"], "at least 1, got 0"),
        (["export", "{missing}.gmk", "{folder}/m.onnx"], "argument checkpoint: no file at"),
    ],
)
def test_ship_commands_check_paths_before_the_backend_starts(argv, message, tmp_path):
    import subprocess

    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    (tmp_path / "m.onnx.npy").write_bytes(b"")
    paths = {"model": str(model), "missing": str(tmp_path / "missing"), "folder": str(tmp_path)}
    args = [a.format(**paths) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_BACKEND, *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr  # a usage error, with no backend importable
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_predict_output_is_the_path_it_says(tmp_path, capsys):
    from gometal_keras.shipping import predictor as predictor_module

    class Fixed:  # a model that gives each sample its index as its one output
        are_probabilities = False

        def predict(self, x):
            return np.arange(len(x), dtype=np.float32)[:, None]

    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predictor_module.Predictor, "load", classmethod(lambda *a: Fixed()))
        for name in ("result.npy", "result.csv"):
            out = tmp_path / name
            argv = ["predict", str(tmp_path / "x.npy"), str(tmp_path / "x.npy")]
            assert cli.main([*argv, "--output", str(out), "--mode", "raw"]) == 0
            assert capsys.readouterr().out == f"3 results written to {out}\n"
            assert out.is_file() and sorted(os.listdir(tmp_path)) == sorted(
                ["x.npy", "result.npy", *(["result.csv"] if name.endswith("csv") else [])]
            )
    np.testing.assert_array_equal(np.load(tmp_path / "result.npy"), [[0.0], [1.0], [2.0]])
    assert (tmp_path / "result.csv").read_text().splitlines() == [
        "index,result", "0,0", "1,1", "2,2"
    ]  # fmt: skip
