"""Tests for gometal_keras.reporting.progress.PhaseProgress: bar on a terminal, silence
otherwise."""

from __future__ import annotations

import io
import math

import keras
import numpy as np
import pytest
from helpers import classification_data, float32_config, tiny_builder
from rich.console import Console

from gometal_keras.reporting.progress import PhaseProgress
from gometal_keras.training.trainer import Trainer


class FakeClock:
    """Seconds that advance only by the steps given: each call returns the next one."""

    def __init__(self, *readings: float):
        self.readings = list(readings)

    def __call__(self) -> float:
        return self.readings.pop(0)


def _drive(cb: PhaseProgress, losses: list[float], planned: int) -> None:
    cbs = keras.callbacks.CallbackList([cb], epochs=planned, steps=1)
    cbs.on_train_begin()
    for epoch, loss in enumerate(losses):
        cbs.on_epoch_begin(epoch)
        cbs.on_epoch_end(epoch, {"loss": np.float32(loss), "val_loss": 0.5})
    cbs.on_train_end()


def test_terminal_bar_shows_epoch_loss_and_ms():
    out = io.StringIO()
    clock = FakeClock(10.0, 10.25, 20.0, 20.5, 30.0, 30.0125)
    cb = PhaseProgress("FP32", Console(file=out, force_terminal=True, width=120), clock=clock)
    assert cb.enabled
    _drive(cb, [2.5, 1.25, 0.625], planned=3)
    text = out.getvalue()
    assert "FP32" in text and "3/3" in text
    assert "loss 0.625000" in text and "val 0.500000" in text
    assert "250.00 ms/epoch" in text and "500.00 ms/epoch" in text
    assert "12.50 ms/epoch" in text
    assert cb.epochs_done == 3 and math.isclose(cb.last_loss, 0.625)
    assert math.isclose(cb.last_ms, 12.5)
    assert clock.readings == []  # one reading at each epoch's begin and end, no more


def test_nothing_measured_before_the_first_epoch():
    out = io.StringIO()
    cb = PhaseProgress("FP32", Console(file=out, force_terminal=True, width=120))
    cbs = keras.callbacks.CallbackList([cb], epochs=4, steps=1)
    cbs.on_train_begin()
    assert cb.epochs_done == 0 and math.isnan(cb.last_loss) and math.isnan(cb.last_ms)
    assert "0/4" in out.getvalue() and "loss -" in out.getvalue()
    assert "ms/epoch" not in out.getvalue()


def test_a_new_fit_starts_from_zero():
    cb = PhaseProgress("FP32", Console(file=io.StringIO()), clock=FakeClock(0.0, 1.0))
    _drive(cb, [0.5], planned=1)
    assert (cb.epochs_done, cb.last_ms) == (1, 1000.0)
    cb.on_train_begin()
    assert cb.epochs_done == 0 and math.isnan(cb.last_loss) and math.isnan(cb.last_ms)


def test_non_numeric_loss_is_shown_as_missing():
    out = io.StringIO()
    cb = PhaseProgress("FP32", Console(file=out, force_terminal=True, width=120), epochs=1)
    cbs = keras.callbacks.CallbackList([cb], steps=1)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    cbs.on_epoch_end(0, {"loss": None, "val_loss": float("nan")})
    assert math.isnan(cb.last_loss)
    assert "1/1" in out.getvalue() and "loss -" in out.getvalue() and "val" not in out.getvalue()


def test_early_stop_ends_the_bar_where_training_ended():
    out = io.StringIO()
    cb = PhaseProgress("BF16", Console(file=out, force_terminal=True, width=120))
    _drive(cb, [1.0, 0.05], planned=20)
    assert "2/2" in out.getvalue()


def test_not_a_terminal_prints_nothing():
    out = io.StringIO()
    cb = PhaseProgress("FP32", Console(file=out))
    assert not cb.enabled
    _drive(cb, [1.0, 0.5], planned=2)
    assert out.getvalue() == ""
    assert cb.epochs_done == 2


def test_driven_by_trainer_fit():
    out = io.StringIO()
    cb = PhaseProgress("FP32", Console(file=out, force_terminal=True, width=120))
    x, y = classification_data(64)
    trainer = Trainer(tiny_builder(), float32_config())
    run = trainer.fit(x, y, epochs=2, callbacks=[cb])
    assert "2/2" in out.getvalue()
    assert cb.epochs_done == run.epochs_run == 2
    assert math.isclose(cb.last_loss, run.final_loss, rel_tol=1e-6)


def test_label_must_be_text():
    with pytest.raises(TypeError, match="label is a int; expected a str"):
        PhaseProgress(3)  # type: ignore[arg-type]
