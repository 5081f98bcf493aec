"""tensorflow-metal and TensorFlow in step: the check that runs before TensorFlow is imported.

Apple's plugin is built against one TensorFlow ABI; with another, ``import tensorflow``
fails with an unreadable symbol error. `check_plugin` reads versions from package metadata
only (nothing is imported, so it works when ``import tensorflow`` itself fails) and says in
one sentence what is out of step and the ``pip`` command that fixes it.
`gometal_keras.engines` calls `require_compatible` before it imports TensorFlow.

Nothing here has run on Apple hardware: the table holds the pairs reported to work, and
the tests inject versions and platforms.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import sys
from collections.abc import Mapping

#: tensorflow-metal version -> the TensorFlow (major, minor) range it works with,
#: ``(first, last)`` inclusive. 1.2.0 fails to load on 2.20 and 2.21; 1.1.0 on 2.18.
KNOWN_GOOD: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {
    "1.2.0": ((2, 18), (2, 19)),
    "1.1.0": ((2, 14), (2, 17)),
}
#: Python versions tensorflow-metal 1.2.0 publishes wheels for (cp310-cp312 with TF 2.18).
PYTHONS = ((3, 10), (3, 12))


def _release(version: str) -> tuple[int, int]:
    """``"2.18.1"`` -> ``(2, 18)``; ``"2.20.0rc0"`` -> ``(2, 20)``."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:2]]
    padded = [*parts, 0, 0]
    return padded[0], padded[1]


def _span(first: tuple[int, int], last: tuple[int, int]) -> str:
    return f"{first[0]}.{first[1]}" + ("" if first == last else f"-{last[0]}.{last[1]}")


def _pin(first: tuple[int, int], last: tuple[int, int]) -> str:
    return f"tensorflow>={first[0]}.{first[1]},<{last[0]}.{last[1] + 1}"


def installed_versions(
    dists: tuple[str, ...] = ("tensorflow", "tensorflow-metal"),
) -> dict[str, str | None]:
    """Return the installed versions of Python and `dists` (``tensorflow`` and
    ``tensorflow-metal`` unless told).

    Args:
        dists: The distributions to read.

    Returns:
        ``{"python": "3.12.4", "tensorflow": "2.18.1", "tensorflow-metal": None}``; None
        for a distribution that is not installed. Read from metadata: nothing is imported.

    Example:
        >>> installed_versions()["python"] == platform.python_version()
        True
    """
    found: dict[str, str | None] = {"python": platform.python_version()}
    for dist in (d for d in dists if d not in found):  # "python" is read above
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = None
    return found


def is_apple_silicon(where: tuple[str, str] | None = None) -> bool:
    """Whether this is macOS on arm64, where tensorflow-metal runs.

    Args:
        where: ``(sys.platform, platform.machine())``; None for this machine.

    Returns:
        True for ``("darwin", "arm64")``.

    Example:
        >>> is_apple_silicon(("darwin", "arm64")), is_apple_silicon(("linux", "x86_64"))
        (True, False)
    """
    system, machine = where or (sys.platform, platform.machine())
    return system == "darwin" and machine == "arm64"


