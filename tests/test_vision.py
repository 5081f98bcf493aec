"""Go-Metal's vision data API: image-folder data sets, the decoder, the cache, the loader."""

from __future__ import annotations

import collections
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import RESULT, quiet_env, run_script
from hypothesis import given, settings
from hypothesis import strategies as st
from imagefolders import broken_file, pillow_pixels, write_folder
from PIL import Image

from gometal_keras.vision import (
    CatsDogsDataset,
    DataLoader,
    ImageCache,
    ImageFolderDataset,
    UnreadableImageError,
    create_shared_data_loaders,
    decode_image,
)
from gometal_keras.vision import cache as cache_module

FAST = settings(max_examples=15, deadline=None)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("imgs"), per_class=5, classes=3)


def test_image_folder_lists_classes_in_sorted_order(tmp_path):
    for name in ("zebra/1.PNG", "ant/2.jpg", "ant/3.jpeg", "ant/skip.txt", "mole/4.bmp"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    ds = ImageFolderDataset(tmp_path)
    assert ds.class_names == ["ant", "mole", "zebra"] and ds.num_classes == 3
    assert ds.class_distribution() == {"ant": 2, "mole": 1, "zebra": 1}
    assert [os.path.basename(ds.get_item(i)[0]) for i in range(len(ds))] == [
        "2.jpg",
        "3.jpeg",
        "4.bmp",
        "1.PNG",
    ]
    assert ds.filter_by_class(["zebra"]).labels.tolist() == [2]
    assert ds.subset([3, 0]).labels.tolist() == [2, 0]
    assert "4 images in 3 classes (ant: 2, mole: 1, zebra: 1)" in ds.summary()


@FAST
@given(st.integers(2, 60), st.floats(0.05, 0.95), st.booleans(), st.integers(0, 5))
def test_split_partitions_the_images(n, ratio, shuffle, seed):
    ds = ImageFolderDataset.from_files(
        [f"/d/{i}.png" for i in range(n)], [i % 2 for i in range(n)], ["a", "b"]
    )
    train, val = ds.split(ratio, shuffle, seed)
    assert len(train) == round(ratio * n)
    assert sorted(train.paths + val.paths) == sorted(ds.paths)
    again, _ = ds.split(ratio, shuffle, seed)
    assert again.paths == train.paths  # the same split every run


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "no class sub-folders"),
        (
            lambda p: (
                (p / "a").mkdir() or (p / "a" / "x.png").write_bytes(b"") or (p / "b").mkdir() or p
            ),
            "holds no",
        ),
    ],
)
def test_image_folder_refuses_bad_layouts_naming_them(tmp_path, make, match):
    with pytest.raises(ValueError, match=match):
        ImageFolderDataset(make(tmp_path))


@pytest.mark.parametrize("layout", ["go-metal", "petimages", "kaggle"])
def test_cats_dogs_takes_each_layout(tmp_path, layout):
    for label in ("cat", "dog"):
        for i in range(3):
            if layout == "kaggle":
                path = tmp_path / f"{label}.{i}.jpg"
            else:
                folder = label if layout == "go-metal" else label.capitalize()
                path = tmp_path / folder / f"{i}.jpg"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(b"")
    ds = CatsDogsDataset(tmp_path, max_samples_per_class=2)
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1]


MODES = st.sampled_from(["L", "RGB", "RGBA", "LA", "P", "I;16"])


@FAST
@given(MODES, st.integers(1, 12), st.integers(0, 2**31 - 1), st.sampled_from([1, 3]))
def test_decode_scales_every_mode_to_unit_range(tmp_path_factory, mode, size, seed, channels):
    rng = np.random.default_rng(seed)
    wide = mode == "I;16"
    raw = rng.integers(0, 65536 if wide else 256, (size, size, 4)).astype(
        np.uint16 if wide else np.uint8
    )
    if mode in ("L", "I;16", "P"):
        img = Image.fromarray(raw[..., 0]) if mode != "P" else Image.fromarray(raw[..., 0], "P")
        if mode == "P":
            img.putpalette([v for i in range(256) for v in (i, i, i)])
        expect = np.repeat(raw[..., :1], 3, -1) / (65535.0 if wide else 255.0)
    else:
        img = Image.fromarray(raw[..., : len(mode)], mode)
        rgb = raw[..., :3] if len(mode) >= 3 else np.repeat(raw[..., :1], 3, -1)
        expect = rgb / 255.0
    path = tmp_path_factory.mktemp("dec") / "img.png"
    img.save(path)
    got = decode_image(str(path), size, channels)
    assert got.shape == (size, size, channels) and got.dtype == np.float32
    if channels == 3:
        np.testing.assert_allclose(got, expect, atol=1e-6)
    else:
        assert 0.0 <= got.min() <= got.max() <= 1.0


