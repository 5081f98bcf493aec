"""The Trainer on every input Keras fit takes, streamed K batches per compiled call."""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import threading
import tracemalloc

import keras
import numpy as np
import pytest
from helpers import BATCH, classification_data, float32_config, tiny_builder, variable_values
from hypothesis import given, settings
from hypothesis import strategies as st
from imagefolders import broken_file, write_folder
from PIL import Image

from gometal_keras import ModelBuilder, Trainer
from gometal_keras.data import prefetch
from gometal_keras.data.streaming import StreamedData
from gometal_keras.training import loop
from gometal_keras.vision import (
    DataLoader,
    ImageFolderDataset,
    UnreadableImageError,
    dataloader,
    decode_image,
)

FAST = settings(max_examples=10, deadline=None)
X, Y = classification_data(samples=5 * BATCH + 3, seed=1)


def trainer(**config) -> Trainer:
    return Trainer(tiny_builder(), float32_config(**config))


@functools.cache
def reference(epochs: int = 2) -> tuple[list[float], list[np.ndarray]]:
    """The oracle: the same samples, in the same order, as in-memory arrays."""
    t = trainer()
    run = t.fit(X, Y, epochs=epochs)
    return run.losses, variable_values(t.model.variables)


def batches_of(size: int, x: np.ndarray = X):
    return [(x[i : i + size], Y[i : i + size]) for i in range(0, len(x), size)]


class Batches(keras.utils.PyDataset):
    def __init__(self, size: int):
        super().__init__()
        self.parts = batches_of(size)

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, i):
        return self.parts[i]


def torch_loader(size: int):
    torch = pytest.importorskip("torch")
    data = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
    return torch.utils.data.DataLoader(data, batch_size=size, shuffle=False)


def grain_dataset(size: int):
    grain = pytest.importorskip("grain")
    return grain.MapDataset.source([(x, y) for x, y in zip(X, Y, strict=True)]).batch(size)


def tf_dataset(size: int):
    tf = pytest.importorskip("tensorflow")
    return tf.data.Dataset.from_tensor_slices((X, Y)).batch(size)


INPUTS = {
    "tf.data": tf_dataset,
    "PyDataset": Batches,
    "torch": torch_loader,
    "grain": grain_dataset,
    "list iterable": batches_of,
}


