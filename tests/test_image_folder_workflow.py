"""A user's own image folder, the whole way: fit, evaluate(report=True), predict, the command.

Folders mix good images of every mode (RGB, grey, RGBA, grey+alpha, palette; PNG and JPEG)
with broken files of every kind (a text file, an empty one, a cut PNG, a PNG whose pixel
data is broken) under both error policies. The oracles are independent of the loader:
Pillow alone decodes each file (`imagefolders.pillow_pixels`), the trainer's array path
predicts those pixels, and ``sklearn.metrics`` counts the report.
"""

from __future__ import annotations

import os
import time
import traceback
import warnings

import keras
import numpy as np
import pytest
from helpers import variable_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imagefolders import BROKEN, MODES, broken_file, image_file, pillow_pixels, write_folder
from sklearn.metrics import accuracy_score, confusion_matrix

from gometal_keras import ModelBuilder, Trainer, TrainerConfig, evaluation_report
from gometal_keras.cli.commands import main
from gometal_keras.data.inputs import FileOutputs
from gometal_keras.data.validation import PixelScaleWarning
from gometal_keras.vision import DataLoader, ImageFolderDataset, UnreadableImageError
from gometal_keras.vision import check as check_module

SIZE, BATCH, CLASSES = 6, 4, 3
#: Broken files the header check finds (the rest only decoding finds).
HEADER_BROKEN = ("text", "truncated", "empty")


def _trainer(seed: int = 0) -> Trainer:
    builder = ModelBuilder([BATCH, 3, SIZE, SIZE]).add_conv2d(3, 3).add_relu()
    config = TrainerConfig(batch_size=BATCH, precision="float32", jit_compile=False, seed=seed)
    return Trainer(builder.add_dense(CLASSES), config)


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    return _trainer()


def _oracle(trainer: Trainer, files) -> np.ndarray:
    """The trainer's array path on Pillow's own pixels of `files`."""
    return trainer.predict(np.stack([pillow_pixels(f, SIZE) for f in files]))


# A folder: (class, kind) per file; a kind is a Pillow mode, "jpeg", or a broken kind.
KINDS = st.sampled_from([*MODES, "jpeg", *BROKEN])
FOLDERS = st.lists(st.tuples(st.integers(0, CLASSES - 1), KINDS), min_size=1, max_size=12)


def _write(root, files) -> tuple[list[str], list[str], dict[str, str]]:
    """Write `files` under `root`; return (good paths, bad paths, kind of each path)."""
    good, bad, kinds = [], [], {}
    for i, (label, kind) in enumerate(files):
        folder = root / f"c{label}"
        folder.mkdir(exist_ok=True)
        path = folder / f"{i:02d}.{'jpg' if kind == 'jpeg' else 'png'}"
        if kind in BROKEN:
            broken_file(path, kind)
            bad.append(str(path))
        else:
            image_file(path, "RGB" if kind == "jpeg" else kind, seed=i, size=(5 + i % 4, 7))
            good.append(str(path))
        kinds[str(path)] = kind
    return good, bad, kinds


