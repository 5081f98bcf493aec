"""A newcomer's first screen: ``--help`` starts no backend; ``info`` prints no C++ log lines.

Each case runs the command line in a fresh interpreter, since what a process has imported
and what TensorFlow logs while it starts are fixed once per process. Nothing here depends
on a measured time: ``--help`` is checked by the modules it loads.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from gometal_keras.core.native_logs import QUIET_ENV, is_native_noise

#: Packages whose import starts a backend (seconds of start-up): --help needs none of them.
BACKENDS = ("tensorflow", "keras", "jax", "torch")
#: What the TensorFlow/XLA C++ runtime and absl write to stderr, not the command's own output.
NATIVE_LINE = re.compile(
    r"^[IWEF]\d{4} |absl::InitializeLog|cuda|TensorFlow binary is optimized|oneDNN",
    re.IGNORECASE,
)
#: What ``import jax`` sets itself (``os.environ.setdefault``), not to be taken for ours.
JAX_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "1"}
#: Runs the command line's main in this interpreter, then reports what it left in the process.
WRAPPER = textwrap.dedent(
    """
    import json, os, sys
    from gometal_keras.cli.commands import main
    code = main(sys.argv[1:])
    env = {name: os.environ.get(name) for name in json.loads(os.environ["CHECK_ENV"])}
    print("STARTUP " + json.dumps({"code": code, "env": env}))
    """
)


def _env() -> dict[str, str]:
    """This environment without the logging settings a user or CI may have made."""
    env = {k: v for k, v in os.environ.items() if k not in QUIET_ENV}
    env["KERAS_BACKEND"] = "tensorflow"  # the backend whose start-up lines are at issue
    env["CHECK_ENV"] = json.dumps(list(QUIET_ENV))
    return env


@functools.cache
def _started() -> dict[str, subprocess.Popen]:
    """Start both ``info`` runs at once: they overlap TensorFlow's start-up."""
    runs = {"quiet": ["info"], "debug": ["info", "--debug"]}
    return {
        name: subprocess.Popen(
            [sys.executable, "-c", WRAPPER, *argv],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, argv in runs.items()
    }


@functools.cache
def _info(name: str) -> tuple[dict, str]:
    """The ``info`` run's report (exit code, logging settings) and its stderr."""
    proc = _started()[name]
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    lines = [ln for ln in stdout.splitlines() if ln.startswith("STARTUP ")]
    assert lines, f"info {name} printed no report (rc {proc.returncode}):\n{stderr[-3000:]}"
    return json.loads(lines[-1][len("STARTUP ") :]), stderr


def test_help_starts_no_backend():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gometal_keras", "--help"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "usage:" in proc.stdout
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", proc.stderr, re.MULTILINE)
    assert "gometal_keras.cli.commands" in names  # the module list was read
    loaded = sorted({n for n in names if n.split(".")[0] in BACKENDS})
    assert not loaded, f"--help imported {loaded[:12]}"


def test_info_prints_no_native_log_lines():
    report, stderr = _info("quiet")
    assert report["code"] == 0, stderr[-3000:]
    native = [ln for ln in stderr.splitlines() if NATIVE_LINE.search(ln)]
    assert not native, "\n".join(native)


def test_debug_leaves_native_logs_on():
    report, stderr = _info("debug")
    assert report["code"] == 0, stderr[-3000:]
    # Not set by us, so the libraries log as they do by default. (JAX's own import, which
    # TensorFlow's makes where JAX is installed, sets TF_CPP_MIN_LOG_LEVEL=1 if unset.)
    for name, quiet in QUIET_ENV.items():
        assert report["env"][name] in (None, JAX_DEFAULTS.get(name)), (name, report["env"])
        assert report["env"][name] != quiet, (name, report["env"])


@pytest.mark.parametrize(
    ("line", "level", "noise"),
    [
        ("WARNING: All log messages before absl::InitializeLog() is called are written", 1, True),
        ("I0000 00:00:1795936617.644507    7742 cudart_stub.cc:31] Could not find cuda", 1, True),
        ("I1114 09:32:22.280168 13509 tpu_hal.cc:448] Registered plugin", 1, True),
        ("W0000 00:00:1795936617.644507    7742 x.cc:1] a warning", 1, False),
        ("E0000 00:00:1795936625.351628    7742 cuda_platform.cc:52] failed cuInit", 3, True),
        ("F0000 00:00:1795936625.351628    7742 x.cc:52] fatal", 3, False),
        ("I0000 00:00:1795936617.644507    7742 cudart_stub.cc:31] Could not find cuda", 0, False),
        ("gometal-keras: error: something the user must see", 3, False),
    ],
)
def test_native_noise_honours_the_level(line, level, noise):
    assert is_native_noise(line, level) is noise


@pytest.mark.parametrize("module", ["gometal_keras.reporting.environment",
                                    "gometal_keras.model.builder"])
def test_importing_any_module_directly_prints_no_native_log_lines(module):
    # docs/cli.md imports gometal_keras.reporting.environment as a user would: whichever
    # module starts Keras, TensorFlow's C++ start-up lines stay off stderr.
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], env=_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    native = [ln for ln in proc.stderr.splitlines() if NATIVE_LINE.search(ln)]
    assert not native, "\n".join(native)
