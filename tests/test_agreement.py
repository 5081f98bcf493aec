"""`training.agreement`: numbers that drift from the CPU's during `fit` on an Apple GPU.

The fake Apple GPU (`fakes.FaultyEngine(drift_after=n)`) reports its losses times 1.5 once
it has run `n` calls, without raising, as keras#21668 and keras#18370 describe. The periodic
check must stop `fit` with one sentence, the trainer put back to the last agreeing epoch
(oracle: the weights a plain callback saw at that epoch's end), the `ModelCheckpoint` file of
that epoch named; with ``agreement_every=None`` it trains on; elsewhere it never runs.
"""

from __future__ import annotations

import os
from unittest import mock

import keras
import numpy as np
import pytest
from fakes import FaultyEngine
from helpers import classification_data, float32_config, tiny_builder

from gometal_keras import engines
from gometal_keras.training import agreement
from gometal_keras.training.trainer import Trainer


class Weights(keras.callbacks.Callback):
    """The trained weights at each epoch's end, as the user's callbacks see them."""

    def __init__(self):
        super().__init__()
        self.seen: dict[int, list[np.ndarray]] = {}

    def on_epoch_end(self, epoch, logs=None):
        self.seen[epoch + 1] = self.model.get_weights()


def metal_trainer(engine: FaultyEngine, **overrides) -> Trainer:
    settings = {"jit_compile": False, "loop": "fused", "precision": "float32",
                "decision_cache": "never", **overrides}
    with mock.patch.object(engines, "current", return_value=engine):
        return Trainer(tiny_builder(), float32_config(**settings))


def test_drift_stops_fit_at_the_next_check_back_at_the_last_agreeing_epoch(tmp_path):
    engine = FaultyEngine()
    trainer = metal_trainer(engine, agreement_every=2)
    assert not trainer.plan.on_host
    seen = Weights()
    path = os.path.join(tmp_path, "w-{epoch}.weights.h5")
    saver = keras.callbacks.ModelCheckpoint(path, save_weights_only=True)
    x, y = classification_data()
    with mock.patch.object(agreement, "Replay", wraps=agreement.Replay) as replays:
        trainer.fit(x, y, epochs=2, callbacks=[seen, saver])  # checked after epoch 2: agrees
        # Epochs are one GPU call each: the numbers drift from epoch 4 on.
        engine.drift_after = engine.gpu_calls + 1
        with pytest.raises(RuntimeError) as stopped:
            trainer.fit(x, y, epochs=4, callbacks=[seen, saver])
    said = str(stopped.value)
    assert said.startswith("Training stopped after epoch 4: the float32 losses of "
                           "Apple M2 GPU (fake) drifted from the CPU's on 2 replayed steps")
    assert f"put back to epoch 2, the last that agreed, which {path.format(epoch=2)!r} holds"\
        in said and "Apple developer forum thread 778640" in said and "\n" not in said
    assert trainer.epoch == 2 and sorted(seen.seen) == [1, 2, 3]  # epoch 4 never seen
    for got, want in zip(trainer.model.get_weights(), seen.seen[2], strict=True):
        np.testing.assert_array_equal(got, want)
    assert not os.path.exists(path.format(epoch=4))  # no callback saved the drifted weights
    assert replays.call_count == 2  # the device's and the CPU's, built once for both fits


def test_without_the_check_fit_trains_on_through_the_drift():
    engine = FaultyEngine()
    trainer = metal_trainer(engine, agreement_every=None)
    engine.drift_after = engine.gpu_calls  # drifts from the first epoch on
    assert trainer.fit(*classification_data(), epochs=2).epochs_run == 2


def test_no_check_off_a_device_with_known_faults():
    trainer = Trainer(tiny_builder(), float32_config(jit_compile=False, loop="fused"))
    found = agreement.for_fit(trainer, engines.current(), trainer._placement, trainer.device,
                              0, [])
    assert found is None