@pytest.mark.filterwarnings("ignore:No positive class found")  # sklearn: a class absent
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    files=FOLDERS,
    batch=st.integers(1, 7),
    shuffle=st.booleans(),
    policy=st.sampled_from(["skip", "raise"]),
)
def test_predictions_and_report_are_tied_to_their_files(
    trainer, tmp_path_factory, files, batch, shuffle, policy
):
    root = tmp_path_factory.mktemp("folder")
    good, bad, kinds = _write(root, files)
    ds = ImageFolderDataset(root)
    loader = DataLoader(ds, batch, shuffle, SIZE, seed=1, num_workers=2, on_error=policy)
    label_of = dict(zip(ds.paths, ds.labels.tolist(), strict=True))
    found_first = [p for p in ds.paths if kinds[p] in HEADER_BROKEN]
    if policy == "raise" and bad:
        # A header-broken file is answered before anything is decoded; a broken body when
        # its batch is decoded: either way an error naming an unreadable file.
        with pytest.raises(UnreadableImageError) as caught:
            trainer.predict(loader)
        named = [p for p in bad if repr(p) in str(caught.value)]
        assert named and "\n" not in str(caught.value)
        assert ("before any step" in str(caught.value)) == bool(found_first)
        return
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        if not good:
            with pytest.raises(ValueError, match="gave no batch"):
                trainer.predict(loader)
            return
        out = trainer.predict(loader)
    assert isinstance(out, FileOutputs) and len(out) == len(out.files) == len(good)
    assert sorted(out.files) == sorted(good) and sorted(out.skipped) == sorted(bad)
    if not shuffle:
        assert list(out.files) == [p for p in ds.paths if p in good]  # the folder's order
    np.testing.assert_allclose(out, _oracle(trainer, out.files), atol=1e-5)
    assert out.labels.tolist() == [label_of[f] for f in out.files]
    said = [str(w.message) for w in seen if issubclass(w.category, UserWarning)]
    assert bool(said) == bool(found_first)  # skipping unreadable files is never silent
    # The report gathers each label with its row, skipped files and all (sklearn counts).
    report = trainer.evaluate(loader, report=True)
    want = _oracle(trainer, out.files).argmax(axis=1)
    truth = [label_of[f] for f in out.files]
    assert report.confusion == confusion_matrix(truth, want, labels=range(CLASSES)).tolist()
    assert report.metrics["accuracy"] == pytest.approx(accuracy_score(truth, want))
    loader.close()


def _batches(x, y, kind):
    """``(x, y)`` as a stream of the kind `fit` takes."""
    pairs = [(x[i : i + 5], y[i : i + 5]) for i in range(0, len(x), 5)]
    if kind == "list":
        return pairs
    if kind == "generator":
        return (pair for pair in pairs)
    if kind == "tf.data":
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    if kind == "torch":
        torch = pytest.importorskip("torch")
        tensors = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        return torch.utils.data.DataLoader(tensors, batch_size=5)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return len(pairs)

        def __getitem__(self, i):
            return pairs[i]

    return Batches()


@pytest.mark.parametrize("kind", ["list", "generator", "tf.data", "PyDataset", "torch"])
def test_every_stream_fit_takes_gives_the_report_of_its_arrays(trainer, kind):
    rng = np.random.default_rng(0)
    x = rng.random((23, SIZE, SIZE, 3), dtype=np.float32)
    y = rng.integers(0, CLASSES, 23).astype(np.int32)
    want = trainer.evaluate(x, y, report=True)
    got = evaluation_report(trainer, _batches(x, y, kind))  # no y: gathered from the stream
    assert got.confusion == want.confusion
    assert got.confusion == confusion_matrix(y, trainer.predict(x).argmax(1)).tolist()
    for name, value in want.metrics.items():
        assert got.metrics[name] == pytest.approx(value, abs=1e-6)


def test_a_stream_without_labels_or_arrays_without_y_are_one_sentence(trainer):
    x = np.zeros((4, SIZE, SIZE, 3), np.float32)
    with pytest.raises(ValueError, match=r"^A batch of the iterator has no labels; expected"):
        trainer.evaluate(iter([(x,)]), report=True)
    with pytest.raises(ValueError, match=r"^y is None with array samples; expected one label"):
        trainer.evaluate(x, report=True)


