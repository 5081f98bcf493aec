"""Checkpoints: a trainer's model, optimizer state, configuration and progress in one file.

A checkpoint is a zip holding Keras' own ``.keras`` file of the model, the optimizer's
variables (the loss scale included), and ``trainer.json`` (the `TrainerConfig`, the
precision and XLA setting in force, the epoch reached, the schedule's state, and a SHA-256
of every entry). Writes are atomic: the file is written beside the target and renamed over
it only when complete, so a crash during a save leaves the previous checkpoint intact. A
truncated or altered file fails to load with a `ValueError` that says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from gometal_keras.config import TrainerConfig

if TYPE_CHECKING:
    from gometal_keras.trainer import Trainer

FORMAT, VERSION = "gometal_keras.checkpoint", 1
ENTRIES = ("model.keras", "variables.npz", "optimizer.npz")


def save(trainer: Trainer, path: str | os.PathLike) -> None:
    """Write `trainer` to `path` atomically (see the module docstring)."""
    path = os.fspath(path)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = os.path.join(tmp, "model.keras")
        trainer.model.save(model_file)
        with open(model_file, "rb") as fh:
            blobs = {"model.keras": fh.read()}
    # Every model variable too (random-generator states included, which .keras omits), so a
    # resumed run continues exactly where the saved one stopped.
    blobs["variables.npz"] = _pack(trainer.model.variables)
    blobs["optimizer.npz"] = _pack(trainer.optimizer.variables)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "backend": keras.backend.backend(),
        "config": trainer.config.to_dict(),
        "precision": trainer.precision,
        "jit": trainer.jit,
        "loop": trainer.loop_mode,
        "seed": trainer.seed,
        "epoch": trainer.epoch,
        "decision": trainer.decision,
        "schedule": trainer.schedule.get_state() if trainer.schedule else None,
        "sha256": {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()},
    }
    folder = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(prefix=".gmk-", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:
            for name, blob in blobs.items():
                zf.writestr(name, blob)
            zf.writestr("trainer.json", json.dumps(meta, indent=1, default=str))
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def load(cls: type[Trainer], path: str | os.PathLike) -> Trainer:
    """Read a checkpoint written by `save` and return a trainer ready to resume."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at {path!r}.")
    meta, blobs = _read(path)
    config = TrainerConfig(**meta["config"])
    config = dataclasses.replace(
        config,
        precision=meta["precision"],
        jit_compile=meta["jit"],
        loop=meta["loop"],
        seed=meta["seed"],
    )
    with tempfile.TemporaryDirectory() as tmp:
        model_file = os.path.join(tmp, "model.keras")
        with open(model_file, "wb") as fh:
            fh.write(blobs["model.keras"])
        model = keras.models.load_model(model_file, compile=False)
    trainer = cls(model, config)
    _unpack(blobs["variables.npz"], trainer.model.variables, path, "model")
    _unpack(blobs["optimizer.npz"], trainer.optimizer.variables, path, "optimizer")
    trainer.epoch = int(meta["epoch"])
    trainer.decision = meta["decision"]
    if trainer.schedule and meta["schedule"]:
        trainer.schedule.set_state(meta["schedule"])
    return trainer


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


def _pack(variables: list) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *[keras.ops.convert_to_numpy(v.value) for v in variables])
    return buffer.getvalue()


def _unpack(blob: bytes, variables: list, path: str, what: str) -> None:
    with np.load(io.BytesIO(blob)) as arrays:
        values = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    if len(values) != len(variables) or any(
        tuple(v.shape) != a.shape for v, a in zip(variables, values, strict=False)
    ):
        raise ValueError(f"Checkpoint {path!r} holds {what} state that does not fit its model.")
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)
