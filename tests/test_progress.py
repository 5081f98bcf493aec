"""Tests for gometal_keras.progress.PhaseProgress: bar on a terminal, silence otherwise."""

from __future__ import annotations

import io
import math

import keras
import numpy as np
from rich.console import Console

from gometal_keras import ModelBuilder, Trainer, TrainerConfig
from gometal_keras.progress import PhaseProgress


def _drive(cb: PhaseProgress, losses: list[float], planned: int) -> None:
    cbs = keras.callbacks.CallbackList([cb], epochs=planned, steps=1)
    cbs.on_train_begin()
    for epoch, loss in enumerate(losses):
        cbs.on_epoch_begin(epoch)
        cbs.on_epoch_end(epoch, {"loss": np.float32(loss), "val_loss": 0.5})
    cbs.on_train_end()


def test_terminal_bar_shows_epoch_loss_and_ms():
    out = io.StringIO()
    cb = PhaseProgress("FP32", Console(file=out, force_terminal=True, width=120))
    assert cb.enabled
    _drive(cb, [2.5, 1.25, 0.625], planned=3)
    text = out.getvalue()
    assert "FP32" in text and "3/3" in text
    assert "loss 0.625000" in text and "val 0.500000" in text and "ms/epoch" in text
    assert cb.epochs_done == 3 and math.isclose(cb.last_loss, 0.625)
    assert cb.last_ms >= 0


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
    builder = ModelBuilder([16, 4]).add_dense(8).add_relu().add_dense(3)
    config = TrainerConfig(batch_size=16, precision="float32", jit_compile=False, seed=0)
    x = np.random.default_rng(0).random((64, 4), dtype=np.float32)
    run = Trainer(builder, config).fit(x, np.arange(64) % 3, epochs=2, callbacks=[cb])
    assert "2/2" in out.getvalue()
    assert math.isclose(cb.last_loss, run.final_loss, rel_tol=1e-6)


def test_label_must_be_text():
    try:
        PhaseProgress(3)  # type: ignore[arg-type]
    except TypeError as err:
        assert "expected a str" in str(err)
    else:
        raise AssertionError("expected TypeError")
