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
from typing import Any

import keras
import numpy as np

from gometal_keras.core.plan import Precision
from gometal_keras.model.builder import BUILT_UNDER
from gometal_keras.training import checkpoint_schema
from gometal_keras.training.state import TrainerState

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
    if os.path.isdir(path) or not os.path.isdir(folder):
        what = "is a folder" if os.path.isdir(path) else "is in a folder that does not exist"
        raise FileNotFoundError(f"Cannot write checkpoint {path!r}: it {what}.")
    try:
        fd, partial = tempfile.mkstemp(prefix=".gmk-", suffix=".partial", dir=folder)
    except OSError as err:
        raise type(err)(f"Cannot write checkpoint {path!r}: {err.strerror}.") from None
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
            for name, blob in blobs.items():
                zf.writestr(name, blob)
            zf.writestr("trainer.json", json.dumps(meta, indent=1))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    except BaseException as err:
        if os.path.exists(partial):
            os.remove(partial)
        if isinstance(err, OSError):  # name the user's path, not the temporary file
            raise type(err)(f"Cannot write checkpoint {path!r}: {err.strerror or err}.") from None
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
    checkpoint_schema.check(meta, path)
    arrays = [_unpack(blobs[name], name, path) for name in ("variables.npz", "optimizer.npz")]
    state = checkpoint_schema.rebuilt(
        "metadata", path, lambda: TrainerState.from_metadata(meta, *arrays)
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_file = os.path.join(tmp, "model.keras")
        with open(model_file, "wb") as fh:
            fh.write(blobs["model.keras"])
        try:
            model = keras.models.load_model(model_file, compile=False)
        except Exception as err:  # Keras raises many types for a model it cannot rebuild
            raise ValueError(
                f"Checkpoint {path!r} holds a model Keras cannot rebuild "
                f"({type(err).__name__}: {_first_line(err)}); expected its custom layers "
                "registered with keras.saving.register_keras_serializable."
            ) from None
    if _only_the_plan_can_say(model, state.plan.precision):
        setattr(model, BUILT_UNDER, state.plan.precision.value)
    return model, state


def _only_the_plan_can_say(model: keras.Model, precision: Precision) -> bool:
    """Whether `model`'s weighted layers cannot show the mixed `precision` it was saved under.

    Under a mixed policy a builder keeps its last layer in float32, so a model whose one
    weighted layer is that last layer shows no mixed weighted layer (`policy_of` reads
    those): there, and only there, the
    saved plan says what it was built under. Anywhere else the layers decide, so a plan
    edited to another precision than its model's is still found out.
    """
    weighted = [layer for layer in model.layers if layer.weights]
    mixed = any(layer.dtype_policy.name.startswith("mixed_") for layer in weighted)
    return precision.mixed and not mixed and len(weighted) <= 1


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0].rstrip(".") if lines else ""


def _read(path: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Open, parse and verify a checkpoint; every failure is one clear ValueError."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            found = [n for n in ("trainer.json", *ENTRIES) if n in names]
            raw = {name: zf.read(name) for name in found}
            meta = json.loads(raw["trainer.json"]) if "trainer.json" in raw else None
    except Exception as err:  # zipfile and json raise many types for altered bytes
        raise ValueError(
            f"Checkpoint {path!r} is truncated or corrupted ({type(err).__name__}); "
            "expected a complete file written by Trainer.save."
        ) from None
    missing = [n for n in ("trainer.json", *ENTRIES) if n not in raw]
    if missing:
        raise ValueError(
            f"{path!r} is not a gometal_keras checkpoint: it lacks {', '.join(missing)}."
        )
    blobs = {name: raw[name] for name in ENTRIES}
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


def _unpack(blob: bytes, name: str, path: str) -> list[np.ndarray]:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    except Exception as err:  # numpy's reader raises many types for a malformed archive
        raise ValueError(
            f"Checkpoint {path!r} is corrupted: {name} is not a numpy archive of arrays "
            f"({type(err).__name__})."
        ) from None
