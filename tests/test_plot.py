"""Tests for gometal_keras.reporting.plot: a PNG of loss and time per epoch; a clear
missing-extra error."""

from __future__ import annotations

import sys

import pytest
from helpers import hand_run

from gometal_keras.reporting.compare import compare_runs
from gometal_keras.reporting.plot import check_plot_path, plot_comparison, plot_runs

PNG = b"\x89PNG\r\n\x1a\n"


def _runs():
    a = hand_run("float32", [2.3, 1.2, 0.8], [0.30, 0.05, 0.05], val_losses=[2.4, 1.3, 0.9])
    b = hand_run("mixed_float16", [2.3, 1.3], [0.40, 0.04])
    return a, b


def test_plot_comparison_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = plot_comparison(compare_runs(*_runs()), tmp_path / "cmp.png")
    assert out.read_bytes().startswith(PNG)


def test_plot_runs_svg_and_same_precision_labels(tmp_path):
    pytest.importorskip("matplotlib")
    a, _ = _runs()
    out = plot_runs([a, a], tmp_path / "same.svg", title="two FP32 runs")
    assert "FP32 (2)" in out.read_text()


def test_bad_paths_and_no_runs(tmp_path):
    with pytest.raises(ValueError, match="no image suffix"):
        check_plot_path(tmp_path / "plot.txt")
    with pytest.raises(ValueError, match="does not exist"):
        check_plot_path(tmp_path / "missing" / "plot.png")
    with pytest.raises(ValueError, match="runs is empty"):
        plot_runs([], tmp_path / "p.png")


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'gometal_keras\[plot\]'"):
        plot_runs(list(_runs()), tmp_path / "p.png")
