"""The persistent decision cache: a measured `Decision` is timed once, then read back.

``precision="auto"`` times its candidates (seconds, for a model that trains in less); the
decision depends only on the model's layers and dtypes, the batch size, the input shape,
the settings that shape the plans, the device, the backend and the library versions, so
it is stored under a hash of exactly those (`cache_key`) and a later `Trainer` for the same
model and device, in any process, starts without trials. One JSON file per key, in the
user's cache folder (``platformdirs``, which follows ``XDG_CACHE_HOME``; `ENV` overrides
it), written to a temporary file and moved into place with ``os.replace``: two processes
writing at once each leave a whole file, and a reader never sees half of one. A file that
cannot be read back is ignored with a warning (and replaced by the next store).

The backend's own persistent compilation cache (JAX's ``jax_compilation_cache_dir``) saves
the compile time too, but is process-wide state: `use_compilation_cache` turns it on only
when asked (``gometal-keras tune --compilation-cache DIR``).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from gometal_keras.core.config import TrainerConfig
from gometal_keras.core.device import DeviceInfo
from gometal_keras.core.jsondata import json_safe
from gometal_keras.core.metal import installed_versions
from gometal_keras.model.builder import ModelBuilder
from gometal_keras.planning.decision import Decision

#: Environment variable naming the cache folder (overrides the user cache folder).
ENV = "GOMETAL_KERAS_CACHE_DIR"
#: Name and version of an entry's layout.
SCHEMA = "gometal_keras.planning.decision-cache/1"
#: The `TrainerConfig` fields that change which plans are timed or how they run.
CONFIG_FIELDS = (
    "precision", "use_mixed_precision", "jit_compile", "loop", "loss", "problem_type",
    "optimizer", "initial_loss_scale", "loss_scale_growth_interval", "distribution", "devices",
)
#: The distributions whose versions are part of the key.
VERSIONED = ("python", "gometal_keras", "keras", "tensorflow", "tensorflow-metal", "jax",
             "jaxlib", "torch", "numpy")


def cache_dir() -> Path:
    """The folder decisions are stored in: `ENV`, else the user cache folder's ``decisions``.

    Example:
        >>> cache_dir().name
        'decisions'
    """
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser() / "decisions"
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("gometal_keras")) / "decisions"
    except ImportError:  # the XDG rule platformdirs follows on Linux
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "gometal_keras" / "decisions"


def model_spec(source: Any) -> dict[str, Any]:
    """The layers (kinds, settings, dtypes) and per-sample input shape of a builder or model.

    Example:
        >>> from gometal_keras.model.builder import ModelBuilder
        >>> model_spec(ModelBuilder([8, 4]).add_dense(2))["layers"][0]["kind"]
        'dense'
    """
    if isinstance(source, ModelBuilder):  # its validated specs
        layers = [{"kind": s.kind, "args": dict(s.args), "in": list(s.input_shape)}
                  for s in source.layers]
        return {"layers": layers, "input_shape": list(source.input_shape)}
    layers = []
    for layer in source.layers:
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        layers.append({"kind": type(layer).__name__, "config": config,
                       "dtype": layer.dtype_policy.name})
    return {"layers": layers, "input_shape": list(source.input_shape[1:])}


def cache_key(source: Any, config: TrainerConfig, device: DeviceInfo, placement: str) -> dict:
    """Everything a decision depends on, as JSON-ready data.

    Args:
        source: The `ModelBuilder` or built keras.Model.
        config: The training configuration (`CONFIG_FIELDS` and the batch size count).
        device: The device.
        placement: How the model is placed (e.g. the placement's class name).

    Example:
        >>> from gometal_keras.model.builder import ModelBuilder
        >>> dev = DeviceInfo("jax", "cpu", "CPU", True, False, False)
        >>> key = cache_key(ModelBuilder([8, 4]).add_dense(2), TrainerConfig(), dev, "one")
        >>> key["batch_size"], key["device"]["backend"]
        (32, 'jax')
    """
    found = installed_versions(VERSIONED)
    key = json_safe({
        **model_spec(source),
        "batch_size": config.batch_size,
        "config": {name: getattr(config, name) for name in CONFIG_FIELDS},
        "placement": placement,
        "device": dataclasses.asdict(device),
        "versions": {name: found.get(name) for name in VERSIONED},
    })
    return json.loads(json.dumps(key, sort_keys=True, default=str))  # as it reads back


def entry_path(key: dict[str, Any]) -> Path:
    """The file of `key`: a hash of its canonical JSON, in `cache_dir`."""
    text = json.dumps(key, sort_keys=True, default=str)
    return cache_dir() / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.json"


def load(key: dict[str, Any]) -> Decision | None:
    """The cached decision for `key` (origin ``"cache"``, no trial time), or None.

    A file that is not a whole entry for this key is ignored with a RuntimeWarning.
    """
    path = entry_path(key)
    try:
        data = _read(path)
        if data.get("schema") != SCHEMA or data.get("key") != key:
            raise ValueError("not an entry of this schema and key")
        found = Decision.from_dict(data["decision"])
    except FileNotFoundError:
        return None
    except Exception as error:  # any damage at all: ignored, never a crash (and re-decided)
        warnings.warn(f"Ignoring the unreadable decision cache entry {path}: "
                      f"{type(error).__name__}: {_first_line(error)}.", RuntimeWarning,
                      stacklevel=2)
        return None
    spent = f"timed in {found.trial_seconds:.2f} s on {data.get('created', '?')}"
    reason = f"{found.reason} Cached decision ({spent}); no trials now."
    return dataclasses.replace(found, reason=reason, origin="cache", trial_seconds=0.0)


def store(key: dict[str, Any], decision: Decision, summary: str) -> Path | None:
    """Write `decision` for `key` atomically; warn and return None when the folder is not writable.

    Example:
        >>> import tempfile
        >>> from gometal_keras.core.plan import Precision, RunPlan
        >>> os.environ[ENV] = tempfile.mkdtemp()
        >>> key = {"model": "example"}
        >>> path = store(key, Decision(RunPlan(Precision.FLOAT32, xla=True), "why"), "example")
        >>> load(key).origin, entries()[0]["chosen"]
        ('cache', 'float32 (XLA, fused)')
    """
    path = entry_path(key)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    data = {"schema": SCHEMA, "created": created, "summary": summary, "key": key,
            "decision": decision.to_dict()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".", suffix=".tmp",
                                         delete=False, encoding="utf-8") as fh:
            json.dump(json_safe(data), fh, indent=1, allow_nan=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(fh.name, path)
    except OSError as error:
        warnings.warn(f"The decision cache {path.parent} is not writable: {error}.",
                      RuntimeWarning, stacklevel=2)
        return None
    return path


def entries() -> list[dict[str, Any]]:
    """Every cached decision: its summary, the plan chosen, when, how, and its file.

    Unreadable files are listed with ``"chosen": "unreadable"``.
    """
    found = []
    try:
        paths = sorted(cache_dir().glob("*.json"))
    except OSError:  # the folder itself cannot be listed: nothing to show
        return found
    for path in paths:
        try:
            data = _read(path)
            decision = data["decision"]
            entry = {"summary": data["summary"], "chosen": decision["chosen"],
                     "reason": decision["reason"], "created": data["created"],
                     "trial_seconds": decision.get("trial_seconds"), "path": str(path)}
            if not all(isinstance(entry[k], str) for k in ("summary", "chosen", "reason")):
                raise TypeError("not text")
            found.append(entry)
        except Exception:  # any damage: listed as unreadable, never a crash
            found.append({"summary": "?", "chosen": "unreadable", "path": str(path)})
    return found


#: The largest entry file read (entries are a few KiB): a larger one is damage, not read.
MAX_ENTRY_BYTES = 1 << 20


def _read(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; ValueError for a file too large, too deep or not an object."""
    with open(path, "rb") as fh:
        raw = fh.read(MAX_ENTRY_BYTES + 1)
    if len(raw) > MAX_ENTRY_BYTES:
        raise ValueError(f"larger than {MAX_ENTRY_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError("nested too deeply to be an entry") from None
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    return data


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else "no message"


def summary(source: Any, config: TrainerConfig, device: DeviceInfo) -> str:
    """One line naming the model, batch and device of an entry, for ``gometal-keras info``.

    Example:
        >>> from gometal_keras.model.builder import ModelBuilder
        >>> dev = DeviceInfo("jax", "cpu", "CPU", True, False, False)
        >>> summary(ModelBuilder([8, 4]).add_dense(2), TrainerConfig(batch_size=8), dev)
        'dense(2), input (4,), batch 8, precision float32 on CPU (jax, XLA available)'
    """
    spec = model_spec(source)
    names = []
    for layer in spec["layers"]:
        args = layer.get("args") or layer.get("config") or {}
        size = args.get("units") or args.get("filters")
        names.append(f"{layer['kind'].lower()}({size})" if size else layer["kind"].lower())
    shape = tuple(spec["input_shape"])
    return (f"{'-'.join(names)}, input {shape}, batch {config.batch_size}, precision "
            f"{config.resolved_precision} on {device.describe()}")


def use_compilation_cache(folder: str | os.PathLike[str]) -> bool:
    """Turn on the backend's persistent compilation cache in `folder` (JAX only).

    Process-wide: every later compilation in this process reads and writes it. Returns
    whether the backend has one; where it has none, a RuntimeWarning says so.
    """
    from gometal_keras import engines

    enable = getattr(engines.current(), "use_compilation_cache", None)
    if enable is None:
        warnings.warn("This backend has no persistent compilation cache; nothing was turned on.",
                      RuntimeWarning, stacklevel=2)
        return False
    Path(folder).mkdir(parents=True, exist_ok=True)
    enable(str(folder))
    return True