def test_fit_answers_an_unreadable_file_before_the_first_step(tmp_path):
    root = write_folder(tmp_path, per_class=6, classes=CLASSES, size=SIZE)
    broken_file(root / f"c{CLASSES - 1}" / "zzz.png", "text")  # the very last file read
    loader = DataLoader(ImageFolderDataset(root), BATCH, shuffle=False, image_size=SIZE)
    trainer = _trainer()
    before = variable_values(trainer.model.variables)
    with pytest.raises(UnreadableImageError) as caught:
        trainer.fit(loader, epochs=2)
    for a, b in zip(before, variable_values(trainer.model.variables), strict=True):
        np.testing.assert_array_equal(a, b)  # not one step ran
    assert trainer.epoch == 0
    assert loader.cache_stats().misses == 0  # nothing was decoded either
    frames = [frame.filename for frame in traceback.extract_tb(caught.tb)]
    assert not any("prefetch" in f or "streaming" in f for f in frames)  # not the reader thread
    message = str(caught.value)  # one sentence
    assert "zzz.png' (not an image)" in message and "before any step" in message
    assert "\n" not in message and message.count("; expected") == 1
    assert 'on_error="skip"' in message


def test_a_broken_body_is_found_when_decoded_and_keeps_the_epoch_rule(tmp_path):
    root = write_folder(tmp_path, per_class=6, classes=CLASSES, size=SIZE)
    broken_file(root / f"c{CLASSES - 1}" / "zzz.png", "body")  # its ends look whole
    loader = DataLoader(ImageFolderDataset(root), BATCH, shuffle=False, image_size=SIZE)
    assert loader.verify() == []
    trainer = _trainer()
    with pytest.raises(UnreadableImageError, match=r"zzz\.png' cannot be decoded"):
        trainer.fit(loader, epochs=1)
    assert trainer.epoch == 0  # the epoch did not finish: it does not count


def test_the_header_check_reads_ends_only_and_stays_fast(tmp_path, monkeypatch):
    image_file(tmp_path / "one.png", "RGB", seed=0, size=(32, 32))
    blob = (tmp_path / "one.png").read_bytes()
    paths = []
    for i in range(3000):
        paths.append(str(tmp_path / f"{i:05d}.png"))
        with open(paths[-1], "wb") as fh:
            fh.write(blob)
    broken_file(tmp_path / "cut.png", "truncated")
    decoded = []
    real = check_module.decode_pixels
    monkeypatch.setattr(
        check_module, "decode_pixels", lambda p, *a: decoded.append(p) or real(p, *a)
    )
    start = time.perf_counter()
    found = check_module.unreadable_files([*paths, str(tmp_path / "cut.png")])
    seconds = time.perf_counter() - start
    assert list(found) == [str(tmp_path / "cut.png")]
    assert decoded == [str(tmp_path / "cut.png")]  # only the suspect was decoded
    # 3,000 files: about 25 ms here (8 us a file, so about 1 s for 100,000); a wide bound.
    assert seconds < 1.5, f"the header check took {seconds:.2f} s for 3,001 files"


def test_uint8_pixels_given_as_arrays_get_a_hint_at_the_callers_line(trainer):
    x = np.random.default_rng(0).integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8)
    y = np.zeros(8, np.int32)
    with pytest.warns(PixelScaleWarning, match=r"x is uint8 pixels up to 255.*/ 255") as seen:
        trainer.fit(x, y)
    assert seen[0].filename == __file__  # the warning names the user's call
    with warnings.catch_warnings():
        warnings.simplefilter("error", PixelScaleWarning)
        trainer.fit(x.astype(np.float32) / 255, y)  # scaled: no warning
        rescaling = keras.Sequential(
            [keras.Input((SIZE, SIZE, 3)), keras.layers.Rescaling(1 / 255),
             keras.layers.Flatten(), keras.layers.Dense(CLASSES)]
        )  # fmt: skip
        config = TrainerConfig(batch_size=BATCH, precision="float32", jit_compile=False)
        Trainer(rescaling, config).fit(x, y)  # the model scales them itself: no warning


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """A folder as users have them: a corrupt file, a grey image, a file cut short, and
    one whose pixel data is broken (found only when decoded), among good ones."""
    root = write_folder(tmp_path_factory.mktemp("users"), per_class=5, classes=CLASSES, size=9)
    broken_file(root / "c0" / "corrupt.jpg", "text")
    image_file(root / "c1" / "grey.png", "L", seed=3, size=(12, 10))
    broken_file(root / "c2" / "cut.png", "truncated")
    broken_file(root / "c2" / "broken_body.png", "body")
    return root


