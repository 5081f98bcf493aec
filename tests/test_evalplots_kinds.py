"""Go-Metal's nine model-analysis plot kinds: their numbers against sklearn, SciPy and numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats
from sklearn import inspection
from sklearn.linear_model import LinearRegression
from sklearn.metrics import accuracy_score

from gometal_keras import ModelBuilder, Trainer, TrainerConfig, TrainingRun
from gometal_keras.reporting import evalplots

pytest.importorskip("matplotlib")
PNG = b"\x89PNG\r\n\x1a\n"
CONFIG = TrainerConfig(16, precision="float32", jit_compile=False, seed=0)


@pytest.fixture(scope="module")
def linear():
    """A one-Dense regression trainer holding sklearn's least-squares fit of (x, y)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 4)).astype(np.float32)
    y = x @ np.array([2.0, -1.0, 0.0, 0.5]) + 0.3 + rng.normal(scale=0.2, size=48)
    fit = LinearRegression().fit(x, y)
    trainer = Trainer(ModelBuilder([16, 4]).add_dense(1),
                      CONFIG.replace(loss="mse", problem_type="regression"))
    trainer.model.set_weights([fit.coef_.reshape(4, 1).astype(np.float32),
                               np.array([fit.intercept_], np.float32)])
    return trainer, fit, x, y.astype(np.float32)


def test_permutation_importance_and_partial_dependence_equal_sklearns_on_the_same_model(linear):
    trainer, fit, x, y = linear
    plot = evalplots.feature_importance(trainer, x, y, n_repeats=3, seed=7)
    want = inspection.permutation_importance(fit, x, y, n_repeats=3, random_state=7)
    np.testing.assert_allclose(plot.metrics["importances_mean"], want.importances_mean,
                               rtol=1e-4, atol=1e-5)
    bars = plot.series_named("Permutation Importance")
    assert bars.data[0].label == "feature_0"  # the largest coefficient first
    pd = evalplots.partial_dependence(trainer, x, features=[0, 3], grid_resolution=5)
    for column, series in zip([0, 3], pd.series, strict=True):
        want = inspection.partial_dependence(fit, x, [column], grid_resolution=5)
        np.testing.assert_allclose(series.xs(), want["grid_values"][0], rtol=1e-6)
        np.testing.assert_allclose(series.ys(), want["average"][0], rtol=1e-4, atol=1e-5)


def test_prediction_interval_is_split_conformal_with_a_t_interval_of_the_mean(linear):
    trainer, fit, x, y = linear
    plot = evalplots.prediction_interval(trainer, x, y, feature=1, confidence=0.9)
    residuals = y - fit.predict(x)
    n = len(y)
    half = np.quantile(np.abs(residuals), np.ceil((n + 1) * 0.9) / n, method="higher")
    assert plot.metrics["prediction_half_width"] == pytest.approx(half, rel=1e-4)
    _, high = stats.t.interval(0.9, n - 1, scale=np.std(residuals, ddof=1) / np.sqrt(n))
    assert plot.metrics["confidence_half_width"] == pytest.approx(high, rel=1e-4)
    assert plot.metrics["coverage"] >= 0.9
    predictions = plot.series_named("Predictions")
    assert np.all(np.diff(predictions.xs()) >= 0)  # sorted by feature 1
    band = plot.series_named("Prediction Interval (90%)").ys()
    np.testing.assert_allclose(band[:n], predictions.ys() + half, rtol=1e-4, atol=1e-5)


def test_gradients_equal_the_mse_gradient_in_closed_form_and_leave_the_trainer_alone(linear):
    trainer, _, x, y = linear
    before = [w.copy() for w in trainer.model.get_weights()]
    kernel, bias = before
    plot = evalplots.gradient_histogram(trainer, x[:16], y[:16], bins=6)
    residual = x[:16] @ kernel[:, 0] + bias[0] - y[:16]  # d/dw mean(r^2) = 2/n X^T r
    want = {"kernel": 2 / 16 * x[:16].T @ residual, "bias": np.array([2 / 16 * residual.sum()])}
    for series in plot.series:
        grad = want[series.name.rsplit("/", 1)[1]]
        assert plot.metrics[series.name]["gradient_norm"] == pytest.approx(
            np.linalg.norm(grad), rel=1e-3)
        assert series.ys().sum() == grad.size
    for now, then in zip(trainer.model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(now, then)


def test_activation_and_parameter_statistics_match_a_numpy_forward_pass():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    trainer = Trainer(ModelBuilder([16, 3]).add_dense(5).add_relu().add_dense(2), CONFIG)
    w1, b1, w2, b2 = trainer.model.get_weights()
    hidden = x @ w1 + b1
    want = {0: hidden, 1: np.maximum(hidden, 0), 2: np.maximum(hidden, 0) @ w2 + b2}
    plot = evalplots.activation_pattern(trainer, x, bins=7)
    assert len(plot.series) == 3
    for index, series in enumerate(plot.series):
        got = plot.metrics[series.name]
        assert got["mean"] == pytest.approx(want[index].mean(), abs=1e-5)
        assert got["std"] == pytest.approx(want[index].std(), abs=1e-5)
        assert got["sparsity_ratio"] == np.mean(want[index] == 0)
    params = evalplots.parameter_distribution(trainer, bins=4)
    for series, weight in zip(params.series, [w1, b1, w2, b2], strict=True):
        counts, _ = np.histogram(weight, bins=4)
        np.testing.assert_array_equal(series.ys(), counts)
        assert params.metrics[series.name]["max"] == pytest.approx(weight.max())


@settings(max_examples=10, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(3, 12), st.integers(2, 4)),
                  elements=st.integers(-50, 50)))
