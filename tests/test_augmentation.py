"""Tests for gometal_keras.vision.augment.Augmentation and the DataLoader's ``augment``."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import float32_config
from hypothesis import given, settings
from hypothesis import strategies as st
from imagefolders import write_folder

from gometal_keras.model.builder import ModelBuilder
from gometal_keras.training.trainer import Trainer
from gometal_keras.vision import DataLoader, ImageFolderDataset, create_shared_data_loaders
from gometal_keras.vision.augment import Augmentation

FEW = settings(max_examples=10, deadline=None)


def _images(n: int, h: int, w: int, c: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, h, w, c), dtype=np.float32)


@st.composite
def batches_and_augmentations(draw):
    n, h, w, c = draw(st.tuples(*(st.integers(1, 6),) * 3, st.sampled_from([1, 3])))
    crop = draw(st.one_of(st.none(), st.tuples(st.integers(1, h), st.integers(1, w))))
    unit = st.floats(0.0, 1.0, allow_nan=False)
    aug = Augmentation(crop, draw(unit), draw(unit), draw(unit), draw(st.integers(0, 99)))
    return _images(n, h, w, c, draw(st.integers(0, 99))), aug


@FEW
@given(case=batches_and_augmentations(), epoch=st.integers(0, 5), batch=st.integers(0, 5))
def test_augmented_batches_keep_shape_range_and_repeat_for_a_seed(case, epoch, batch):
    images, aug = case
    before = images.copy()
    out = aug.apply(images, epoch, batch)
    assert out.shape == images.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(aug.apply(images, epoch, batch), out)
    np.testing.assert_array_equal(images, before)  # the input is left as it was


@FEW
@given(images=st.integers(0, 99).map(lambda s: _images(6, 5, 7, 3, s)), p=st.floats(0, 1))
def test_flips_are_exact_mirror_images(images, p):
    out = Augmentation(horizontal_flip=p, seed=1).apply(images, 0, 0)
    mirrored = images[:, :, ::-1, :]
    flipped = [bool(np.array_equal(o, m)) for o, m in zip(out, mirrored, strict=True)]
    kept = [bool(np.array_equal(o, x)) for o, x in zip(out, images, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    if p == 1.0:
        np.testing.assert_array_equal(out, mirrored)
    if p == 0.0:
        np.testing.assert_array_equal(out, images)


def test_a_full_crop_is_the_image_and_a_one_pixel_crop_is_one_of_its_pixels():
    images = _images(4, 6, 5, 3, 0)
    whole = Augmentation(random_crop=(6, 5)).apply(images, 0, 0)
    np.testing.assert_allclose(whole, images, atol=1e-6)
    dots = Augmentation(random_crop=1, seed=3).apply(images, 0, 0)
    for image, dot in zip(images, dots, strict=True):
        colour = dot[0, 0]
        np.testing.assert_allclose(dot, np.broadcast_to(colour, dot.shape), atol=1e-6)
        assert np.isclose(image, colour, atol=1e-6).all(axis=-1).any()


def test_colour_jitter_is_the_forks_formula():
    grey = np.full((50, 2, 2, 3), 0.4, np.float32)
    bright = Augmentation(brightness=0.5, seed=2).apply(grey, 0, 0)
    factors = bright[:, 0, 0, 0] / 0.4
    assert factors.min() >= 0.5 - 1e-6 and factors.max() <= 1.5 + 1e-6 and factors.std() > 0.1
    np.testing.assert_allclose(bright, grey * factors[:, None, None, None], rtol=1e-6)
    half = np.full((5, 2, 2, 1), 0.5, np.float32)  # contrast turns about 0.5
    np.testing.assert_allclose(Augmentation(contrast=0.9).apply(half, 0, 0), half, atol=1e-7)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"horizontal_flip": 1.5}, ValueError, r"horizontal_flip is 1.5; expected a number in"),
        ({"brightness": float("nan")}, ValueError, r"brightness is nan"),
        ({"contrast": "0.2"}, TypeError, r"contrast must be a number"),
        ({"random_crop": (0, 4)}, ValueError, r"random_crop is \(0, 4\)"),
        ({"random_crop": (2, 3, 4)}, ValueError, r"expected None, a positive int"),
        ({"seed": 1.5}, TypeError, r"seed must be an int"),
    ],
)
def test_bad_options_are_refused(options, error, message):
    with pytest.raises(error, match=message):
        Augmentation(**options)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("aug"), per_class=4, classes=2, size=8)


def _loader(folder, **options):
    return DataLoader(ImageFolderDataset(str(folder)), 3, image_size=8, num_workers=1, **options)


def test_off_is_bit_exact_today(folder):
    plain = [(x.copy(), y.copy()) for x, y in _loader(folder).pixel_batches(0)]
    for augment in (None, Augmentation(seed=5)):  # absent, or present with nothing on
        again = list(_loader(folder, augment=augment).pixel_batches(0))
        for (x, y), (x2, y2) in zip(plain, again, strict=True):
            assert x2.dtype == x.dtype == np.uint8
            np.testing.assert_array_equal(x2, x)
            np.testing.assert_array_equal(y2, y)


def test_the_loader_augments_training_batches_reproducibly(folder):
    aug = Augmentation(random_crop=6, horizontal_flip=0.5, brightness=0.2, contrast=0.2, seed=7)
    first = [x for x, _ in _loader(folder, augment=aug).pixel_batches(0)]
    second = [x for x, _ in _loader(folder, augment=aug).pixel_batches(0)]
    plain = [x for x, _ in _loader(folder).pixel_batches(0)]
    for a, b, p in zip(first, second, plain, strict=True):
        assert a.dtype == np.float32 and a.shape == p.shape
        np.testing.assert_array_equal(a, b)
        assert not np.allclose(a, p / 255.0)
    loader = _loader(folder, augment=aug)
    got = loader.get_batch(1)[0]
    np.testing.assert_array_equal(got, first[1])
    other_epoch = [x for x, _ in _loader(folder, augment=aug).pixel_batches(1)]
    assert not all(np.array_equal(a, b) for a, b in zip(first, other_epoch, strict=True))
    with pytest.raises(ValueError, match=r"random_crop \(9, 9\) is larger than the 8x8"):
        _loader(folder, augment=Augmentation(random_crop=9))
    with pytest.raises(TypeError, match="expected None or an Augmentation"):
        _loader(folder, augment={"horizontal_flip": 0.5})


def test_the_validation_loader_is_never_augmented_and_training_takes_augmented_batches(folder):
    ds = ImageFolderDataset(str(folder))
    aug = Augmentation(horizontal_flip=1.0, brightness=0.3)
    train, val = create_shared_data_loaders(
        ds, ds, batch_size=4, image_size=8, num_workers=1, augment=aug
    )
    assert train.augment is aug and val.augment is None
    plain = [x for x, _ in DataLoader(ds, 4, False, 8, num_workers=1).pixel_batches(0)]
    for x, p in zip((x for x, _ in val.pixel_batches(0)), plain, strict=True):
        np.testing.assert_array_equal(x, p)
    trainer = Trainer(ModelBuilder([4, 3, 8, 8]).add_dense(2), float32_config(batch_size=4))
    run = trainer.fit(train, epochs=1, validation_data=val)
    assert np.isfinite(run.losses).all() and np.isfinite(run.val_losses).all()