@pytest.mark.parametrize("kind", sorted(INPUTS))
def test_every_input_trains_validates_evaluates_and_predicts_like_the_arrays(kind):
    losses, weights = reference()
    t = trainer()
    run = t.fit(INPUTS[kind](BATCH), epochs=2, validation_data=INPUTS[kind](7))
    np.testing.assert_allclose(run.losses, losses, rtol=1e-5)
    for got, want in zip(variable_values(t.model.variables), weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    on_arrays = t.evaluate(X, Y)
    assert run.val_losses[-1] == pytest.approx(on_arrays, rel=1e-5)
    assert t.evaluate(INPUTS[kind](9)) == pytest.approx(on_arrays, rel=1e-5)
    np.testing.assert_allclose(t.predict(INPUTS[kind](9)), t.predict(X), rtol=1e-5)


def test_a_generator_validates_one_epoch_and_is_refused_for_more_before_any_step():
    t = trainer()
    run = t.fit(X, Y, validation_data=(b for b in batches_of(7)))
    assert run.val_losses[0] == pytest.approx(t.evaluate(X, Y), rel=1e-5)
    before = variable_values(t.model.variables)
    with pytest.raises(ValueError, match=r"^validation_data is a one-pass generator, .* 2 epochs"):
        t.fit(X, Y, epochs=2, validation_data=(b for b in batches_of(7)))
    assert t.epoch == 1
    for got, want in zip(variable_values(t.model.variables), before, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.fixture(scope="module")
def fresh():
    t = trainer()
    return t, t.get_state()


@settings(max_examples=8, deadline=None)
@given(st.integers(1, 3 * BATCH), st.integers(1, 6))
def test_batches_of_any_size_are_recut_into_full_steps(fresh, size, stage):
    losses, _ = reference(epochs=1)
    t, state = fresh
    t.set_state(state)
    data = dataclasses.replace(t.arrange(batches_of(size)), stage=stage)
    values = t.train_epoch(data)
    assert values.shape == (len(X) // BATCH, 2)
    np.testing.assert_allclose(values[:, 0].mean(), losses[0], rtol=1e-5)


@settings(max_examples=8, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(0, len(X) // BATCH - 1),
    st.integers(0, 15),
    st.sampled_from(["float32", "mixed_bfloat16"]),
)
def test_a_non_finite_batch_stops_the_streamed_epoch_across_calls(stage, bad, unit, precision):
    # The calls of a streamed epoch run back to back (values read one call late): a step
    # the guard stops must still stop every later call's steps. The oracle: the batches
    # before the bad one, trained as in-memory arrays from the same start. (The input's
    # check refuses NaN and infinity, so the bad sample is finite: near float32's largest,
    # signed like one hidden unit's weights, whose activation then overflows.)
    config = float32_config(precision=precision)
    t, oracle = Trainer(tiny_builder(), config), Trainer(tiny_builder(), config)
    oracle.set_state(t.get_state())
    kernel = keras.ops.convert_to_numpy(t.model.get_layer("hidden").kernel)
    x = X.copy()
    x[bad * BATCH + 1] = 3e38 * np.sign(kernel[:, unit])
    data = dataclasses.replace(t.arrange(batches_of(BATCH, x)), stage=stage)
    values = t.train_epoch(data)
    if bad:
        good = oracle.train_epoch(oracle.arrange(X[: bad * BATCH], Y[: bad * BATCH]))
        np.testing.assert_allclose(values[:bad], good, rtol=1e-5)
    assert np.isnan(values[bad:, 0]).all() and len(values) >= bad + 1
    got, want = variable_values(t.model.variables), variable_values(oracle.model.variables)
    for mine, theirs in zip(got, want, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_a_generator_continues_across_epochs_with_steps_per_epoch():
    oracle = trainer()
    expected = [oracle.train_batch(x, y).loss for x, y in batches_of(BATCH)[:4]]
    run = trainer().fit((b for b in batches_of(BATCH)), epochs=2, steps_per_epoch=2)
    np.testing.assert_allclose(run.losses, [np.mean(expected[:2]), np.mean(expected[2:])], 1e-5)
    with pytest.raises(ValueError, match=r"no full batch .* steps_per_epoch"):
        trainer().fit((b for b in batches_of(BATCH)), epochs=2)


def bad_shape(i):
    return np.zeros((BATCH, 3), np.float32), np.zeros(BATCH, np.int32)


def bad_dtype(i):
    return np.full((BATCH, 8), "a"), np.zeros(BATCH, np.int32)


def bad_label(i):
    return X[:BATCH], np.full(BATCH, 99)


@pytest.mark.parametrize("bad", [bad_shape, bad_dtype, bad_label])
def test_a_bad_batch_is_named_and_the_good_steps_are_kept(bad):
    good = batches_of(BATCH)[:3]
    oracle = trainer()
    oracle.fit(np.concatenate([x for x, _ in good]), np.concatenate([y for _, y in good]))
    t = trainer()
    with pytest.raises((ValueError, TypeError), match=r"^Batch 4 of the generator: "):
        t.fit((b for b in [*good, bad(3), *good]), epochs=1)
    for got, want in zip(
        variable_values(t.model.variables), variable_values(oracle.model.variables), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert t.epoch == 0


def cnn(classes: int = 3, size: int = 8, batch: int = 4) -> ModelBuilder:
    b = ModelBuilder([batch, 3, size, size]).add_conv2d(4, 3, 1, 1).add_relu()
    return b.add_dense(classes)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("stream"), per_class=8, classes=3)


MODES = st.sampled_from(["RGB", "L", "RGBA", "P", "I;16"])


PRECISIONS = st.sampled_from(["float32", "mixed_bfloat16", "mixed_float16"])


@settings(max_examples=6, deadline=None)
@given(st.lists(MODES, min_size=1, max_size=3), st.integers(2, 5), st.integers(1, 9), PRECISIONS)
def test_image_bytes_scaled_on_the_device_train_exactly_like_floats(
    tmp_path_factory, modes, batch, read, precision
):
    # The oracle: each file decoded alone to floats (`decode_image`), as a list of
    # batches. Bytes staged and scaled on the device must give the same numbers, bit for
    # bit, including when 16-bit images (float on the host) sit among 8-bit ones.
    root = write_folder(tmp_path_factory.mktemp("modes"), per_class=4, classes=3)
    for i, mode in enumerate(modes):
        path = root / f"c{i % 3}" / f"m{i}.png"
        grey = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
        if mode == "I;16":
            Image.fromarray(grey).save(path)
        else:
            Image.fromarray((grey // 256).astype(np.uint8)).convert(mode).save(path)
    ds = ImageFolderDataset(root)
    x = np.stack([decode_image(p, 8) for p in ds.paths])
    floats = [(x[i : i + batch], ds.labels[i : i + batch]) for i in range(0, len(x), batch)]
    loader = DataLoader(ds, batch, shuffle=False, image_size=8, num_workers=1)
    config = float32_config(batch_size=batch, precision=precision, loop="fused")
    a, b = (Trainer(cnn(batch=batch), config) for _ in range(2))
    b.set_state(a.get_state())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dataloader, "READ_BYTES", read * 8 * 8 * 3 * batch)
        streamed = b.fit(loader, epochs=2).losses
    np.testing.assert_array_equal(streamed, a.fit(floats, epochs=2).losses)
    got, want = variable_values(b.model.variables), variable_values(a.model.variables)
    for mine, theirs in zip(got, want, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert "images staged as bytes" in b.fit(loader, epochs=1).loop


def test_labels_out_of_range_stop_before_any_step(folder):
    t = Trainer(cnn(classes=2), float32_config(batch_size=4))
    before = variable_values(t.model.variables)
    with pytest.raises(ValueError, match=r"DataLoader.s labels: .* \[0, 2\)"):
        t.fit(DataLoader(ImageFolderDataset(folder), batch_size=4, image_size=8))
    for got, want in zip(variable_values(t.model.variables), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_unreadable_file_raises_naming_it_or_is_skipped(tmp_path):
    root = write_folder(tmp_path, per_class=4, classes=3)
    broken_file(root / "c1" / "zz.jpg", "truncated")
    ds = ImageFolderDataset(root)
    with pytest.raises(UnreadableImageError, match=r"zz\.jpg"):
        Trainer(cnn(), float32_config(batch_size=4)).fit(DataLoader(ds, 4, image_size=8))
    loader = DataLoader(ds, 4, image_size=8, on_error="skip")
    run = Trainer(cnn(), float32_config(batch_size=4)).fit(loader, epochs=2)
    assert run.epochs_run == 2 and [os.path.basename(p) for p in loader.skipped] == ["zz.jpg"]
    assert run.loop.endswith("; 1 unreadable files skipped")  # reported in the run record


@pytest.mark.parametrize("position,kind", [(0, "text"), (5, "body"), (11, "body")])
def test_a_broken_file_mid_epoch_is_named_and_the_steps_before_it_are_kept(
    tmp_path, monkeypatch, position, kind
):
    # A file whose header is whole but whose pixels are broken ("body") is known to be
    # broken only once decoded: the epoch stops at its batch, with the weights of the
    # batches before it trained (the oracle: those batches as arrays). Files that fail the
    # header check are refused before the first step (tests/test_image_folder_workflow.py).
    monkeypatch.setattr(dataloader, "READ_BYTES", 1)  # a read per batch, as with big images
    root = write_folder(tmp_path, per_class=4, classes=3)
    ds = ImageFolderDataset(root)
    x, y = map(np.concatenate, zip(*DataLoader(ds, 4, shuffle=False, image_size=8), strict=True))
    path = ds.get_item(position)[0]
    broken_file(pathlib.Path(path), kind)
    t, oracle = (Trainer(cnn(), float32_config(batch_size=4)) for _ in range(2))
    oracle.set_state(t.get_state())
    before = position // 4 * 4
    if before:
        oracle.fit(x[:before], y[:before])
    with pytest.raises(UnreadableImageError, match=os.path.basename(path)):
        t.fit(DataLoader(ds, 4, shuffle=False, image_size=8), epochs=2)
    assert t.epoch == 0
    for got, want in zip(
        variable_values(t.model.variables), variable_values(oracle.model.variables), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_a_folder_larger_than_the_memory_budget_trains_in_bounded_memory(tmp_path, monkeypatch):
    # The loader reads READ_BYTES of pixels at a time: made one batch here, so that a
    # folder small enough for a test is many reads.
    monkeypatch.setattr(dataloader, "READ_BYTES", 1)
    root = write_folder(tmp_path, per_class=60, classes=3, size=32)
    loader = DataLoader(ImageFolderDataset(root), 4, image_size=32, max_cache_size=10)
    decoded = 180 * 32 * 32 * 3 * 4
    t = Trainer(cnn(size=32), float32_config(batch_size=4))
    data = dataclasses.replace(t.arrange(loader), stage=2)
    assert isinstance(data, StreamedData)
    calls = []  # the batches of each stage copied to the device
    stage = prefetch.Prefetcher.stage

    def counted(self, xs, *rest):
        calls.append(len(xs))
        return stage(self, xs, *rest)

    monkeypatch.setattr(prefetch.Prefetcher, "stage", counted)
    t.train_epoch(data)  # compile outside the measurement
    tracemalloc.start()
    t.train_epoch(data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert max(calls) == 2 and len(loader.cache) <= 10
    assert peak < decoded / 2, (peak, decoded)


def test_resume_mid_run_continues_the_same_epoch_order(folder, tmp_path):
    def loader():
        return DataLoader(ImageFolderDataset(folder), 4, shuffle=True, image_size=8, seed=7)

    straight = Trainer(cnn(), float32_config(batch_size=4))
    straight.fit(loader(), epochs=4)
    first = Trainer(cnn(), float32_config(batch_size=4))
    first.fit(loader(), epochs=2)
    first.save(str(tmp_path / "run.gmk"))
    resumed = Trainer.load(str(tmp_path / "run.gmk"))
    resumed.fit(loader(), epochs=2)
    assert resumed.epoch == 4
    for got, want in zip(
        variable_values(resumed.model.variables),
        variable_values(straight.model.variables),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_reading_the_next_epoch_ahead_changes_nothing_and_leaves_nothing(folder, monkeypatch):
    # The oracle: one fit call per epoch (nothing is read ahead across calls). One call of
    # three epochs reads each next epoch's first stage while the last one trains; the
    # shuffled orders, losses and weights must be the same, bit for bit.
    def loader():
        return DataLoader(ImageFolderDataset(folder), 4, shuffle=True, image_size=8, seed=5)

    a, b = (Trainer(cnn(), float32_config(batch_size=4)) for _ in range(2))
    b.set_state(a.get_state())
    apart = [a.fit(data, epochs=1).losses[0] for data in [loader()] * 3]
    early = []  # the stages read ahead: made with one slot while an epoch's last trains

    class Recorded(prefetch.Prefetcher):
        def __init__(self, *args, slots=prefetch.SLOTS, **kw):
            early.append(slots == 1)
            super().__init__(*args, slots=slots, **kw)

    monkeypatch.setattr(loop, "Prefetcher", Recorded)
    together = b.fit(loader(), epochs=3, validation_data=loader())
    assert early == [False, True, True]
    np.testing.assert_array_equal(together.losses, apart)
    for mine, theirs in zip(variable_values(b.model.variables), variable_values(a.model.variables),
                            strict=True):  # fmt: skip
        np.testing.assert_array_equal(mine, theirs)
    stopped = b.fit(loader(), epochs=5, early_stop_loss=1e9)  # stops after its first epoch
    assert stopped.epochs_run == 1
    assert not [t for t in threading.enumerate() if t.name == "gometal-stage" and t.is_alive()]


class _SourceError(Exception):
    """An error class of the user's own source."""


#: Errors a source may raise while giving a batch (a generator, a PyDataset's __getitem__).
SOURCE_ERRORS = st.sampled_from([RuntimeError, KeyError, IndexError, ZeroDivisionError,
                                 AttributeError, _SourceError])


@settings(max_examples=12, deadline=None)
@given(good=st.integers(0, 7), error=SOURCE_ERRORS,
       kind=st.sampled_from(["generator", "pydataset"]))
def test_a_source_that_fails_names_its_batch_and_keeps_the_steps_before_it(good, error, kind):
    x, y = classification_data(samples=8 * BATCH)
    batches = [(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]) for i in range(8)]

    def generator():
        yield from batches[:good]
        raise error("the source broke")

    class Failing(keras.utils.PyDataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            if i >= good:
                raise error("the source broke")
            return batches[i]

    source = generator() if kind == "generator" else Failing()
    t, oracle = (Trainer(tiny_builder(), float32_config()) for _ in range(2))
    oracle.set_state(t.get_state())
    if good:
        oracle.fit(x[: good * BATCH], y[: good * BATCH])  # the oracle: the good batches alone
    with pytest.raises(ValueError, match=rf"^Batch {good + 1} of the .*{error.__name__}"):
        t.fit(source, epochs=2)
    assert t.epoch == 0  # the failed epoch is not counted
    for got, want in zip(variable_values(t.model.variables),
                         variable_values(oracle.model.variables), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


class OneShot:
    """A one-pass iterator of batches that may fail once at `fail_at` (then goes on)."""

    def __init__(self, batches, fail_at: int | None, how: str):
        self.batches, self.fail_at, self.how, self.taken = list(batches), fail_at, how, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.taken == self.fail_at and self.how == "raises":
            self.fail_at = None  # a transient failure: the next call goes on
            raise RuntimeError("the source hiccuped")
        if self.taken >= len(self.batches):
            raise StopIteration
        self.taken += 1
        x, y = self.batches[self.taken - 1]
        return (x[:, :3], y) if self.taken - 1 == self.fail_at else (x, y)  # "bad": wrong width


@settings(max_examples=6, deadline=None)
@given(n=st.integers(2, 5), steps=st.integers(1, 3), epochs=st.integers(1, 3),
       fail_at=st.none() | st.integers(0, 4), how=st.sampled_from(["raises", "bad"]))
def test_a_one_shot_source_loses_no_batch_it_did_not_train(n, steps, epochs, fail_at, how):
    """Reading ahead (stages, the next epoch's first stage) never takes a batch from a
    one-pass source that training does not use: after `fit`, refused or not, the source
    holds exactly the batches no step trained on (the oracle: counting them)."""
    batches = batches_of(BATCH)[:n]  # X's 5 full batches
    source = OneShot(batches, fail_at, how)
    t = trainer()
    needed = min(n, steps * epochs)  # batches the steps would read, failure aside
    fails = fail_at is not None and fail_at < needed
    if fails:
        at = fail_at % steps + 1  # batches are counted within their epoch
        with pytest.raises(ValueError, match=rf"^Batch {at} of the iterator"):
            t.fit(source, epochs=epochs, steps_per_epoch=steps)
        read = fail_at + (how == "bad")  # a bad batch was read; a raise took nothing
    elif (epochs - 1) * steps >= n:  # the last epoch would start with nothing left
        with pytest.raises(ValueError, match="gave no full batch"):
            t.fit(source, epochs=epochs, steps_per_epoch=steps)
        read = n
    else:
        t.fit(source, epochs=epochs, steps_per_epoch=steps)
        read = needed
    assert source.taken == read
    source.fail_at = None  # what is left, read as it is
    rest = list(source)
    assert len(rest) == n - read
    for (got, _), (want, _) in zip(rest, batches[read:], strict=True):
        np.testing.assert_array_equal(got, want)


@settings(max_examples=5, deadline=None)
@given(good=st.integers(0, 4))
def test_a_tf_data_pipeline_that_fails_names_its_batch_in_one_line(good):
    """A tf.data error (an assertion in a `map`) is the pipeline's message alone, without
    TensorFlow's node and iterator wrapping, and the full batches before it train."""
    import tensorflow as tf

    x, y = classification_data(samples=6 * BATCH)

    def check(i):
        tf.debugging.assert_less(i, tf.constant(good, tf.int64), message="record is corrupt")
        return i

    take = tf.range(BATCH, dtype=tf.int64)
    pipeline = tf.data.Dataset.range(6).map(check).map(
        lambda i: (tf.gather(x, i * BATCH + take), tf.gather(y, i * BATCH + take))
    )
    t, oracle = (Trainer(tiny_builder(), float32_config()) for _ in range(2))
    oracle.set_state(t.get_state())
    if good:
        oracle.fit(x[: good * BATCH], y[: good * BATCH])
    with pytest.raises(ValueError) as raised:
        t.fit(pipeline, epochs=1)
    assert str(raised.value).startswith(
        f"Batch {good + 1} of the tf.data.Dataset could not be read (InvalidArgumentError: "
        "assertion failed: [record is corrupt]"
    ), str(raised.value)
    assert "function_node" not in str(raised.value) and "\n" not in str(raised.value)
    for got, want in zip(variable_values(t.model.variables),
                         variable_values(oracle.model.variables), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
