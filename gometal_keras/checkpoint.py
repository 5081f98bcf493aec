"""Checkpoints: the file format of a model and a `TrainerState`.

A checkpoint is a zip holding Keras' own ``.keras`` file of the model, every model and
optimizer variable (random-generator states and the loss scale included), and
``trainer.json`` (the state's metadata: the `TrainerConfig`, the `RunPlan` in force, the
decision, the epoch reached, the schedule's state, and a SHA-256 of every entry).

Writes are atomic: the file is written beside the target and renamed over it only when
complete, so a crash during a save leaves the previous checkpoint intact. A truncated or
altered file fails to load with a `ValueError` that says so.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from typing import Any

import keras
import numpy as np

from gometal_keras.state import TrainerState

FORMAT, VERSION = "gometal_keras.checkpoint", 2
ENTRIES = ("model.keras", "variables.npz", "optimizer.npz")


def write(path: str | os.PathLike, model: keras.Model, state: TrainerState) -> None:
    """Write `model` and a trainer's `state` to `path` atomically (see the module docstring).

    Args:
        path: The checkpoint file.
        model: The trained model (its architecture is stored as a ``.keras`` file).
        state: What `Trainer.get_state` returned.
    """
    path = os.fspath(path)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = os.path.join(tmp, "model.keras")
        model.save(model_file)
        with open(model_file, "rb") as fh:
            blobs = {"model.keras": fh.read()}
    blobs["variables.npz"] = _pack(state.model_variables)
    blobs["optimizer.npz"] = _pack(state.optimizer_variables)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "backend": keras.backend.backend(),
        **state.metadata(),
        "sha256": {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()},
    }
    folder = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(prefix=".gmk-", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
            for name, blob in blobs.items():
                zf.writestr(name, blob)
            zf.writestr("trainer.json", json.dumps(meta, indent=1))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def read(path: str | os.PathLike) -> tuple[keras.Model, TrainerState]:
    """Read a checkpoint written by `write`: the model and the trainer state to restore.

    Raises:
        FileNotFoundError: Nothing at `path`.
        ValueError: Not a checkpoint of this format, or truncated or corrupted.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at {path!r}.")
    meta, blobs = _read(path)
    try:
        state = TrainerState.from_metadata(
            meta, _unpack(blobs["variables.npz"]), _unpack(blobs["optimizer.npz"])
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"Checkpoint {path!r} has unreadable metadata ({type(err).__name__}: {err})."
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        model_file = os.path.join(tmp, "model.keras")
        with open(model_file, "wb") as fh:
            fh.write(blobs["model.keras"])
        model = keras.models.load_model(model_file, compile=False)
    return model, state


def _read(path: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Open, parse and verify a checkpoint; every failure is one clear ValueError."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [n for n in ("trainer.json", *ENTRIES) if n not in names]
            if missing:
                raise ValueError(
                    f"{path!r} is not a gometal_keras checkpoint: it lacks {', '.join(missing)}."
                )
            meta = json.loads(zf.read("trainer.json"))
            blobs = {name: zf.read(name) for name in ENTRIES}
    except (
        zipfile.BadZipFile,
        EOFError,
        zlib.error,
        json.JSONDecodeError,
        UnicodeDecodeError,
        OSError,
    ) as err:
        raise ValueError(
            f"Checkpoint {path!r} is truncated or corrupted ({type(err).__name__}); "
            "expected a complete file written by Trainer.save."
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(
            f"{path!r} is not a gometal_keras checkpoint: trainer.json is not its metadata."
        )
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"{path!r} is not a {FORMAT} version {VERSION} file "
            f"(found {meta.get('format')!r} version {meta.get('version')!r})."
        )
    if not isinstance(meta.get("sha256"), dict):
        raise ValueError(f"Checkpoint {path!r} is corrupted: trainer.json has no checksums.")
    for name, blob in blobs.items():
        if hashlib.sha256(blob).hexdigest() != meta["sha256"].get(name):
            raise ValueError(f"Checkpoint {path!r} is corrupted: {name} fails its checksum.")
    return meta, blobs


def _pack(values: tuple[np.ndarray, ...]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *values)
    return buffer.getvalue()


def _unpack(blob: bytes) -> list[np.ndarray]:
    with np.load(io.BytesIO(blob)) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
