"""Real data sets the user already has on disk: MNIST from IDX or NPZ files. Never downloads.

`load_mnist` reads the four files of the original MNIST distribution (IDX format, plain or
gzipped, as published by LeCun et al. and mirrored by torchvision) from a folder, or the
single ``mnist.npz`` that ``keras.datasets.mnist`` caches. Nothing here touches the network:
when the files are absent the error names them and says where they are expected.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

#: The IDX files `load_mnist` looks for in a folder, by part (each may end in ``.gz``).
MNIST_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
#: Arrays an ``.npz`` file must hold (Keras' ``mnist.npz`` layout).
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MnistArrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _read_at_most(fh: Any, limit: int, chunk: int = 1 << 24) -> bytes:
    """Up to `limit` bytes of `fh`, read a chunk at a time (memory follows the data, not
    `limit`: a damaged header declaring terabytes costs what the file holds)."""
    parts, got = [], 0
    while got < limit:
        part = fh.read(min(chunk, limit - got))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (plain, or gzipped when the name ends in ``.gz``).

    Args:
        path: The file.

    Returns:
        The array with the shape and element type the file's header gives.

    Raises:
        ValueError: If the file is not a well-formed IDX file.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
        >>> _ = f.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 3]))
        >>> read_idx(f).tolist()
        [7, 3]
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:  # read only what the header says (a gzip bomb is never inflated past it)
        with opener(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_TYPES:
                raise ValueError(
                    f"{path} is not an IDX file; expected a header 00 00 <type> <dims>.")
            ndim = head[3]
            dims = fh.read(4 * ndim)
            if ndim == 0 or len(dims) < 4 * ndim:
                raise ValueError(
                    f"{path} has a truncated IDX header; expected {ndim} dimension sizes.")
            shape = struct.unpack(f">{ndim}I", dims)
            dtype = np.dtype(_IDX_TYPES[head[2]])
            need = math.prod(shape) * dtype.itemsize
            body = _read_at_most(fh, need + 1)  # a header's size is never trusted to allocate
    except (OSError, EOFError, zlib.error) as err:  # unreadable, or a damaged gzip stream
        raise ValueError(f"{path} could not be read as an IDX file ({err}).") from None
    if len(body) != need:
        got = f"{len(body)} bytes of data" if len(body) < need else "more data"
        raise ValueError(f"{path} holds {got}; its header {shape} needs {need}.")
    data, header = body, 0
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    """The IDX file `stem` in `folder`: plain or .gz, also with torchvision's '.' spelling."""
    spellings = (stem, stem.replace("-idx", ".idx"))
    for name in spellings:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _from_folder(folder: Path) -> dict[str, np.ndarray]:
    found = {part: _find(folder, stem) for part, stem in MNIST_FILES.items()}
    missing = [MNIST_FILES[part] for part, file in found.items() if file is None]
    if missing:
        raise FileNotFoundError(
            f"{folder} lacks {', '.join(missing)}; expected the four MNIST IDX files "
            f"({', '.join(MNIST_FILES.values())}, each optionally .gz) or an mnist.npz."
        )
    return {part: read_idx(file) for part, file in found.items() if file is not None}


def _from_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} could not be read as an .npz file ({err}).") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path} holds a single array; expected an .npz with {', '.join(NPZ_KEYS)}."
        )
    with loaded as npz:
        absent = [key for key in NPZ_KEYS if key not in npz.files]
        if absent:
            raise ValueError(
                f"{path} lacks the arrays {', '.join(absent)}; expected "
                f"{', '.join(NPZ_KEYS)} (Keras' mnist.npz layout)."
            )
        return {key: npz[key] for key in NPZ_KEYS}


def _images(raw: np.ndarray, where: str) -> np.ndarray:
    if raw.ndim == 4 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    if raw.ndim != 3:
        raise ValueError(f"{where} has shape {raw.shape}; expected (samples, height, width).")
    scale = 255.0 if raw.dtype == np.uint8 or raw.max(initial=0) > 1 else 1.0
    return (raw.astype(np.float32) / np.float32(scale))[..., None]


def _labels(raw: np.ndarray, count: int, where: str) -> np.ndarray:
    if raw.ndim != 1 or len(raw) != count:
        raise ValueError(f"{where} has shape {raw.shape}; expected {count} labels, one per image.")
    return raw.astype(np.int64)


def load_mnist(path: str | os.PathLike[str]) -> MnistArrays:
    """Load MNIST from files the user already has; never downloads.

    Args:
        path: A folder holding the four IDX files named in `MNIST_FILES` (each optionally
            gzipped, ``.idx`` spellings accepted), or an ``.npz`` file with the arrays
            ``x_train``, ``y_train``, ``x_test``, ``y_test`` (as Keras' ``mnist.npz``).

    Returns:
        ``((x_train, y_train), (x_test, y_test))``: float32 images scaled to [0, 1] with
        shape ``(samples, 28, 28, 1)`` (channels-last, as the builder's models take them)
        and int64 labels.

    Raises:
        FileNotFoundError: If `path` or one of the expected files does not exist.
        ValueError: If a file is malformed or images and labels do not match.

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "mnist.npz"
        >>> x, y = np.zeros((2, 28, 28), np.uint8), np.array([3, 5], np.uint8)
        >>> np.savez(f, x_train=x, y_train=y, x_test=x, y_test=y)
        >>> (x_train, y_train), _ = load_mnist(f)
        >>> x_train.shape, y_train.tolist()
        ((2, 28, 28, 1), [3, 5])
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raw = _from_folder(path)
    elif path.is_file():
        raw = _from_npz(path)
    else:
        raise FileNotFoundError(
            f"{path} does not exist; expected a folder with {', '.join(MNIST_FILES.values())} "
            "(each optionally .gz) or an mnist.npz file. Nothing is downloaded."
        )
    out = []
    for split in ("train", "test"):
        x = _images(raw[f"x_{split}"], f"{path} x_{split}")
        y = _labels(raw[f"y_{split}"], len(x), f"{path} y_{split}")
        out.append((x, y))
    return out[0], out[1]
