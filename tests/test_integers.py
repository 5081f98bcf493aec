"""`core.integers`: one rule for whole-number arguments, the same at every entry point.

A count is any integral number, Python's or numpy's of any width or signedness, and never a
bool, a float or a string. Each entry point below takes a count; each must accept and refuse
the same values, and hand on a Python int.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from imagefolders import write_folder

from gometal_keras import TrainerConfig
from gometal_keras.core.integers import count, is_int
from gometal_keras.data.synthetic import demo_dataset
from gometal_keras.shipping.predictor import Predictor
from gometal_keras.vision import DataLoader, ImageFolderDataset
from gometal_keras.vision.cache import ImageCache

#: A two-class folder of 2 images each, for the loader's counts.
FOLDER = ImageFolderDataset(str(write_folder(Path(tempfile.mkdtemp()), per_class=2,
                                             classes=2)))

INT_TYPES = [int, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
             np.uint64]


@st.composite
def whole_numbers(draw, low: int = -3, high: int = 100):
    """A whole number as any integral type that can hold it."""
    value = draw(st.integers(low, high))
    kinds = [k for k in INT_TYPES if k is int or np.iinfo(k).min <= value <= np.iinfo(k).max]
    return draw(st.sampled_from(kinds))(value)


NOT_WHOLE = st.one_of(
    st.booleans(), st.sampled_from([np.True_, np.False_]), st.floats(allow_nan=True),
    st.integers(1, 9).map(float), st.integers(1, 9).map(np.float32), st.integers(1, 9).map(str),
    st.none(), st.just([4]), st.integers(1, 9).map(complex),
)

#: Entry points that take a count of at least 1 (or 0), and read it back.
ENTRY_POINTS = {
    "Predictor batch_size": (1, lambda n: Predictor(lambda x, b: x, (2,), batch_size=n).batch_size),
    "demo_dataset samples": (1, lambda n: len(demo_dataset(samples=n, features=2)[1])),
    "ImageCache max_size": (0, lambda n: ImageCache(max_size=n).max_size),
    "TrainerConfig batch_size": (1, lambda n: TrainerConfig(batch_size=n).batch_size),
    "DataLoader batch_size": (1, lambda n: DataLoader(FOLDER, batch_size=n).batch_size),
    "DataLoader image_size": (1, lambda n: DataLoader(FOLDER, image_size=n).image_size),
}


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(ENTRY_POINTS)), whole_numbers())
def test_every_entry_point_takes_any_integral_type_in_range(entry, value):
    minimum, call = ENTRY_POINTS[entry]
    if int(value) < minimum:
        with pytest.raises(ValueError, match=r"is \S*-?\d+\)?; expected"):
            call(value)
        return
    got = call(value)
    assert got == int(value) and type(got) is int


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(ENTRY_POINTS)), NOT_WHOLE)
def test_every_entry_point_refuses_what_is_not_a_whole_number(entry, value):
    _, call = ENTRY_POINTS[entry]
    with pytest.raises((ValueError, TypeError), match="expected"):
        call(value)


@given(st.one_of(whole_numbers(), NOT_WHOLE))
def test_is_int_matches_the_definition(value):
    expected = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    assert is_int(value) is expected


@given(whole_numbers(-5, 5), st.integers(0, 2))
def test_count_names_the_argument_and_its_minimum(value, minimum):
    if int(value) >= minimum:
        assert count("n", value, minimum) == int(value)
    else:
        expected = r"^n is .*; expected (a positive int|an int of at least \d+)\.$"
        with pytest.raises(ValueError, match=expected):
            count("n", value, minimum)


def test_predictor_load_refuses_a_bad_batch_size_before_reading_any_file(tmp_path):
    missing = tmp_path / "absent.onnx"  # a bad batch size is named, not the missing file
    with pytest.raises(ValueError, match="batch_size is 0"):
        Predictor.load(missing, batch_size=0)
    with pytest.raises(FileNotFoundError):
        Predictor.load(missing, batch_size=np.int64(4))
