"""Tests for gometal_keras.data.datasets.load_mnist with tiny IDX and NPZ files written here."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gometal_keras.data.datasets import MNIST_FILES, load_mnist, read_idx


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _arrays(n_train: int = 5, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def _write_folder(folder, arrays, gz=False, dotted=False):
    for part, stem in MNIST_FILES.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        data = _idx(arrays[part])
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)


def _check(result, arrays):
    (x_train, y_train), (x_test, y_test) = result
    assert x_train.shape == (5, 28, 28, 1) and x_test.shape == (3, 28, 28, 1)
    assert x_train.dtype == np.float32 and x_train.min() >= 0.0 and x_train.max() <= 1.0
    np.testing.assert_allclose(x_train[..., 0] * 255.0, arrays["x_train"], atol=1e-3)
    assert y_train.dtype == np.int64 and y_train.tolist() == arrays["y_train"].tolist()
    assert y_test.tolist() == arrays["y_test"].tolist()


@pytest.mark.parametrize(("gz", "dotted"), [(False, False), (True, False), (False, True)])
def test_idx_folder(tmp_path, gz, dotted):
    arrays = _arrays()
    _write_folder(tmp_path, arrays, gz=gz, dotted=dotted)
    _check(load_mnist(tmp_path), arrays)


def test_npz(tmp_path):
    arrays = _arrays()
    np.savez(tmp_path / "mnist.npz", **arrays)
    _check(load_mnist(str(tmp_path / "mnist.npz")), arrays)


def test_missing_path_names_the_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte.*mnist\.npz"):
        load_mnist(tmp_path / "nowhere")


def test_folder_missing_some_files(tmp_path):
    arrays = _arrays()
    _write_folder(tmp_path, arrays)
    (tmp_path / MNIST_FILES["y_test"]).unlink()
    with pytest.raises(FileNotFoundError, match="lacks t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)


def test_npz_missing_keys(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="lacks the arrays y_train, x_test, y_test"):
        load_mnist(tmp_path / "m.npz")


def test_not_npz(tmp_path):
    (tmp_path / "m.npz").write_text("hello")
    with pytest.raises(ValueError, match="could not be read"):
        load_mnist(tmp_path / "m.npz")


def test_bad_idx_header_and_length(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx(np.zeros((2, 3), np.uint8))[:-1])
    with pytest.raises(ValueError, match="needs 6"):
        read_idx(short)


def test_label_count_mismatch(tmp_path):
    arrays = _arrays()
    arrays["y_train"] = arrays["y_train"][:4]
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(ValueError, match="expected 5 labels"):
        load_mnist(tmp_path / "m.npz")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), gz=st.booleans(),
       damage=st.one_of(st.none(), st.tuples(st.just("cut"), st.integers(1, 400)),
                        st.tuples(st.just("flip"), st.integers(0, 400), st.integers(1, 255))))
def test_a_damaged_idx_file_reads_right_or_raises_value_error(tmp_path_factory, shape, gz, damage):
    array = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape)
    raw = _idx(array)
    data = gzip.compress(raw) if gz else raw
    if damage and damage[0] == "cut":
        data = data[: max(len(data) - damage[1], 0)]
    elif damage:
        at = damage[1] % len(data)
        data = data[:at] + bytes([data[at] ^ damage[2]]) + data[at + 1:]
    path = tmp_path_factory.mktemp("idx") / ("f-idx.gz" if gz else "f-idx")
    path.write_bytes(data)
    try:
        back = read_idx(path)
    except ValueError:
        return  # refused in one sentence: the only way a read may fail
    if damage is None:
        np.testing.assert_array_equal(back, array)


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    header = bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10)
    path = tmp_path / "bomb-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(header + bytes(50_000_000)))  # 10 declared, 50 MB inside
    with pytest.raises(ValueError, match="holds more data"):
        read_idx(path)