def keras_backend() -> str:
    """The Keras backend ``import keras`` will load, read as Keras reads it, without importing it.

    Returns:
        ``KERAS_BACKEND`` if set, else ``"backend"`` from ``$KERAS_HOME/keras.json`` (default
        ``~/.keras``), else ``"tensorflow"``.

    Example:
        >>> keras_backend() in ("tensorflow", "jax", "torch", "numpy", "openvino")
        True
    """
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json"), encoding="utf-8") as file:
            return str(json.load(file).get("backend", "tensorflow"))
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def check_plugin(
    versions: Mapping[str, str | None] | None = None, where: tuple[str, str] | None = None
) -> str | None:
    """Return the one-sentence problem when tensorflow-metal and TensorFlow are out of step.

    Args:
        versions: ``{"python": ..., "tensorflow": ..., "tensorflow-metal": ...}`` (None for
            not installed); None reads them with `installed_versions`.
        where: ``(sys.platform, platform.machine())``; None for this machine.

    Returns:
        The problem and its fix, or None: not macOS arm64, plugin not installed, a pair
        known to work, or a plugin version this table does not know.

    Example:
        >>> problem = check_plugin({"python": "3.12.4", "tensorflow": "2.21.0",
        ...                         "tensorflow-metal": "1.2.0"}, ("darwin", "arm64"))
        >>> problem.split(", but ")[0]
        'tensorflow-metal 1.2.0 works with TensorFlow 2.18-2.19'
        >>> problem.split(", but ")[1]
        "TensorFlow 2.21.0 is installed; run: pip install 'tensorflow>=2.18,<2.20'"
        >>> check_plugin({"tensorflow": "2.21.0", "tensorflow-metal": "1.2.0"},
        ...              ("linux", "x86_64")) is None
        True
    """
    if not is_apple_silicon(where):
        return None
    found = installed_versions() if versions is None else versions
    plugin, tf = found.get("tensorflow-metal"), found.get("tensorflow")
    if plugin is None or plugin not in KNOWN_GOOD:
        return None
    first, last = KNOWN_GOOD[plugin]
    works = f"tensorflow-metal {plugin} works with TensorFlow {_span(first, last)}"
    if tf is None:
        return f"{works}, but TensorFlow is not installed; run: pip install '{_pin(first, last)}'"
    if first <= _release(tf) <= last:
        return None
    newer = [p for p, (lo, hi) in KNOWN_GOOD.items() if lo <= _release(tf) <= hi]
    if newer and _release(max(newer, key=_release)) > _release(plugin):
        fix = f"pip install 'tensorflow-metal=={max(newer, key=_release)}'"
    else:
        fix = f"pip install '{_pin(first, last)}'"
    return f"{works}, but TensorFlow {tf} is installed; run: {fix}"


def require_compatible(
    versions: Mapping[str, str | None] | None = None, where: tuple[str, str] | None = None
) -> None:
    """Raise ImportError with `check_plugin`'s sentence when the plugin and TensorFlow clash.

    Args:
        versions: As for `check_plugin`.
        where: As for `check_plugin`.

    Example:
        >>> require_compatible({"tensorflow": "2.18.1", "tensorflow-metal": "1.2.0"},
        ...                    ("darwin", "arm64"))
    """
    problem = check_plugin(versions, where)
    if problem:
        raise ImportError(problem)


def status(
    versions: Mapping[str, str | None] | None = None, where: tuple[str, str] | None = None
) -> str:
    """The check's result as ``gometal-keras info`` shows it.

    Args:
        versions: As for `check_plugin`.
        where: As for `check_plugin`.

    Returns:
        ``"not installed"`` (on macOS arm64 with a note when Python has no wheels),
        ``"ok (1.2.0 with TensorFlow 2.18.1)"``, ``"unknown version 1.3.0 (...)"`` or the
        problem sentence.

    Example:
        >>> status({"python": "3.13.1", "tensorflow-metal": None}, ("linux", "x86_64"))
        'not installed'
        >>> status({"python": "3.12.4", "tensorflow": "2.18.1", "tensorflow-metal": "1.2.0"},
        ...        ("darwin", "arm64"))
        'ok (1.2.0 with TensorFlow 2.18.1)'
    """
    found = installed_versions() if versions is None else versions
    plugin, python = found.get("tensorflow-metal"), found.get("python")
    if plugin is None:
        if is_apple_silicon(where) and python and _release(python) > PYTHONS[1]:
            low, high = PYTHONS
            return (
                f"not installed (it has no wheels for Python {python}; "
                f"use Python {_span(low, high)})"
            )
        return "not installed"
    if not is_apple_silicon(where):
        return f"installed ({plugin}), not used: it runs on macOS arm64 only"
    problem = check_plugin(found, where)
    if problem:
        return problem
    if plugin not in KNOWN_GOOD:
        return f"unknown version {plugin} (with TensorFlow {found.get('tensorflow')}; not checked)"
    return f"ok ({plugin} with TensorFlow {found.get('tensorflow')})"
