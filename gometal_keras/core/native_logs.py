"""Keep TensorFlow's and XLA's C++ log lines off stderr, unless ``--debug`` asks for them.

On a machine without a GPU, starting TensorFlow prints lines such as::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1795936617.644507    7742 cudart_stub.cc:31] Could not find cuda drivers ...
    I0000 00:00:1795936617.729054    7742 cpu_feature_guard.cc:227] This TensorFlow binary ...
    E0000 00:00:1795936625.351628    7742 cuda_platform.cc:52] failed call to cuInit: ...

They come from two places, and both must be handled before the backend is imported:

* TensorFlow's and XLA's (jaxlib's) own C++ logging reads ``TF_CPP_MIN_LOG_LEVEL`` once, when
  the library loads: `quiet_native_logs` sets it. Only logging changes; numerics do not.
* The ``cudart_stub.cc`` lines (and absl's ``InitializeLog`` warning) are written while two of
  TensorFlow's extension modules load, before any logging setting is read; no environment
  variable reaches them. `filtered_native_stderr` holds file descriptor 2 while the backend is
  imported and writes back every other line. `import_backend` does both.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, MutableMapping

#: Logging-only settings, and the value each gets unless the user set it: 3 hides the C++
#: INFO, WARNING and ERROR lines of TensorFlow and XLA (FATAL still shows).
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}
#: absl's line prefix: severity letter, MMDD, time, thread id, ``file.cc:line]``.
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+(\.\d+)? +\d+ [\w./-]+:\d+\] ")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def quiet_native_logs(debug: bool = False, environ: MutableMapping[str, str] | None = None) -> None:
    """Set the logging-only variables of `QUIET_ENV`; call before TensorFlow or JAX is imported.

    A variable the user already set is left as it is (``setdefault``). With ``debug`` nothing
    is set, so the libraries log as they would by default.

    Args:
        debug: True for ``--debug``: leave the native log lines on.
        environ: The environment to change; None means ``os.environ``.

    Returns:
        None.

    Example:
        >>> env, mine, debug = {}, {"TF_CPP_MIN_LOG_LEVEL": "0"}, {}
        >>> quiet_native_logs(environ=env); quiet_native_logs(environ=mine)
        >>> quiet_native_logs(debug=True, environ=debug)
        >>> env, mine, debug
        ({'TF_CPP_MIN_LOG_LEVEL': '3'}, {'TF_CPP_MIN_LOG_LEVEL': '0'}, {})
    """
    if debug:
        return
    env = os.environ if environ is None else environ
    for name, value in QUIET_ENV.items():
        env.setdefault(name, value)


def is_native_noise(line: str, min_level: int) -> bool:
    """Whether ``line`` is an absl log line below FATAL that ``min_level`` would hide.

    Args:
        line: One line written to stderr.
        min_level: The ``TF_CPP_MIN_LOG_LEVEL`` in force (0 shows all, 1 hides INFO, ...).

    Returns:
        True for absl's ``InitializeLog`` warning (when ``min_level`` >= 1) and for absl lines
        whose severity is below ``min_level``; False for everything else.

    Example:
        >>> line = "I0000 00:00:1795936617.644507    7742 cudart_stub.cc:31] Could not find"
        >>> is_native_noise(line, 3), is_native_noise(line, 0)
        (True, False)
        >>> is_native_noise("Traceback (most recent call last):", 3)
        False
    """
    if min_level >= 1 and line.startswith(_ABSL_PREAMBLE):
        return True
    found = _ABSL_LINE.match(line)
    return bool(found) and _SEVERITY[found.group(1)] < min(min_level, 3)


@contextlib.contextmanager
def filtered_native_stderr(debug: bool = False) -> Iterator[None]:
    """Hold file descriptor 2 during the block; then write back all but the native noise.

    Meant for the import of the backend only: whatever is written to stderr in the block,
    from Python or C++, appears when the block ends. Lines are dropped by `is_native_noise`
    at the ``TF_CPP_MIN_LOG_LEVEL`` in force, so a user's own setting is honoured.

    Args:
        debug: True for ``--debug``: nothing is held or dropped.

    Returns:
        A context manager.

    Example:
        >>> with filtered_native_stderr(debug=True):
        ...     print("unchanged")
        unchanged
    """
    setting = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip()
    level = int(setting) if setting.isdigit() else 0
    if debug or level < 1:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        try:
            os.dup2(held.fileno(), 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not is_native_noise(line, level))
            if kept:
                os.write(2, kept.encode())


def import_backend(debug: bool = False) -> None:
    """Import Keras, and with it its backend, with the native log lines handled as above.

    Args:
        debug: True for ``--debug``: the backend logs as it would by default.

    Returns:
        None. Later imports of Keras, TensorFlow or JAX find them loaded.

    Example:
        >>> import_backend()
        >>> "keras" in sys.modules
        True
    """
    from gometal_keras.core import metal

    if metal.keras_backend() == "tensorflow":
        metal.require_compatible()  # one sentence, not a symbol error from the plugin
    if "keras" in sys.modules:  # started already (by us or by the user): nothing to hide
        return
    quiet_native_logs(debug)
    with filtered_native_stderr(debug):
        importlib.import_module("keras")