def test_a_users_folder_goes_the_whole_way(user_folder, tmp_path, capsys):
    ds = ImageFolderDataset(user_folder)
    bad = {str(user_folder / n) for n in ("c0/corrupt.jpg", "c2/cut.png", "c2/broken_body.png")}
    train = DataLoader(ds, BATCH, True, SIZE, on_error="skip")
    trainer = _trainer(seed=1)
    with pytest.warns(UserWarning, match=r"2 of 19 image files cannot be decoded"):
        run = trainer.fit(train, epochs=2)
    assert run.epochs_run == 2 and set(train.skipped) == bad

    val = DataLoader(ds, BATCH, False, SIZE, on_error="skip")
    with pytest.warns(UserWarning):
        report = trainer.evaluate(val, report=True)
    out = trainer.predict(val)
    good = [p for p in ds.paths if p not in bad]
    assert list(out.files) == good and set(out.skipped) == bad
    assert str(user_folder / "c1" / "grey.png") in out.files
    np.testing.assert_allclose(out, _oracle(trainer, good), atol=1e-5)
    truth = [int(ds.labels[ds.paths.index(f)]) for f in good]
    assert report.confusion == confusion_matrix(truth, out.argmax(1)).tolist()
    assert [r["name"] for r in report.per_class] == ["c0", "c1", "c2"]  # the folder's names

    trainer.save(str(tmp_path / "run.gmk"))
    capsys.readouterr()
    argv = ["predict", str(tmp_path / "run.gmk"), str(user_folder), "--on-error", "skip"]
    assert main([*argv, "--classes", "c0,c1,c2"]) == 0
    printed = capsys.readouterr()
    lines = [line.split("\t") for line in printed.out.splitlines()]
    assert [f for f, _ in lines] == good  # every line names its file
    assert [c for _, c in lines] == [f"c{i}" for i in out.argmax(1)]
    assert sorted(printed.err.split("skipped ")[1:]) == sorted(
        f"{p}: it cannot be decoded as an image\n" for p in bad
    )
    assert main([*argv, "--output", str(tmp_path / "out.csv"), "--mode", "proba"]) == 0
    assert capsys.readouterr().out == f"{len(good)} results written to {tmp_path / 'out.csv'}\n"
    rows = (tmp_path / "out.csv").read_text().splitlines()
    assert rows[0] == "file,v0,v1,v2" and [r.split(",")[0] for r in rows[1:]] == good


def test_the_command_refuses_an_unreadable_file_naming_its_flag(user_folder, tmp_path, capsys):
    trainer = _trainer()
    trainer.save(str(tmp_path / "run.gmk"))
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run.gmk"), str(user_folder / "c0")]) == 1
    err = capsys.readouterr().err
    assert "corrupt.jpg' (not an image)" in err and "--on-error skip" in err
    assert os.path.basename(str(user_folder)) in err


def test_file_outputs_tie_only_their_own_rows():
    import pickle

    out = FileOutputs(np.eye(3, dtype=np.float32), ["a", "b", "c"], ["d"], labels=[0, 1, 2])
    assert (out.files, out.skipped, out.labels.tolist()) == (("a", "b", "c"), ("d",), [0, 1, 2])
    again = pickle.loads(pickle.dumps(out))
    assert again.files == out.files and np.array_equal(again, out)
    for derived in (out[:2], out[::-1], out * 2, out.argmax(axis=1), out.copy()):
        assert getattr(derived, "files", ()) == ()  # a slice or a product claims no files
    with pytest.raises(ValueError, match=r"^3 output rows were given 2 files and no labels"):
        FileOutputs(np.eye(3), ["a", "b"])
