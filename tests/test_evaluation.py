"""The evaluation report against hand-written oracles, and its plots as matplotlib objects."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import BATCH, tiny_builder
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gometal_keras import Trainer, TrainerConfig, TrainingRun
from gometal_keras.reporting.evalplots import plot_report, report_figures
from gometal_keras.training.evaluation import classification_report, regression_report

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"


@st.composite
def classified(draw):
    """Logits for n samples of k classes and labels where every class occurs (n >= 2k)."""
    k = draw(st.integers(2, 5))
    n = draw(st.integers(2 * k, 40))
    # quarter steps: logits that differ stay apart through the softmax (ties stay ties)
    logits = draw(hnp.arrays(np.float64, (n, k), elements=st.integers(-20, 20))) / 4
    labels = np.array(
        draw(st.permutations([*range(k), *range(k)]))
        + draw(st.lists(st.integers(0, k - 1), min_size=n - 2 * k, max_size=n - 2 * k))
    )
    return logits, labels


@settings(max_examples=25, deadline=None)
@given(classified())
def test_classification_metrics_match_hand_counts(case):
    logits, labels = case
    k = logits.shape[1]
    report = classification_report(logits, labels)
    predicted = logits.argmax(axis=1)
    counts = np.zeros((k, k), int)
    for t, p in zip(labels, predicted, strict=True):
        counts[t, p] += 1
    assert report.confusion == counts.tolist()
    assert report.metrics["accuracy"] == pytest.approx(np.trace(counts) / len(labels))
    for c, row in enumerate(report.per_class):
        tp, fp, fn = counts[c, c], counts[:, c].sum() - counts[c, c], counts[c].sum() - counts[c, c]
        assert row["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
        assert row["recall"] == pytest.approx(tp / (tp + fn))
        assert row["support"] == counts[c].sum()
    # ROC AUC one-vs-rest, by the rank definition: P(score of a positive > a negative)
    proba = np.exp(logits - logits.max(1, keepdims=True))
    proba /= proba.sum(1, keepdims=True)
    aucs = []
    for c in range(k) if k > 2 else [1]:
        pos, neg = proba[labels == c, c], proba[labels != c, c]
        wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        aucs.append(wins / (len(pos) * len(neg)))
    assert report.metrics["roc_auc_ovr"] == pytest.approx(np.mean(aucs), abs=1e-9)
    assert len(report.roc) == len(report.pr) == (k if k > 2 else 1)
    # Go-Metal's other classification metrics, from the same hand counts
    rows, n = report.per_class, counts.sum()
    tp = np.diag(counts).astype(float)
    fp, fn = counts.sum(0) - tp, counts.sum(1) - tp
    tn = n - tp - fp - fn

    def ratio(a, b):
        return np.divide(a, b, out=np.zeros_like(a), where=b > 0)

    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    f1 = ratio(2 * precision * recall, precision + recall)
    m = report.metrics
    assert m["macro_precision"] == pytest.approx(precision.mean())
    assert m["macro_recall"] == pytest.approx(recall.mean())
    assert m["macro_f1"] == pytest.approx(f1.mean())
    micro = tp.sum() / n  # single-label: micro precision = micro recall = micro F1 = accuracy
    assert m["micro_precision"] == m["micro_recall"] == pytest.approx(micro)
    assert m["micro_f1"] == pytest.approx(micro)
    assert [r["specificity"] for r in rows] == pytest.approx(ratio(tn, tn + fp).tolist())
    assert [r["npv"] for r in rows] == pytest.approx(ratio(tn, tn + fn).tolist())
    if k == 2:  # Go-Metal's binary form: class 0 negative, class 1 positive
        tn0, fp0, fn0 = counts[0, 0], counts[0, 1], counts[1, 0]
        assert m["specificity"] == pytest.approx(tn0 / (tn0 + fp0) if tn0 + fp0 else 0.0)
        assert m["npv"] == pytest.approx(tn0 / (tn0 + fn0) if tn0 + fn0 else 0.0)
    else:
        assert "specificity" not in m and "npv" not in m


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(2, 30), elements=st.floats(-1e3, 1e3)),
    st.floats(-10, 10),
    st.floats(0.1, 5),
)
def test_regression_metrics_match_numpy(y, shift, noise):
    pred = y + shift + noise * np.sin(np.arange(len(y)))
    m = regression_report(pred, y).metrics
    err = y - pred
    assert m["mae"] == pytest.approx(np.abs(err).mean())
    assert m["rmse"] == pytest.approx(np.sqrt((err**2).mean()))
    assert m["mse"] == pytest.approx((err**2).mean())
    spread = y.max() - y.min()  # Go-Metal's NMAE: MAE over the targets' range
    assert m["nmae"] == (pytest.approx(np.abs(err).mean() / spread) if spread > 0 else None)
    ss = ((y - y.mean()) ** 2).sum()
    if ss > 1e-9:
        assert m["r2"] == pytest.approx(1 - (err**2).sum() / ss, rel=1e-6, abs=1e-9)


RUN = TrainingRun(
    "float32",
    [1.0, 0.6, 0.4],
    [0.1] * 3,
    val_losses=[1.1, 0.8, 0.7],
    metrics={"accuracy": [0.5, 0.7, 0.8], "learning_rate": [1e-2, 5e-3, 1e-3]},
)


def _lines(fig):
    return [line for ax in fig.axes for line in ax.get_lines()]


def test_classification_plots_have_one_curve_per_class_and_one_cell_per_pair(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 4
    report = classification_report(
        rng.normal(size=(60, 4)) + np.eye(4)[labels], labels, class_names=list("abcd"), run=RUN
    )
    figs = report_figures(report)
    assert list(figs) == [
        "training_curves",
        "learning_rate",
        "confusion_matrix",
        "roc",
        "precision_recall",
    ]
    loss_ax, metric_ax = figs["training_curves"].axes
    assert [len(line.get_xdata()) for line in loss_ax.get_lines()] == [3, 3]  # train, val
    assert len(metric_ax.get_lines()) == 1
    np.testing.assert_allclose(_lines(figs["learning_rate"])[0].get_ydata(), [1e-2, 5e-3, 1e-3])
    matrix_ax = figs["confusion_matrix"].axes[0]
    assert matrix_ax.images[0].get_array().shape == (4, 4)
    assert [int(t.get_text()) for t in matrix_ax.texts] == np.ravel(report.confusion).tolist()
    assert len(_lines(figs["roc"])) == 4 + 1  # one per class and the chance line
    assert len(_lines(figs["precision_recall"])) == 4
    written = plot_report(report, tmp_path / "plots")
    assert [p.name for p in written] == [f"{name}.png" for name in figs]
    assert all(p.read_bytes()[:8] == PNG for p in written)
    data = json.loads(report.write_json(tmp_path / "r.json").read_text())
    assert data["confusion"] == report.confusion and len(data["roc"]) == 4
    assert data["roc"][2]["fpr"] == list(_lines(figs["roc"])[2].get_xdata())
    assert data["training"]["val_loss"] == [1.1, 0.8, 0.7]


def test_regression_plots_and_trainer_hook(tmp_path):
    config = TrainerConfig(
        batch_size=BATCH,
        problem_type="regression",
        loss="mse",
        precision="float32",
        jit_compile=False,
        seed=0,
    )
    trainer = Trainer(tiny_builder(classes=1), config)
    x = np.random.default_rng(1).normal(size=(24, 8)).astype(np.float32)
    y = x[:, :1] * 2
    run = trainer.fit(x, y, epochs=2, validation_data=(x, y))
    report = trainer.evaluate(x, y, report=True)
    assert report.problem_type == "regression" and report.run is None
    np.testing.assert_allclose(report.y_pred, trainer.predict(x)[:, 0], rtol=1e-6)
    figs = report_figures(regression_report(trainer.predict(x), y, run=run))
    assert list(figs) == ["training_curves", "scatter", "residuals", "qq"]  # no LR schedule
    curves = figs["training_curves"].axes[0]
    curves.figure.canvas.draw()
    ticks = [t for t in curves.get_xticks() if curves.get_xlim()[0] <= t <= curves.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks  # whole epochs only
    assert "units of the targets fit was given" in curves.get_ylabel()
    assert figs["scatter"].axes[0].collections[0].get_offsets().shape == (24, 2)
    residuals = figs["residuals"].axes[0].collections[0].get_offsets()
    np.testing.assert_allclose(residuals[:, 1], y[:, 0] - trainer.predict(x)[:, 0], rtol=1e-5)
    qq = figs["qq"].axes[0].collections[0].get_offsets()
    assert np.all(np.diff(qq[:, 0]) > 0) and np.all(np.diff(qq[:, 1]) >= 0)  # sorted quantiles
    assert all(p.read_bytes()[:8] == PNG for p in plot_report(report, tmp_path))


def test_bad_labels_are_one_sentence():
    with pytest.raises(ValueError, match=r"^y must hold one class index in \[0, 3\) per sample"):
        classification_report(np.zeros((4, 3)), [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"^y holds 3 values for 4 predictions"):
        regression_report(np.zeros(4), [1.0, 2.0, 3.0])
