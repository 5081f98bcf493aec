"""`Predictor` on checkpoints and ONNX files, and the ``export`` / ``predict`` commands."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from helpers import tiny_builder
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit
from scipy.special import softmax as scipy_softmax

from gometal_keras import Trainer, TrainerConfig
from gometal_keras.cli.commands import main
from gometal_keras.engines.objectives import to_probabilities
from gometal_keras.shipping.predictor import Predictor

pytest.importorskip("onnxruntime")
NAMES = ["ant", "bee", "cat", "dog"]


@functools.cache
def _trained(folder: str) -> tuple[Trainer, str, str, np.ndarray]:
    config = TrainerConfig(batch_size=16, precision="float32", jit_compile=False, seed=3)
    trainer = Trainer(tiny_builder(batchnorm=True, dropout=0.3), config)
    x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    trainer.fit(x, (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0), epochs=2)
    ckpt, onnx_path = f"{folder}/run.gmk", f"{folder}/model.onnx"
    trainer.save(ckpt)
    trainer.export(onnx_path, format="onnx")
    return trainer, ckpt, onnx_path, x


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return _trained(str(tmp_path_factory.mktemp("predictor")))


def test_checkpoint_and_onnx_predict_what_the_trainer_predicts(trained):
    trainer, ckpt, onnx_path, x = trained
    want = trainer.predict(x)
    # Keras in the same batches as Trainer.predict: the very same numbers
    np.testing.assert_array_equal(Predictor.load(ckpt, batch_size=16).predict(x), want)
    onnx = Predictor.load(onnx_path, class_names=NAMES, batch_size=7)
    np.testing.assert_allclose(onnx.predict(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(onnx.predict_proba(x), scipy_softmax(want, axis=1), atol=1e-5)
    assert onnx.classify(x) == [NAMES[i] for i in want.argmax(axis=1)]


@settings(max_examples=10, deadline=None)
@given(rows=st.integers(1, 40), batch=st.integers(1, 50))
def test_batching_does_not_change_the_outputs(trained, rows, batch):
    onnx_path, x = trained[2:]
    whole = Predictor.load(onnx_path, batch_size=64).predict(x[:rows])
    np.testing.assert_allclose(
        Predictor.load(onnx_path, batch_size=batch).predict(x[:rows]), whole, atol=1e-6
    )


@given(st.lists(st.floats(-30, 30), min_size=1, max_size=20))
def test_one_output_is_a_binary_classifier(logits):
    column = np.array(logits)[:, None]
    proba = to_probabilities(column, are_probabilities=False)
    np.testing.assert_allclose(proba[:, 1], expit(column[:, 0]), rtol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_wrong_input_shape_is_one_sentence(trained):
    _, ckpt, onnx_path, x = trained
    for path in (ckpt, onnx_path):
        with pytest.raises(
            ValueError,
            match=r"^Input of shape \(40, 7\) does not fit .*"
            r"expected \(batch, 8\) with batch at least 1\.$",
        ):
            Predictor.load(path).predict(x[:, :7])
    with pytest.raises(ValueError, match=r"^3 class names were given for 4 classes; expected"):
        Predictor.load(onnx_path, class_names=NAMES[:3]).classify(x)


def test_bad_files_are_one_sentence(tmp_path, trained):
    onnx_path = trained[2]
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match=r"is not an ONNX model; expected"):
        Predictor.load(tmp_path / "notes.txt")
    blob = open(onnx_path, "rb").read()  # noqa: SIM115
    (tmp_path / "cut.onnx").write_bytes(blob[: len(blob) - 40])
    with pytest.raises(ValueError, match=r"is a truncated or corrupted ONNX file"):
        Predictor.load(tmp_path / "cut.onnx")
    with pytest.raises(FileNotFoundError, match=r"^No model file at"):
        Predictor.load(tmp_path / "missing.onnx")


def test_export_and_predict_commands(trained, tmp_path, capsys):
    trainer, ckpt, _, x = trained
    out = str(tmp_path / "cli.onnx")
    assert main(["export", ckpt, out]) == 0
    np.save(tmp_path / "x.npy", x[:5])
    capsys.readouterr()
    assert main(["predict", out, str(tmp_path / "x.npy"), "--classes", ",".join(NAMES)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [NAMES[i] for i in trainer.predict(x[:5]).argmax(axis=1)]
    assert (
        main(
            [
                "predict",
                ckpt,
                str(tmp_path / "x.npy"),
                "--mode",
                "proba",
                "--output",
                str(tmp_path / "p.npy"),
            ]
        )
        == 0
    )
    np.testing.assert_allclose(np.load(tmp_path / "p.npy").sum(axis=1), 1.0, rtol=1e-6)
    np.save(tmp_path / "bad.npy", x[:5, :3])
    assert main(["predict", out, str(tmp_path / "bad.npy")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("gometal-keras: error: Input of shape (5, 3) does not fit")


def _nchw_onnx(path: str) -> str:
    """An ONNX file as PyTorch writes them, channels first: Conv on the input, then Gemm."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=(2, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=(3, 8)).astype(np.float32), "k"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], "conv"),
        helper.make_node("Flatten", ["c"], ["f"], "flat"),
        helper.make_node("Gemm", ["f", "k"], ["output"], "fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "nchw",
        [helper.make_tensor_value_info("input", 1, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("output", 1, ["batch", 3])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_image_models_say_which_layout_they_take(tmp_path):
    from imagefolders import image_file, pillow_pixels

    from gometal_keras.model.builder import ModelBuilder
    from gometal_keras.model.onnx_export import export_onnx

    ours = ModelBuilder([4, 3, 4, 4]).add_conv2d(2, 3).add_dense(3).compile()
    p_ours = Predictor.load(export_onnx(ours, str(tmp_path / "ours.onnx")))
    p_torch = Predictor.load(_nchw_onnx(str(tmp_path / "torch.onnx")))
    assert (p_ours.layout, p_ours.input_shape) == ("NHWC", (4, 4, 3))
    assert (p_torch.layout, p_torch.input_shape) == ("NCHW", (3, 4, 4))
    nhwc = np.random.default_rng(1).random((5, 4, 4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"expected \(batch, 3, 4, 4\) with batch at least 1: "
                       r"NCHW, channels first .* \(these samples look NHWC: pass "
                       r"x\.transpose\(0, 3, 1, 2\)\)\.$"):  # fmt: skip
        p_torch.predict(nhwc)
    with pytest.raises(ValueError, match=r"\(batch, 4, 4, 3\) with batch at least 1: NHWC, "
                       r"channels last .*x\.transpose\(0, 2, 3, 1\)\)\.$"):  # fmt: skip
        p_ours.predict(nhwc.transpose(0, 3, 1, 2))
    # Image files go in each model's own layout: the same pixels, the same outputs.
    files = [image_file(tmp_path / f"{i}.png", mode, seed=i) for i, mode in enumerate("L" * 3)]
    pixels = np.stack([pillow_pixels(f, 4) for f in files])
    got = p_torch.predict_files(tmp_path)
    assert list(got.files) == [str(f) for f in files]
    np.testing.assert_allclose(got, p_torch.predict(pixels.transpose(0, 3, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(p_ours.predict_files(files), p_ours.predict(pixels), atol=1e-6)
