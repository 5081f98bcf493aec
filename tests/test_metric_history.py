"""Go-Metal's metric history (fit(..., metric_history=True)) against sklearn computed apart."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from helpers import BATCH, tiny_builder
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn import metrics as skm

from gometal_keras import Trainer, TrainerConfig
from gometal_keras.reporting.jsonreport import run_dict
from gometal_keras.training.evaluation import regression_report
from gometal_keras.training.metric_history import MetricHistory


def _trainer(classes: int, **config) -> Trainer:
    cfg = TrainerConfig(batch_size=BATCH, precision="float32", jit_compile=False, seed=0,
                        learning_rate=0.05, **config)
    return Trainer(tiny_builder(classes=classes), cfg)


class Predictions(keras.callbacks.Callback):
    """After the history (it comes later in fit's list): the outputs under the same weights,
    and the logs the history left for the callbacks after it."""

    def __init__(self, trainer: Trainer, x: np.ndarray):
        super().__init__()
        self.trainer, self.x, self.outputs, self.logs = trainer, x, [], []

    def on_epoch_end(self, epoch, logs=None):
        self.outputs.append(self.trainer.predict(self.x))
        self.logs.append(dict(logs))


def _classification_oracle(outputs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    predicted, k = outputs.argmax(1), outputs.shape[1]
    want = {"accuracy": skm.accuracy_score(y, predicted)}
    for average in ("macro", "micro"):
        want[f"{average}_precision"] = skm.precision_score(
            y, predicted, labels=range(k), average=average, zero_division=0)
        want[f"{average}_recall"] = skm.recall_score(
            y, predicted, labels=range(k), average=average, zero_division=0)
        want[f"{average}_f1"] = skm.f1_score(
            y, predicted, labels=range(k), average=average, zero_division=0)
    proba = np.exp(outputs - outputs.max(1, keepdims=True))
    proba /= proba.sum(1, keepdims=True)
    want["roc_auc_ovr"] = (skm.roc_auc_score(y, proba[:, 1]) if k == 2 else
                           skm.roc_auc_score(y, proba, multi_class="ovr", labels=range(k)))
    if k == 2:  # Go-Metal's binary form, class 1 positive, from sklearn's confusion matrix
        (tn, fp), (fn, _tp) = skm.confusion_matrix(y, predicted, labels=[0, 1])
        want["specificity"] = tn / (tn + fp) if tn + fp else 0.0
        want["npv"] = tn / (tn + fn) if tn + fn else 0.0
    return want


@pytest.mark.parametrize("classes", [3])  # two classes: the callback's hypothesis test below
def test_classification_history_matches_sklearn_every_epoch(classes):
    rng = np.random.default_rng(classes)
    x = rng.normal(size=(96, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (classes == 3) * (x[:, 1] > 0.5)
    trainer = _trainer(classes)
    seen = Predictions(trainer, x[64:])
    run = trainer.fit(x[:64], y[:64], epochs=2, validation_data=(x[64:], y[64:]),
                      callbacks=[seen], metric_history=True)
    names = set(_classification_oracle(seen.outputs[0], y[64:]))
    assert set(run.metric_history) == names
    for epoch, outputs in enumerate(seen.outputs):
        for name, value in _classification_oracle(outputs, y[64:]).items():
            assert run.metric_history[name][epoch] == pytest.approx(value, abs=1e-9), name
            assert seen.logs[epoch][f"val_{name}"] == run.metric_history[name][epoch]
    assert "val_loss" in seen.logs[0] and len(run.metric_history["accuracy"]) == 2


def test_regression_history_matches_sklearn_and_reaches_the_json():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = x[:, :1] * 2 + 1
    trainer = _trainer(1, loss="mse", problem_type="regression")
    seen = Predictions(trainer, x[32:])
    run = trainer.fit(x[:32], y[:32], epochs=2, validation_data=(x[32:], y[32:]),
                      callbacks=[seen], metric_history=True)
    target = y[32:, 0]
    for epoch, outputs in enumerate(seen.outputs):
        pred = outputs[:, 0]
        mae = skm.mean_absolute_error(target, pred)
        want = {"mae": mae, "mse": skm.mean_squared_error(target, pred),
                "rmse": np.sqrt(np.mean((target - pred) ** 2)), "r2": skm.r2_score(target, pred),
                "nmae": mae / np.ptp(target)}
        got = {k: v[epoch] for k, v in run.metric_history.items()}
        assert got == pytest.approx(want, rel=1e-6)
    data = json.loads(json.dumps(run_dict(run), allow_nan=False))
    assert data["metric_history"] == run.metric_history
    assert run.to_dict()["metric_history"] == run.metric_history
    report = regression_report(seen.outputs[-1], y[32:], run=run)
    assert report.to_dict()["training"]["metric_history"] == run.metric_history


def test_a_stream_of_batches_gives_the_history_of_its_arrays():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    runs = []
    for val in [(x[32:], y[32:]), [(x[32:48], y[32:48]), (x[48:], y[48:])]]:
        runs.append(_trainer(2).fit(x[:32], y[:32], epochs=1, validation_data=val,
                                    metric_history=True))
    assert runs[0].metric_history.keys() == runs[1].metric_history.keys()
    for name, values in runs[0].metric_history.items():
        assert values == pytest.approx(runs[1].metric_history[name], abs=1e-6), name


def test_bad_requests_are_refused_before_training():
    x, y = np.zeros((32, 8), np.float32), np.zeros(32, int)
    trainer = _trainer(2)
    before = [v.numpy().copy() for v in trainer.model.weights]
    with pytest.raises(ValueError, match=r"^metric_history=True needs validation_data"):
        trainer.fit(x, y, metric_history=True)
    with pytest.raises(TypeError, match=r"^metric_history is 'yes'; expected True or False"):
        trainer.fit(x, y, validation_data=(x, y), metric_history="yes")
    once = iter([(x, y)])
    with pytest.raises(ValueError, match="one-pass iterator can be read only once"):
        trainer.fit(x, y, validation_data=once, metric_history=True)
    assert trainer.epoch == 0
    for v, w in zip(trainer.model.weights, before, strict=True):
        np.testing.assert_array_equal(v.numpy(), w)
    assert trainer.fit(x, y).metric_history == {}  # off by default


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 4).flatmap(lambda k: st.tuples(
    hnp.arrays(np.float64, (12, k), elements=st.integers(-8, 8)),
    hnp.arrays(np.int64, 12, elements=st.integers(0, k - 1)))))
def test_the_callback_keeps_sklearn_values_for_any_outputs(case):
    outputs, labels = case
    history = MetricHistory(lambda: (outputs / 2, labels), "classification")
    history.on_epoch_end(0, None)
    history.on_epoch_end(1, None)
    want = _classification_oracle(outputs / 2, labels) if len(set(labels)) == outputs.shape[1] \
        else None
    assert all(len(v) == 2 for v in history.history.values())
    if want is not None:  # every class present: ROC AUC defined
        assert {k: v[1] for k, v in history.history.items()} == pytest.approx(want, abs=1e-9)
    else:
        assert history.history["roc_auc_ovr"] == [None, None]
        assert history.history["accuracy"][0] == skm.accuracy_score(labels, outputs.argmax(1))
