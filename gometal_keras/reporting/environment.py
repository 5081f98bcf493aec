"""Facts about the installation: library versions, backend, device and what it runs fast.

`versions` reads package metadata only (nothing is imported); `environment` asks the
backend engine to describe its device. Both are read-only: no Keras global state (dtype
policy, seeds) is touched. The CLI's ``info`` command and the JSON report use them.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
from typing import Any

import keras

from gometal_keras import engines
from gometal_keras.core import device as prec
from gometal_keras.core import metal
from gometal_keras.planning import candidates as cands
from gometal_keras.planning import decision_cache
from gometal_keras.planning.verify import KNOWN_FAULTS

#: Distributions whose versions are reported (None when not installed).
DISTRIBUTIONS = (
    "gometal_keras",
    "keras",
    "tensorflow",
    "tensorflow-metal",
    "jax",
    "jaxlib",
    "torch",
    "numpy",
    "rich",
    "matplotlib",
)


def versions() -> dict[str, str | None]:
    """Return the installed versions of Python and the libraries that matter here.

    Returns:
        ``{"python": "3.11.9", "keras": "3.15.1", ..., "torch": None}``; None for a
        distribution that is not installed.

    Example:
        >>> versions()["python"] == platform.python_version()
        True
    """
    return metal.installed_versions(DISTRIBUTIONS)


def device_dict(device: prec.DeviceInfo) -> dict[str, Any]:
    """Return a `DeviceInfo` as JSON-ready data, with its one-line description.

    Args:
        device: The device facts.

    Returns:
        The dataclass fields (tuples as lists) plus ``"description"``.

    Example:
        >>> cpu = prec.DeviceInfo("tensorflow", "cpu", "CPU", True, False, True)
        >>> device_dict(cpu)["description"]
        'CPU (tensorflow, XLA available)'
    """
    data = dataclasses.asdict(device)
    for key, value in data.items():
        if isinstance(value, tuple):
            data[key] = list(value)
    data["description"] = device.describe()
    return data


def environment() -> dict[str, Any]:
    """Describe the backend, the training device and what ``precision="auto"`` would time.

    Returns:
        A JSON-ready dict with ``platform``, ``backend``, ``versions``, ``device`` (see
        `device_dict`), ``tensorflow_metal`` (installed and driving the device), ``xla``
        (available to this backend on this device), ``auto_candidates`` and
        ``auto_rejected`` (precision -> reason, from `gometal_keras.core.device`),
        ``tensorflow_metal_check`` (`gometal_keras.core.metal.status`: ``"not installed"``,
        ``"ok (...)"`` or the problem), ``memory_budget`` (see `memory_budget`) and
        ``decision_cache`` (its ``folder`` and its ``entries``, `decision_cache.entries`).

    Example:
        >>> facts = environment()
        >>> "float32" in facts["auto_candidates"], type(next(iter(facts["auto_candidates"])))
        (True, <class 'str'>)
    """
    engine = engines.current()
    device = engine.describe_device()
    found = versions()
    return {
        "platform": f"{platform.system()} {platform.machine()} ({sys.platform})",
        "backend": keras.backend.backend(),
        "versions": found,
        "device": device_dict(device),
        "tensorflow_metal": {
            "installed": found.get("tensorflow-metal") is not None,
            "active": device.kind == "metal",
        },
        "xla": device.xla,
        "auto_candidates": {str(p): why for p, why in cands.candidates(device).items()},
        "auto_rejected": {str(p): why for p, why in cands.rejected(device).items()},
        "tensorflow_metal_check": metal.status(found),
        "memory_budget": memory_budget(engine.free_memory_bytes()),
        "candidate_devices": candidate_devices(device, engine.cpu_placement() is not None),
        "decision_cache": {
            "folder": str(decision_cache.cache_dir()),
            "entries": decision_cache.entries(),
        },
    }


def candidate_devices(device: prec.DeviceInfo, has_cpu: bool) -> dict[str, str]:
    """Where ``precision="auto"`` may train: the device, and the host CPU beside a GPU.

    Args:
        device: The default device.
        has_cpu: Whether the engine can place a model on the host CPU beside it.

    Returns:
        Device description -> its role.

    Example:
        >>> gpu = prec.DeviceInfo("tensorflow", "metal", "Apple GPU", False, True, False)
        >>> list(candidate_devices(gpu, True).values())[1]
        'timed too (small models often train faster on the CPU)'
    """
    found = {device.describe(): "the default device"}
    if has_cpu:
        found["the host CPU"] = (
            "timed too (small models often train faster on the CPU)"
            if device.kind in KNOWN_FAULTS
            else "a fallback when every plan on the device fails"
        )
    return found


def memory_budget(free: int | None) -> dict[str, Any]:
    """How much memory a data set may take and still stay resident on the device.

    Args:
        free: The engine's free bytes (`Engine.free_memory_bytes`; the host's on a CPU or
            an Apple GPU), or None when unknown.

    Returns:
        ``{"free_bytes": free, "device_share": loop.DEVICE_SHARE, "data_bytes": share of
        free}``; ``data_bytes`` is None (no limit: never chunked) when `free` is unknown.

    Example:
        >>> memory_budget(8 * 2**30)["data_bytes"] == 0.25 * 8 * 2**30
        True
        >>> memory_budget(None)["data_bytes"] is None
        True
    """
    from gometal_keras.training.loop import DEVICE_SHARE

    data = int(DEVICE_SHARE * free) if free else None
    return {"free_bytes": free, "device_share": DEVICE_SHARE, "data_bytes": data}


#: The cached decisions `info_lines` shows, newest first (`--json` has them all).
SHOWN_ENTRIES = 5


def info_lines(facts: dict[str, Any]) -> list[str]:
    """Render `gometal_keras.reporting.environment.environment()` facts as the ``info`` text.

    Args:
        facts: The dict `environment()` returns.

    Returns:
        Lines of plain text.

    Example:
        >>> info_lines(environment())[0].startswith("Backend:")
        True
    """
    v, dev = facts["versions"], facts["device"]
    installed = [f"{name} {ver}" for name, ver in v.items() if ver]
    missing = [name for name, ver in v.items() if not ver]
    yes = {True: "yes", False: "no"}
    lines = [
        f"Backend:   {facts['backend']} (Keras {v.get('keras')})",
        f"Platform:  {facts['platform']}",
        f"Versions:  {', '.join(installed)}",
    ]
    if missing:
        lines.append(f"           not installed: {', '.join(missing)}")
    lines += [
        f"Device:    {dev['description']}",
        f"           kind {dev['kind']}; fast float16: {yes[dev['fp16_fast']]}; "
        f"fast bfloat16: {yes[dev['bf16_fast']]}; TF32 matmuls: {yes[dev['tf32']]}",
    ]
    if dev.get("compute_capability"):
        lines.append("           compute capability {}.{}".format(*dev["compute_capability"]))
    if dev.get("cpu_features"):
        lines.append(f"           CPU mixed-precision flags: {', '.join(dev['cpu_features'])}")
    metal = facts["tensorflow_metal"]
    idle = metal["installed"] and not metal["active"]
    state = "active" if metal["active"] else "installed, NOT driving the device"
    lines.append(f"tensorflow-metal: {state if metal['installed'] else 'not installed'}")
    check = facts["tensorflow_metal_check"]
    if idle and check.startswith("ok"):  # the versions agree, yet no Metal GPU trains
        check = f"{check} for the versions only: no Metal GPU registered, training on the CPU"
    lines.append(f"tensorflow-metal check: {check}")
    lines.append(f"XLA:       {'available' if facts['xla'] else 'not available'}")
    lines.append(f"Memory:    {_budget_line(facts['memory_budget'])}")
    extra = [f"{name}: {role}" for name, role in list(facts["candidate_devices"].items())[1:]]
    lines.append(f"Devices:   {'; '.join(extra) if extra else 'the default device only'}")
    lines.append('precision="auto" would time:')
    width = max(map(len, [*facts["auto_candidates"], *facts["auto_rejected"]]))
    lines += [f"  {name:<{width}}  {why}" for name, why in facts["auto_candidates"].items()]
    if facts["auto_rejected"]:
        lines.append("and leaves out:")
        lines += [f"  {name:<{width}}  {why}" for name, why in facts["auto_rejected"].items()]
    cache = facts.get("decision_cache") or {"folder": "?", "entries": []}
    entries = cache["entries"]
    lines.append(f"Decision cache: {cache['folder']} ({len(entries)} cached)")
    newest = sorted(entries, key=lambda e: str(e.get("created", "")), reverse=True)
    lines += [f"  {e['summary']}: {e['chosen']}" for e in newest[:SHOWN_ENTRIES]]
    if len(entries) > SHOWN_ENTRIES:
        lines.append(f"  ... and {len(entries) - SHOWN_ENTRIES} older (--json lists them all)")
    return lines


def _budget_line(budget: dict[str, Any]) -> str:
    """``"data up to 3.9 GiB stays resident (25% of 15.6 GiB free); larger is chunked"``."""
    if budget["data_bytes"] is None:
        return "free memory unknown: data is never chunked"
    gib = 2.0**30
    return (
        f"data up to {budget['data_bytes'] / gib:.1f} GiB stays resident "
        f"({budget['device_share']:.0%} of {budget['free_bytes'] / gib:.1f} GiB free); "
        "larger is copied in chunks"
    )
