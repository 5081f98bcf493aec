"""Go-Metal's PlotData JSON, and its opt-in push to a sidecar, against a local HTTP server."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
import urllib.request

import numpy as np
import pytest

from gometal_keras import TrainingRun
from gometal_keras.reporting import evalplots
from gometal_keras.reporting.plotdata import (
    PLOT_TYPES,
    PlotData,
    Series,
    line,
    push_plot_data,
    report_plot_data,
)
from gometal_keras.training.evaluation import classification_report, regression_report

# Go-Metal's JSON field names, from the struct tags of training/visualization.go.
PLOT_KEYS = {"plot_type", "title", "timestamp", "model_name", "series", "config"}
CONFIG_KEYS = {"x_axis_label", "y_axis_label", "x_axis_scale", "y_axis_scale", "show_legend",
               "show_grid", "width", "height", "interactive"}
GO_METAL_TYPES = {
    "training_curves", "learning_rate_schedule", "roc_curve", "precision_recall",
    "confusion_matrix", "parameter_distribution", "gradient_histogram", "activation_pattern",
    "regression_scatter", "residual_plot", "qq_plot", "feature_importance", "learning_curve",
    "validation_curve", "prediction_interval", "feature_correlation", "partial_dependence",
}


class Sidecar(http.server.BaseHTTPRequestHandler):
    """A stand-in dashboard: keeps what is posted, answers as the server's `reply` says."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((self.path, self.headers["Content-Type"], json.loads(body)))
        if self.server.delay:
            time.sleep(self.server.delay)
        status, answer = self.server.reply
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)  # the timeout test's client gave up waiting

    def log_message(self, *args):
        pass


@pytest.fixture
def sidecar():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sidecar)
    server.posts, server.delay = [], 0.0
    server.reply = (200, {"success": True, "message": "ok", "plot_id": "p1"})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _run() -> TrainingRun:
    return TrainingRun("float32", [1.0, 0.5], [0.1, 0.1], val_losses=[1.1, 0.6],
                       metrics={"accuracy": [0.5, 0.8], "learning_rate": [0.1, 0.05]})


def test_every_plot_of_a_report_is_go_metals_plotdata():
    logits = np.array([[2.0, 0, 0], [0, 2, 0], [0, 0, 2], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    report = classification_report(logits, [0, 1, 2, 1, 1, 2], run=_run())
    plots = report_plot_data(report, "mlp")
    assert set(PLOT_TYPES.values()) == GO_METAL_TYPES
    assert list(plots) == list(evalplots.report_figures(report))  # the same plots, in order
    assert [p.plot_type for p in plots.values()] == [
        "training_curves", "learning_rate_schedule", "confusion_matrix", "roc_curve",
        "precision_recall"]
    for plot in plots.values():
        data = json.loads(plot.to_json())
        assert set(data) - {"metrics"} == PLOT_KEYS and set(data["config"]) >= CONFIG_KEYS
        assert data["model_name"] == "mlp" and data["timestamp"].endswith("+00:00")
        assert all(set(s) <= {"name", "type", "data", "style"} for s in data["series"])
    roc = plots["roc"]
    for curve, series in zip(report.roc, roc.series, strict=False):
        assert series.xs().tolist() == curve["fpr"] and series.ys().tolist() == curve["tpr"]
    cells = {(p.y, p.x): p.z for p in plots["confusion_matrix"].series[0].data}
    assert cells == {(i, j): v for i, row in enumerate(report.confusion) for j, v in enumerate(row)}
    assert plots["learning_rate"].config.y_axis_scale == "log"
    regression = report_plot_data(regression_report(np.array([1.0, 2.5, 2.0]), [1.0, 2.0, 3.0]))
    residuals = regression["residuals"].series_named("Residuals")
    np.testing.assert_allclose(residuals.ys(), [0.0, -0.5, 1.0])


def test_plotdata_refuses_what_go_metal_does_not_know():
    with pytest.raises(ValueError, match=r"^plot_type 'pie' is not one of Go-Metal's 17"):
        PlotData("pie", "t", [])
    with pytest.raises(ValueError, match=r"^Series type 'area' is not Go-Metal's"):
        Series("s", "area", [])
    empty = PlotData("learning_curve", "t", [line("a", [1], [float("nan")])]).to_dict()
    assert empty["series"][0]["data"] == [{"x": 1, "y": None}] and "metrics" not in empty


def test_a_pushed_plot_is_the_json_written_to_disk(sidecar, tmp_path):
    server, url = sidecar
    plot = evalplots.learning_curve(_run())
    _, written = evalplots.save_plot(plot, tmp_path, sidecar_url=url + "/")
    ((path, content_type, posted),) = server.posts
    assert path == "/api/plot" and content_type == "application/json"
    assert posted == json.loads(written.read_text())
    assert push_plot_data(plot, url)["plot_id"] == "p1"
    report = regression_report(np.array([1.0, 2.5, 2.0]), [1.0, 2.0, 3.0], run=_run())
    pngs = evalplots.plot_report(report, tmp_path / "r", "mlp", sidecar_url=url)
    posted = {p["plot_type"]: p for _, _, p in server.posts[2:]}
    for png in pngs:
        data = json.loads(png.with_suffix(".json").read_text())
        assert posted[data["plot_type"]] == data and data["model_name"] == "mlp"
    assert len(posted) == len(pngs) == 5  # curves, rate, scatter, residuals, Q-Q


def test_nothing_is_sent_unless_a_url_is_given(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("no request expected")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    files = evalplots.save_plot(evalplots.learning_curve(_run()), tmp_path)
    assert [f.suffix for f in files] == [".png", ".json"]


def test_sidecar_failures_are_one_sentence(sidecar, tmp_path):
    server, url = sidecar
    plot = evalplots.learning_curve(_run())
    server.reply = (500, {"success": False, "message": "disk full"})
    with pytest.raises(ValueError, match=r"refused the learning_curve plot \(HTTP 500: 'disk"):
        push_plot_data(plot, url)
    server.reply = (200, b"<html>")
    with pytest.raises(ValueError, match=r"HTTP 200: b'<html>'"):
        push_plot_data(plot, url)
    server.reply, server.delay = (200, {"success": True}), 1.0
    with pytest.raises(ConnectionError, match=r"^The plot sidecar at .* did not answer"):
        push_plot_data(plot, url, timeout=0.2)
    with pytest.raises(ValueError, match=r"^url is 'localhost:8080'; expected the sidecar's"):
        push_plot_data(plot, "localhost:8080")
    with pytest.raises(ValueError, match=r"^timeout is 0; expected a positive number"):
        push_plot_data(plot, url, timeout=0)
    with pytest.raises(ValueError, match=r"^url is 'ftp://x'"):
        evalplots.save_plot(plot, tmp_path / "never", sidecar_url="ftp://x")
    assert not (tmp_path / "never").exists()  # refused before anything was written
    closed = http.server.HTTPServer(("127.0.0.1", 0), Sidecar)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now
    with pytest.raises(ConnectionError, match=r"could not be reached or did not answer"):
        push_plot_data(plot, f"http://127.0.0.1:{port}")