def test_mixed_sizes_become_one_size(tmp_path):
    for i, (w, h) in enumerate([(5, 9), (40, 3), (8, 8)]):
        Image.new("RGB", (w, h), (255, 255, 255)).save(tmp_path / f"{i}.jpg")
        assert decode_image(str(tmp_path / f"{i}.jpg"), 6).shape == (6, 6, 3)


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_undecodable_file_is_named(tmp_path, kind):
    path = broken_file(tmp_path / "bad.png", kind)
    with pytest.raises(UnreadableImageError, match=r"bad\.png"):
        decode_image(str(path), 4)


# "take": one read of two keys (`key` and another), as two reads in a row; "clear": drop
# everything (the keys' numbers stay, `ImageCache.ids`).
OPS = st.lists(
    st.tuples(st.sampled_from(["get", "put", "take", "clear"]), st.integers(0, 6)), max_size=40
)


# Long runs of puts and reads over a few more keys than the cache holds: eviction after
# eviction, with rows read (made recent) between them.
CHURN = st.lists(st.tuples(st.sampled_from(["put", "put", "get"]), st.integers(0, 9)), max_size=80)


@settings(max_examples=200, deadline=None)  # no files, no training: cheap
@given(st.integers(0, 6), CHURN, st.sampled_from([cache_module.EVICT_SCAN, 0.5, 1.0]))
def test_cache_eviction_stays_least_recently_used(max_size, ops, scan):
    # `scan`: the share of the cache whose oldest rows are found at once (candidates that
    # a later read or put makes stale must be passed over).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cache_module, "EVICT_SCAN", scan)
        lru_against_ordered_dict(max_size, ops)


@FAST
@given(st.integers(0, 4), OPS)
def test_cache_is_least_recently_used(max_size, ops):
    lru_against_ordered_dict(max_size, ops)


def lru_against_ordered_dict(max_size, ops):
    cache, model, hits, misses = ImageCache(max_size), collections.OrderedDict(), 0, 0
    for op, key in ops:
        if op == "clear":
            cache.clear()
            model.clear()
        elif op == "take":
            keys = [key, (3 * key + 1) % 7]
            found, images = cache.take(keys)
            want = [i for i, k in enumerate(keys) if k in model]
            assert found.tolist() == want
            got = [] if images is None else images[:, 0].tolist()
            assert got == [keys[i] for i in want] and (images is None) == (not want)
            for k in keys:
                if k in model:
                    model.move_to_end(k)
            hits, misses = hits + len(want), misses + len(keys) - len(want)
        elif op == "put":
            cache.put(key, np.full(2, key, np.float32))
            if max_size:
                model[key] = key
                model.move_to_end(key)
                while len(model) > max_size:
                    model.popitem(last=False)
        else:
            got = cache.get(key)
            if key in model:
                model.move_to_end(key)
                hits += 1
                assert got is not None and got[0] == key
            else:
                misses += 1
                assert got is None
    stats = cache.stats()
    assert (stats.size, stats.hits, stats.misses) == (len(model), hits, misses)
    assert stats.nbytes == 8 * len(model)