def test_feature_correlation_is_pearsons_r(x):
    plot = evalplots.feature_correlation(x)
    cells = {(p.y, p.x): p.z for p in plot.series[0].data}
    for i in range(x.shape[1]):
        for j in range(x.shape[1]):
            if np.ptp(x[:, i]) == 0 or np.ptp(x[:, j]) == 0:
                assert cells[i, j] is None  # undefined for a constant column
            else:
                assert cells[i, j] == pytest.approx(stats.pearsonr(x[:, i], x[:, j])[0],
                                                    abs=1e-9)


def test_learning_curve_reads_the_run_record():
    run = TrainingRun("float32", [1.0, 0.5, 0.4], [0.1] * 3, val_losses=[1.2, 0.7, 0.6],
                      metrics={"accuracy": [0.5, 0.7, 0.8]},
                      metric_history={"accuracy": [0.4, 0.6, 0.7], "macro_f1": [0.3, 0.5, 0.6]})
    loss = evalplots.learning_curve(run)
    assert loss.series_named("Validation Score").ys().tolist() == [1.2, 0.7, 0.6]
    acc = evalplots.learning_curve(run, "accuracy")
    assert acc.series_named("Training Score").ys().tolist() == [0.5, 0.7, 0.8]
    assert acc.series_named("Training Score").xs().tolist() == [1, 2, 3]
    assert [s.name for s in evalplots.learning_curve(run, "macro_f1").series] == [
        "Validation Score"]
    with pytest.raises(ValueError, match=r"^The run has no 'r2' per epoch; expected one of"):
        evalplots.learning_curve(run, "r2")


def test_validation_curve_scores_each_trainer_with_sklearn(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(48, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    built = []

    def build(rate):
        built.append(Trainer(ModelBuilder([16, 3]).add_dense(2),
                             CONFIG.replace(learning_rate=rate)))
        return built[-1]

    plot = evalplots.validation_curve(build, [1e-3, 0.3], x[:32], y[:32], (x[32:], y[32:]),
                                      "learning rate", epochs=1)
    for side, (xs, ys) in (("Training", (x[:32], y[:32])), ("Validation", (x[32:], y[32:]))):
        want = [accuracy_score(ys, t.predict(xs).argmax(1)) for t in built]
        assert plot.series_named(f"{side} Score").ys().tolist() == pytest.approx(want)
    assert plot.config.x_axis_scale == "log" and plot.config.x_axis_label == "learning rate"
    png, json_file = evalplots.save_plot(plot, tmp_path)
    assert png.read_bytes()[:8] == PNG and json_file.name == "validation_curve.json"


def test_every_kind_draws_its_series(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    trainer = Trainer(ModelBuilder([16, 3]).add_dense(4).add_relu().add_dense(2), CONFIG)
    plots = [
        evalplots.parameter_distribution(trainer),
        evalplots.gradient_histogram(trainer, x[:16], y[:16]),
        evalplots.activation_pattern(trainer, x),
        evalplots.feature_importance(trainer, x, y, feature_names=["a", "b", "c"], n_repeats=2),
        evalplots.feature_correlation(x, ["a", "b", "c"]),
        evalplots.partial_dependence(trainer, x, [0], grid_resolution=4),
    ]
    for plot in plots:
        fig = evalplots.draw(plot)
        ax = fig.axes[0]
        drawn = len(ax.get_lines()) + len(ax.patches) + len(ax.images) + len(ax.collections)
        assert drawn >= 1, plot.plot_type
    importance = evalplots.draw(plots[3]).axes[0]
    assert {t.get_text() for t in importance.get_yticklabels()} == {"a", "b", "c"}
    assert len(evalplots.draw(plots[0]).axes[0].patches) == len(trainer.model.trainable_weights)
    with pytest.raises(ValueError, match=r"^bins is 0; expected a positive int\.$"):
        evalplots.parameter_distribution(trainer, bins=0)
    with pytest.raises(ValueError, match=r"^2 feature names were given for 3 features"):
        evalplots.feature_correlation(x, ["a", "b"])
    assert keras.config.floatx() == "float32"
