"""A backend failure that only `fit`, validation or `predict` meets on an Apple GPU.

The plan's checks (warm-up, the CPU comparison) pass, then a later call needs a kernel the
device lacks (tensorflow-metal's "No registered ... OpKernel for 'GPU' devices": a last
batch of another shape, the validation pass, `predict`). The fake Apple GPU
(`fakes.FaultyEngine(raises_after=n)`) raises it on every call after `n`. The user must see
one sentence naming the device, the plan and the error, and lose nothing: the weights and
optimizer state as after the last completed epoch (the oracle: a snapshot taken there).
"""

from __future__ import annotations

from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf
from fakes import MISSING_KERNEL, FaultyEngine
from helpers import classification_data, float32_config, tiny_builder
from hypothesis import given, settings
from hypothesis import strategies as st

from gometal_keras import engines
from gometal_keras.training.trainer import Trainer


def metal_trainer(engine: FaultyEngine) -> Trainer:
    settings_ = {"jit_compile": False, "loop": "fused", "precision": "float32",
                 "decision_cache": "never", "agreement_every": None}
    with mock.patch.object(engines, "current", return_value=engine):
        return Trainer(tiny_builder(), float32_config(**settings_))


def state(trainer: Trainer) -> list[np.ndarray]:
    return [np.array(keras.ops.convert_to_numpy(v))
            for v in [*trainer.model.variables, *trainer.optimizer.variables]]


def assert_one_sentence(said: str, what: str) -> None:
    assert said.startswith(f"Apple M2 GPU (fake) failed in {what} under float32 (no XLA, "
                           f"fused) (NotFoundError: {MISSING_KERNEL})"), said
    assert "Apple developer forum thread 778640" in said and "\n" not in said
    assert "set_visible_devices" in said


@settings(max_examples=4, deadline=None)
@given(done=st.integers(1, 2), where=st.sampled_from(["epoch", "validation"]))
def test_a_kernel_missing_only_in_fit_is_one_sentence_and_loses_no_epoch(done, where):
    engine = FaultyEngine()
    trainer = metal_trainer(engine)
    assert not trainer.plan.on_host
    x, y = classification_data()
    trainer.fit(x, y, epochs=done)
    before = state(trainer)
    if where == "epoch":
        engine.raises_after = engine.gpu_calls  # the next epoch's call fails
        with pytest.raises(RuntimeError) as failed:
            trainer.fit(x, y, epochs=2)
        assert_one_sentence(str(failed.value), f"epoch {done + 1} of fit")
        assert trainer.epoch == done
        for got, want in zip(state(trainer), before, strict=True):
            np.testing.assert_array_equal(got, want)
        return
    missing = tf.errors.NotFoundError(None, None, MISSING_KERNEL)
    with (mock.patch.object(trainer.model, "predict_on_batch", side_effect=missing),
          pytest.raises(RuntimeError) as failed):
        trainer.fit(x, y, epochs=1, validation_data=(x, y))
    assert_one_sentence(str(failed.value), f"the validation after epoch {done + 1}")
    assert trainer.epoch == done + 1  # the epoch itself trained and is kept


@pytest.mark.parametrize("method", ["predict", "evaluate"])
def test_predict_and_evaluate_name_a_missing_kernel_in_one_sentence(method):
    engine = FaultyEngine()
    trainer = metal_trainer(engine)
    x, y = classification_data()
    before = state(trainer)
    missing = tf.errors.NotFoundError(None, None, MISSING_KERNEL)
    with (mock.patch.object(trainer.model, "predict_on_batch", side_effect=missing),
          pytest.raises(RuntimeError) as failed):
        trainer.predict(x) if method == "predict" else trainer.evaluate(x, y)
    assert_one_sentence(str(failed.value), method)
    for got, want in zip(state(trainer), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_off_a_device_with_known_faults_the_error_is_as_raised():
    trainer = Trainer(tiny_builder(), float32_config(precision="float32", jit_compile=False))
    missing = tf.errors.NotFoundError(None, None, MISSING_KERNEL)
    with (mock.patch.object(trainer.model, "predict_on_batch", side_effect=missing),
          pytest.raises(tf.errors.NotFoundError)):
        trainer.predict(classification_data()[0])