@FAST
@given(st.integers(1, 8), st.booleans(), st.integers(0, 3))
def test_loader_gives_each_image_once_per_epoch(folder, batch_size, shuffle, seed):
    ds = ImageFolderDataset(folder)
    loader = DataLoader(ds, batch_size, shuffle, image_size=4, seed=seed, num_workers=2)
    orders = []
    for epoch in (0, 1, 0):
        loader.set_epoch(epoch)
        seen = [b for b in iter(loader.next_batch, None)]
        assert all(len(y) <= batch_size for _, y in seen)
        assert loader.progress() == (len(ds), len(ds))
        labels = np.concatenate([y for _, y in seen])
        assert sorted(labels.tolist()) == sorted(ds.labels.tolist())
        orders.append(np.concatenate([x for x, _ in seen]).sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(orders[0], orders[2])  # epoch order from (seed, epoch)
    loader.close()


def test_loader_pixels_match_decode_and_cache_counts(folder):
    ds = ImageFolderDataset(folder)
    loader = DataLoader(ds, batch_size=4, shuffle=False, image_size=8, max_cache_size=100)
    first = np.concatenate([x for x, _ in loader])
    np.testing.assert_array_equal(first[0], decode_image(ds.paths[0], 8))
    second = np.concatenate([x for x, _ in loader])
    np.testing.assert_array_equal(first, second)
    stats = loader.cache_stats()
    assert (stats.size, stats.hits, stats.misses) == (len(ds), len(ds), len(ds))
    assert stats.hit_rate == 0.5 and "Hit Rate: 50.0%" in loader.stats()


def test_shared_loaders_share_one_cache(folder):
    train, val = ImageFolderDataset(folder).split(0.6, seed=1)
    tl, vl = create_shared_data_loaders(train, val, batch_size=4, image_size=8, max_cache_size=50)
    assert tl.cache is vl.cache and not vl.shuffle
    list(tl), list(vl)
    assert tl.cache_stats().size == len(train) + len(val)


def test_bounded_cache_keeps_at_most_max_size(folder):
    loader = DataLoader(ImageFolderDataset(folder), batch_size=3, image_size=4, max_cache_size=4)
    for _ in range(3):
        for _ in loader:
            assert len(loader.cache) <= 4


def test_bad_files_raise_naming_them_or_are_skipped_and_counted(tmp_path):
    root = write_folder(tmp_path, per_class=3, classes=2)
    broken_file(root / "c0" / "zz_text.jpg", "text")
    broken_file(root / "c1" / "zz_cut.png", "truncated")
    ds = ImageFolderDataset(root)
    found = [os.path.basename(p) for p in DataLoader(ds, image_size=4).verify()]
    assert found == ["zz_text.jpg", "zz_cut.png"]  # a cut PNG has no IEND chunk
    with pytest.raises(UnreadableImageError, match="zz_"):
        list(DataLoader(ds, batch_size=8, image_size=4))
    skipping = DataLoader(ds, batch_size=3, image_size=4, on_error="skip")
    with pytest.warns(UserWarning, match=r"2 of 8 image files cannot be decoded.*left out"):
        assert sum(len(y) for _, y in skipping) == 6
    assert sum(len(y) for _, y in skipping) == 6
    assert sorted(os.path.basename(p) for p in skipping.skipped) == ["zz_cut.png", "zz_text.jpg"]


def test_process_workers_decode_like_decode_image_and_keep_the_error_policy(tmp_path):
    root = write_folder(tmp_path, per_class=5, classes=2)
    broken_file(root / "c1" / "zz_cut.png", "truncated")
    ds = ImageFolderDataset(root)
    want = {p: decode_image(p, 6) for p in ds.paths if "zz_" not in p}
    loader = DataLoader(ds, 3, image_size=6, num_workers=2, use_multiprocessing=True, seed=3)
    with pytest.raises(UnreadableImageError, match="zz_cut"):
        list(loader)
    skipping = DataLoader(
        ds, 3, False, image_size=6, num_workers=2, use_multiprocessing=True, on_error="skip"
    )
    for _ in range(2):  # decoded in the workers, then read from the cache
        got = np.concatenate([x for x, _ in skipping])
        np.testing.assert_array_equal(got, np.stack(list(want.values())))
    assert [os.path.basename(p) for p in skipping.skipped] == ["zz_cut.png"]
    loader.close(), skipping.close()


def test_worker_processes_that_cannot_start_get_one_sentence(folder, tmp_path):
    # A script without the `if __name__ == "__main__":` guard: each worker imports it,
    # reaches the loader again and cannot start a pool of its own, so the pool breaks.
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from gometal_keras.vision import DataLoader, ImageFolderDataset\n"
        f"ds = ImageFolderDataset({str(folder)!r})\n"
        "DataLoader(ds, 4, image_size=6, num_workers=2, use_multiprocessing=True).next_batch()\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        env=quiet_env("jax"),
    )  # fmt: skip
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: A decoding worker process died or could not start")
    assert 'if __name__ == "__main__":' in last and "use_multiprocessing=False" in last


