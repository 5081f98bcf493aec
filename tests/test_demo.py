"""Tests for the demo: its flags, the example program it runs, and what it records."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import runpy
import sys
from pathlib import Path
from unittest import mock

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras import engines
from gometal_keras.cli.commands import add_demo_arguments, demo_settings
from gometal_keras.core.plan import Precision
from gometal_keras.data.synthetic import demo_tokens
from gometal_keras.planning import decision
from gometal_keras.reporting.demo import DemoSettings, build_model, run_demo

ROOT = Path(__file__).resolve().parents[1]
SMALL = DemoSettings(
    hidden=16, layers=(16, 8), epochs=2, samples=128, precision="float32", rounds=3
)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_demo_arguments(parser)
    return parser.parse_args(list(argv))


def test_settings_from_flags():
    s = demo_settings(_parse("--layers", "64,32", "--epochs", "3", "--timing", "total"))
    assert s.hidden_stack == (64, 32) and s.epochs == 3 and s.timing == "total"
    assert s.to_dict()["layers"] == [64, 32]
    with pytest.raises(SystemExit):  # argparse refuses it, naming the flag
        _parse("--samples", "0")
    with pytest.raises(ValueError, match="--batch-size 64 is larger than --samples 8"):
        demo_settings(_parse("--samples", "8"))
    with pytest.raises(SystemExit):
        _parse("--layers", "64,-1")


def test_example_script_runs_the_seed_report_and_quiet_prints_only_it(monkeypatch, capsys):
    # The script is `gometal-keras demo` (cli.main): this is also the CLI's --quiet test.
    argv = ["mixed_precision_demo.py", "--epochs", "2", "--samples", "128", "--hidden", "16"]
    monkeypatch.setattr(sys, "argv", [*argv, "--precision", "float32", "--quiet"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / "examples" / "mixed_precision_demo.py"), run_name="__main__")
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "Performance Comparison" in text
    assert "Phase 1" not in text and "Starting training" not in text


def test_example_uses_only_the_public_api():
    source = (ROOT / "examples" / "mixed_precision_demo.py").read_text()
    imports = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    for line in imports:
        if "gometal_keras" in line:
            public = ("from gometal_keras import", "from gometal_keras.cli import")
            assert line.startswith(public), line
    assert "._" not in source.replace("__", "")


def test_auto_keeping_float32_makes_phase_two_the_fastest_mixed_candidate():
    engine = engines.current()
    # This machine's CPU, said to have fast bfloat16 (it runs bfloat16, only slowly).
    bf16 = dataclasses.replace(engine.describe_device(), bf16_fast=True)
    settings = dataclasses.replace(SMALL, precision="auto")
    # A mixed plan must be 99% faster to win: auto keeps float32 whatever is measured.
    with (
        mock.patch.object(engine, "describe_device", return_value=bf16),
        mock.patch.object(decision, "MIN_GAIN", 0.99),
    ):
        result = run_demo(settings)
    assert result.baseline.precision is Precision.FLOAT32
    assert result.mixed.precision is Precision.MIXED_BFLOAT16
    assert any("float32 kept" in note for note in result.notes)
    assert result.configs[1].precision == "mixed_bfloat16"


def test_explicit_mixed_precision_is_phase_two():
    settings = dataclasses.replace(SMALL, precision="mixed_bfloat16")
    result = run_demo(settings)
    assert result.mixed.precision is Precision.MIXED_BFLOAT16
    assert result.mixed.plan.compute_dtype == "bfloat16"
    assert not any("Precision choice" in note for note in result.notes)
    assert not any(note.startswith("Both phases trained FP32") for note in result.notes)


def test_run_demo_records_what_ran_calls_progress_and_interleaves_rounds():
    import json
    import math

    from rich.console import Console

    from gometal_keras.reporting.jsonreport import demo_report
    from gometal_keras.reporting.report import Reporter
    from gometal_keras.training.memory import RSS_GROWTH, describe

    seen = []

    def progress(index: int, label: str) -> keras.callbacks.Callback:
        seen.append((index, label))
        return keras.callbacks.Callback()

    # One demo run (SMALL: float32 in both phases) checks the progress calls, the records,
    # the notes and the interleaved speed comparison.
    result = run_demo(SMALL, progress=progress)
    assert seen == [(1, "FP32"), (2, "FP32")]
    assert result.baseline.epochs_run == 2 and result.mixed.epochs_run == 2
    assert result.device is not None and len(result.configs) == 2
    assert result.settings == SMALL
    # The records carry the plans that ran, and the two float32 runs are the same run.
    assert result.baseline.plan == result.mixed.plan
    assert result.baseline.losses == result.mixed.losses
    # No mixed precision ran: the notes must not read the difference as its speedup.
    assert any(note.startswith("Both phases trained FP32") for note in result.notes)
    assert not any("Mixed precision" in note for note in result.notes)
    cmp = result.comparison
    assert cmp.rounds == SMALL.rounds == len(cmp.candidate_rounds)
    assert all(t > 0 for t in (*cmp.baseline_rounds, *cmp.candidate_rounds))
    assert cmp.speedup_low_percent <= cmp.speedup_percent <= cmp.speedup_high_percent
    for run in (result.baseline, result.mixed):
        # A run that did not raise the process' peak RSS has no figure (not a growth of 0).
        assert run.memory_kind == RSS_GROWTH and (run.peak_memory_bytes or 1) > 0
        assert math.isclose(run.compile_seconds + run.training_seconds, run.total_seconds)
    data = json.loads(json.dumps(demo_report(result), allow_nan=False))
    assert data["comparison"]["rounds"]["mixed_seconds"] == list(cmp.candidate_rounds)
    assert data["phases"]["baseline"]["memory_kind"] == RSS_GROWTH
    assert data["settings"]["rounds"] == SMALL.rounds
    console = Console(file=__import__("io").StringIO(), width=120)
    Reporter(console, plain=True, emoji=False).comparison(cmp, result.notes)
    out = console.file.getvalue()
    assert f"Interleaved Epochs ({SMALL.rounds} rounds, FP32 (baseline) and" in out
    runs = (result.baseline, result.mixed)
    if all(run.peak_memory_bytes is None for run in runs):  # neither raised the RSS peak
        assert "Peak Memory" not in out
    else:
        assert "Peak Memory (as each phase ran in this process; not a comparison):" in out
        for run in runs:
            assert f": {describe(run.peak_memory_bytes, run.memory_kind)}\n" in out
    assert "Time to First Step (trials, compilation, then training):" in out



#: A demo/tune flag and a value of a class it refuses: below its range, not a number, not
#: finite, beyond the seed range.
BAD_FLAGS = st.one_of(
    st.tuples(st.sampled_from(["--hidden", "--batch-size", "--epochs", "--samples",
                               "--devices", "--tokens", "--vocab"]),
              st.integers(-10**6, 0).map(str)),
    st.tuples(st.just("--model"), st.sampled_from(["cnn", "", "Transformer"])),
    st.tuples(st.just("--rounds"), st.integers(-10**6, -1).map(str)),
    st.tuples(st.just("--seed"), st.one_of(st.integers(-10**9, -1),
                                           st.integers(2**31, 2**70)).map(str)),
    st.tuples(st.just("--early-stop"), st.sampled_from(["nan", "inf", "-inf", "-0.5", "x"])),
    st.tuples(st.sampled_from(["--epochs", "--seed", "--samples"]),
              st.sampled_from(["1.5", "", "ten", "0x10"])),
)


@settings(max_examples=40, deadline=None)
@given(flag=BAD_FLAGS, command=st.sampled_from(["demo", "tune"]))
def test_a_bad_flag_exits_2_naming_it_before_the_backend_starts(flag, command):
    from gometal_keras.cli import commands

    err = io.StringIO()
    with mock.patch.object(commands, "import_backend", side_effect=AssertionError("started")), \
            contextlib.redirect_stderr(err):
        try:
            code = commands.main([command, flag[0], flag[1]])
        except SystemExit as done:  # argparse's own refusal
            code = done.code
    assert code == 2, err.getvalue()
    assert flag[0] in err.getvalue()


@pytest.mark.parametrize("command", ["demo", "tune"])
def test_a_batch_larger_than_the_samples_exits_2_before_the_backend_starts(command):
    from gometal_keras.cli import commands

    err = io.StringIO()
    with mock.patch.object(commands, "import_backend", side_effect=AssertionError("started")), \
            contextlib.redirect_stderr(err):
        code = commands.main([command, "--batch-size", "64", "--samples", "10"])
    assert code == 2 and "--batch-size 64 is larger than --samples 10" in err.getvalue()


def test_the_epochs_line_says_what_may_run_not_what_ran():
    assert DemoSettings(epochs=20, early_stop_loss=0.1).table()["Epochs"] == (
        "20 at most (stops once an epoch's loss is below 0.1)")
    assert DemoSettings(epochs=20, early_stop_loss=0).table()["Epochs"] == 20


@pytest.mark.parametrize("command", ["demo", "tune"])
def test_a_vocabulary_smaller_than_the_classes_exits_2_before_the_backend_starts(command):
    from gometal_keras.cli import commands

    err = io.StringIO()
    with mock.patch.object(commands, "import_backend", side_effect=AssertionError("started")), \
            contextlib.redirect_stderr(err):
        code = commands.main([command, "--model", "transformer", "--vocab", "9"])
    assert code == 2 and "--vocab 9 is smaller than the 10 classes" in err.getvalue()


@settings(max_examples=25, deadline=None)
@given(samples=st.integers(1, 300), tokens=st.integers(16, 64), classes=st.integers(2, 12),
       spare=st.integers(0, 500), seed=st.integers(0, 2**32 - 1))
def test_demo_tokens_lean_on_their_class_band(samples, tokens, classes, spare, seed):
    """The oracle: counting each sequence's tokens per vocabulary band names its class."""
    vocab = classes * (1 + spare // classes) + spare % classes
    x, y = demo_tokens(samples, tokens, vocab, classes, seed)
    assert x.shape == (samples, tokens) and x.dtype == np.int32 and y.dtype == np.int32
    assert x.min() >= 0 and x.max() < vocab and set(y.tolist()) <= set(range(classes))
    sizes = np.bincount(y, minlength=classes)
    assert sizes.max() - sizes.min() <= 1 or samples < classes
    band = vocab // classes
    counts = np.stack([((x >= c * band) & (x < (c + 1) * band)).sum(1) for c in range(classes)])
    assert np.mean(counts.argmax(0) == y) >= 0.9
    again = demo_tokens(samples, tokens, vocab, classes, seed)
    np.testing.assert_array_equal(again[0], x)


def test_the_transformer_demo_trains_both_phases_on_token_sequences():
    settings = DemoSettings(model="transformer", tokens=8, vocab=100, samples=64,
                            batch_size=32, epochs=3, precision="mixed_bfloat16", rounds=0,
                            early_stop_loss=0)
    assert demo_settings(_parse("--model", "transformer", "--tokens", "8", "--vocab", "100",
                                "--samples", "64", "--batch-size", "32", "--epochs", "3",
                                "--precision", "mixed_bfloat16", "--rounds", "0",
                                "--early-stop", "0")) == settings
    result = run_demo(settings)
    assert result.mixed.precision is Precision.MIXED_BFLOAT16
    assert [layer.kind for layer in build_model(settings).layers][:3] == [
        "embedding", "multi_head_attention", "layernorm"]
    for run in (result.baseline, result.mixed):
        assert run.epochs_run == 3 and run.losses[-1] < run.losses[0]
    assert settings.to_dict()["model"] == "transformer"