def test_loader_needs_no_tensorflow(folder):
    code = f"""
import json, sys
sys.modules["tensorflow"] = None  # importing TensorFlow now fails
from gometal_keras.vision import DataLoader, ImageFolderDataset
x, y = DataLoader(ImageFolderDataset({str(folder)!r}), batch_size=4, image_size=6).next_batch()
print({RESULT!r} + json.dumps([list(x.shape), "tensorflow" in sys.modules and
      sys.modules["tensorflow"] is not None]))
"""
    assert run_script(code, backend="jax") == [[4, 6, 6, 3], False]
    assert sys.modules.get("PIL") is not None


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(["PNG", "TIFF", "BMP", "GIF", "JPEG"]), at=st.integers(0, 10_000),
       xor=st.integers(1, 255), bomb=st.one_of(st.none(), st.tuples(
           st.integers(13_000, 60_000), st.integers(13_000, 60_000))))
def test_any_damaged_or_bomb_file_is_unreadable_never_another_error(tmp_path_factory, fmt, at,
                                                                    xor, bomb):
    folder = tmp_path_factory.mktemp("damaged")
    path = folder / f"x.{fmt.lower()}"
    if bomb:
        path = folder / "x.png"
        path.write_bytes(_png_declaring(*bomb))
    else:
        Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(path, format=fmt)
        data = bytearray(path.read_bytes())
        data[at % len(data)] ^= xor  # one flipped byte
        path.write_bytes(bytes(data))
    try:
        pixels = decode_image(str(path), 4)
    except UnreadableImageError as err:
        assert str(path) in str(err)
        return
    assert pixels.shape == (4, 4, 3) and not bomb  # a flip Pillow tolerates decodes


#: Directory entries named like images that lead nowhere, or that are not images.
LINKS = ("loop", "two_step_loop", "broken", "to_folder", "folder_named_png", "class_loop")


@FAST
@given(st.lists(st.sampled_from(LINKS), min_size=1, max_size=4), st.booleans())
def test_links_that_lead_nowhere_are_skipped_or_named_never_stop_the_folder(tmp_path_factory,
                                                                           kinds, skip):
    root = write_folder(tmp_path_factory.mktemp("links"), per_class=2, classes=2)
    good = sorted(str(p) for p in root.glob("c*/*.png"))
    unreadable = []  # what the loader must name or skip: file-like entries that cannot be read
    for i, kind in enumerate(kinds):
        here = root / f"c{i % 2}"
        if kind == "loop":
            os.symlink(f"l{i}.png", here / f"l{i}.png")
        elif kind == "two_step_loop":
            os.symlink(f"m{i}b.png", here / f"m{i}a.png")
            os.symlink(f"m{i}a.png", here / f"m{i}b.png")
        elif kind == "broken":
            os.symlink(str(root / "nowhere" / "x.png"), here / f"b{i}.png")
        elif kind == "to_folder":  # a link to a folder is not an image, whatever its name
            os.symlink(str(root / "c0"), here / f"d{i}.png")
        elif kind == "folder_named_png":
            os.makedirs(here / f"f{i}.png")
        else:  # a looping link beside the class folders is not a class
            os.symlink(f"z{i}", root / f"z{i}")
        if kind in ("loop", "broken"):
            unreadable.append(here / f"{'l' if kind == 'loop' else 'b'}{i}.png")
        elif kind == "two_step_loop":
            unreadable += [here / f"m{i}a.png", here / f"m{i}b.png"]
    dataset = ImageFolderDataset(str(root))
    assert dataset.class_names == ["c0", "c1"]
    assert sorted(dataset.paths) == sorted(good + [str(p) for p in unreadable])
    loader = DataLoader(dataset, batch_size=2, image_size=8, shuffle=False,
                        on_error="skip" if skip else "raise")
    if not skip and unreadable:
        with pytest.raises(UnreadableImageError) as raised:
            list(loader)
        message = str(raised.value)  # "N of M image files ...", the first few named
        assert message.startswith(f"{len(unreadable)} of {len(dataset)} image files")
        assert repr(str(sorted(unreadable)[0])) in message
        return
    if unreadable:
        with pytest.warns(UserWarning, match="left out"):
            images = np.concatenate([x for x, _ in loader])
    else:
        images = np.concatenate([x for x, _ in loader])
    assert sorted(loader.skipped) == sorted(str(p) for p in unreadable)
    want = np.stack([pillow_pixels(p, 8) for p in good])
    np.testing.assert_allclose(images, want, rtol=0, atol=1e-7)  # 1/255 scaling's last bit
