"""Apple Silicon installs, tested by injection on Linux: markers, Makefile, version check, memory.

pip cannot evaluate macOS markers here (it evaluates them for this machine), so the `metal`
extra's markers are evaluated with `packaging` for fake macOS environments. Versions and
platforms are injected into `gometal_keras.core.metal`; `os.sysconf` is made to fail as on macOS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from packaging.requirements import Requirement

from gometal_keras import engines
from gometal_keras.core import metal
from gometal_keras.core.plan import Loop, Precision, RunPlan
from gometal_keras.engines.base import host_free_memory_bytes
from gometal_keras.reporting.environment import environment, info_lines, memory_budget
from gometal_keras.training import loop as loop_module
from gometal_keras.training.loop import TrainingLoop

ROOT = Path(__file__).resolve().parents[1]
MAC = ("darwin", "arm64")
CLASH = {"python": "3.12.4", "tensorflow": "2.21.0", "tensorflow-metal": "1.2.0"}


def metal_extra() -> list[Requirement]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [Requirement(r) for r in data["project"]["optional-dependencies"]["metal"]]


def marker_env(system: str, machine: str, python: str) -> dict[str, str]:
    return {
        "sys_platform": system,
        "platform_system": {"darwin": "Darwin", "linux": "Linux"}[system],
        "platform_machine": machine,
        "os_name": "posix",
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


@pytest.mark.parametrize(
    ("python", "applies"), [("3.10", True), ("3.11", True), ("3.12", True), ("3.13", False)]
)
def test_metal_extra_applies_where_wheels_exist(python, applies):
    for req in metal_extra():
        assert req.marker.evaluate(marker_env("darwin", "arm64", python)) is applies, req


@pytest.mark.parametrize(("system", "machine"), [("linux", "x86_64"), ("darwin", "x86_64")])
def test_metal_extra_installs_nothing_elsewhere(system, machine):
    for req in metal_extra():
        assert not req.marker.evaluate(marker_env(system, machine, "3.12")), req


def test_metal_extra_pins_the_versions_the_plugin_loads_with():
    reqs = {req.name: req for req in metal_extra()}
    assert set(reqs) == {"tensorflow", "tensorflow-metal"}
    tf = reqs["tensorflow"].specifier
    assert [v for v in ("2.17.1", "2.18.1", "2.19.0", "2.20.0", "2.21.0") if tf.contains(v)] == [
        "2.18.1",
        "2.19.0",
    ]
    assert list(reqs["tensorflow-metal"].specifier.filter(["1.1.0", "1.2.0"])) == ["1.2.0"]
    for plugin, (first, last) in metal.KNOWN_GOOD.items():  # the table and the pin agree
        if reqs["tensorflow-metal"].specifier.contains(plugin):
            assert tf.contains(f"{first[0]}.{first[1]}.0") and tf.contains(f"{last[0]}.{last[1]}.0")
            assert not tf.contains(f"{last[0]}.{last[1] + 1}.0")


def index_reachable() -> bool:
    """Whether pip can reach its package index (CI's machines can; an offline one cannot)."""
    import urllib.request

    url = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/pip/", timeout=10):
            return True
    except OSError:
        return False


def test_the_metal_pins_have_wheels_for_a_mac_exactly_where_the_extra_applies(tmp_path):
    # pip itself, asked for macOS arm64 wheels of the extra's pins (no dependencies: only
    # whether the two wheels exist), agrees with the markers: wheels on 3.10-3.12, none on
    # 3.13 (where the extra must not apply, or `make demo` would fail to install). The four
    # resolutions run at once.
    if not index_reachable():
        pytest.skip("the package index is not reachable")
    pins = [f"{req.name}{req.specifier}" for req in metal_extra()]
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--quiet"]
    pip += ["--only-binary=:all:", "--platform", "macosx_14_0_arm64"]
    runs = {
        python: subprocess.Popen(
            [*pip, "--python-version", python, "--target", str(tmp_path / python), *pins],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for python in ("3.10", "3.11", "3.12", "3.13")
    }
    for python, proc in runs.items():
        _, err = proc.communicate(timeout=180)
        env = marker_env("darwin", "arm64", python)
        applies = all(r.marker.evaluate(env) for r in metal_extra())
        assert (proc.returncode == 0) is applies, (python, err[-500:])
        if not applies:
            assert "No matching distribution" in err, (python, err[-500:])


def make(tmp_path: Path, *args: str, dry: bool = True, **env: str) -> subprocess.CompletedProcess:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "MAKEFLAGS", "MFLAGS")}
    base.update(env)
    cmd = [shutil.which("make"), "-C", str(ROOT), *(["-n"] if dry else []), f"VENV={venv}"]
    return subprocess.run(
        [*cmd, *args, f"{venv}/.installed"], capture_output=True, text=True, env=base, timeout=60
    )


def fake_bin(tmp_path: Path, *names: str) -> str:
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in names:
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
        (folder / name).chmod(0o755)
    return str(folder)


def test_makefile_takes_the_newest_supported_python_on_apple_silicon(tmp_path):
    path = fake_bin(tmp_path, "python3.13", "python3.11", "python3.10")
    out = make(tmp_path, "UNAME=Darwin-arm64", PATH=path)
    assert out.returncode == 0, out.stderr
    assert f"{path}/python3.11 -m venv" in out.stdout
    assert "[test,plot,onnx,evaluate,metal]" in out.stdout


def test_makefile_says_what_to_install_when_no_python_fits(tmp_path):
    path = fake_bin(tmp_path, "python3.13")
    out = make(tmp_path, "UNAME=Darwin-arm64", dry=False, PATH=path)
    assert out.returncode != 0
    assert "brew install python@3.12" in out.stdout
    assert not (tmp_path / "venv").exists()


def test_makefile_keeps_python3_elsewhere_and_a_given_python(tmp_path):
    path = fake_bin(tmp_path, "python3.12")
    out = make(tmp_path, "UNAME=Linux-x86_64", PATH=path)
    assert "\npython3 -m venv" in f"\n{out.stdout}"
    assert "[test,plot,onnx,evaluate]" in out.stdout and "metal]" not in out.stdout
    out = make(tmp_path, "UNAME=Darwin-arm64", "PYTHON=/opt/py/bin/python3.10", PATH=path)
    assert "/opt/py/bin/python3.10 -m venv" in out.stdout


@pytest.mark.parametrize(
    ("plugin", "tf", "fix"),
    [
        ("1.2.0", "2.18.1", None),
        ("1.2.0", "2.19.0", None),
        ("1.2.0", "2.20.0", "pip install 'tensorflow>=2.18,<2.20'"),
        ("1.2.0", "2.21.0", "pip install 'tensorflow>=2.18,<2.20'"),
        ("1.1.0", "2.18.1", "pip install 'tensorflow-metal==1.2.0'"),
        ("1.1.0", "2.21.0", "pip install 'tensorflow>=2.14,<2.18'"),
    ],
)
def test_check_plugin_names_the_clash_and_its_fix(plugin, tf, fix):
    found = {"python": "3.12.4", "tensorflow": tf, "tensorflow-metal": plugin}
    problem = metal.check_plugin(found, MAC)
    if fix is None:
        assert problem is None
        assert metal.status(found, MAC) == f"ok ({plugin} with TensorFlow {tf})"
        metal.require_compatible(found, MAC)
        return
    assert problem.startswith(f"tensorflow-metal {plugin} works with TensorFlow ")
    assert f"but TensorFlow {tf} is installed; run: {fix}" in problem
    assert problem.count(". ") == 0 and "\n" not in problem  # one sentence
    assert metal.status(found, MAC) == problem
    with pytest.raises(ImportError, match=r"^tensorflow-metal "):
        metal.require_compatible(found, MAC)


def test_check_plugin_does_nothing_off_apple_silicon_or_without_the_plugin():
    assert metal.check_plugin(CLASH, ("linux", "x86_64")) is None
    assert metal.check_plugin(CLASH, ("darwin", "x86_64")) is None
    assert metal.check_plugin({**CLASH, "tensorflow-metal": None}, MAC) is None
    assert metal.check_plugin({**CLASH, "tensorflow-metal": "9.9.9"}, MAC) is None  # unknown
    assert "not checked" in metal.status({**CLASH, "tensorflow-metal": "9.9.9"}, MAC)
    missing = metal.check_plugin({**CLASH, "tensorflow": None}, MAC)
    assert "TensorFlow is not installed; run: pip install 'tensorflow>=2.18,<2.20'" in missing
    assert metal.status({"python": "3.13.1", "tensorflow-metal": None}, MAC).startswith(
        "not installed (it has no wheels for Python 3.13.1; use Python 3.10-3.12)"
    )
    assert metal.status({"python": "3.12.1", "tensorflow-metal": None}, MAC) == "not installed"
    assert "not used" in metal.status(CLASH, ("linux", "x86_64"))
    metal.require_compatible()  # this machine: Linux, no plugin


def test_versions_come_from_metadata_and_tensorflow_is_never_imported():
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"  # `import tensorflow` fails
        "from gometal_keras.core import metal\n"
        "from unittest import mock\n"
        "v = {'tensorflow': '2.21.0', 'tensorflow-metal': '1.2.0'}\n"
        "with mock.patch('importlib.metadata.version', lambda d: v[d]):\n"
        "    print(metal.check_plugin(where=('darwin', 'arm64')))\n"
        "print(metal.status())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("tensorflow-metal 1.2.0 works with TensorFlow 2.18-2.19")
    assert lines[1] == "not installed"


def test_engines_refuse_before_importing_tensorflow():
    code = (
        "import sys\n"
        "from gometal_keras.core import metal\n"
        "metal.is_apple_silicon = lambda where=None: True\n"
        f"metal.installed_versions = lambda: {CLASH!r}\n"
        "try:\n"
        "    import gometal_keras.engines\n"
        "except ImportError as error:\n"
        "    print(error)\n"
        "print('keras' in sys.modules, 'tensorflow' in sys.modules)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [metal.check_plugin(CLASH, MAC), "False False"]


def test_the_backend_is_read_as_keras_reads_it(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert metal.keras_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert metal.keras_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    assert metal.keras_backend() == "torch"


def test_the_tensorflow_engine_is_checked_too():
    with (
        mock.patch.object(metal, "is_apple_silicon", return_value=True),
        mock.patch.object(metal, "installed_versions", return_value=CLASH),
        pytest.raises(ImportError, match=r"but TensorFlow 2\.21\.0 is installed"),
    ):
        engines._engine.__wrapped__("tensorflow")


def macos_sysconf(real=os.sysconf, phys_pages=None):
    """`os.sysconf` as on macOS: no SC_AVPHYS_PAGES (ValueError)."""

    def sysconf(name):
        if name == "SC_AVPHYS_PAGES":
            raise ValueError("unrecognized configuration name")
        if name == "SC_PHYS_PAGES" and phys_pages is not None:
            return phys_pages
        return real(name)

    return sysconf


def test_host_memory_on_macos_comes_from_sysctl():
    done = subprocess.CompletedProcess(["sysctl"], 0, stdout="17179869184\n", stderr="")
    with (
        mock.patch("os.sysconf", macos_sysconf()),
        mock.patch.object(sys, "platform", "darwin"),
        mock.patch("subprocess.run", return_value=done) as run,
    ):
        assert host_free_memory_bytes() == 16 * 2**30
    assert run.call_args.args[0] == ["sysctl", "-n", "hw.memsize"]


def test_host_memory_falls_back_to_physical_pages():
    with (
        mock.patch("os.sysconf", macos_sysconf(phys_pages=1000)),
        mock.patch.object(sys, "platform", "darwin"),
        mock.patch("subprocess.run", side_effect=FileNotFoundError("sysctl")),
    ):
        assert host_free_memory_bytes() == 1000 * os.sysconf("SC_PAGE_SIZE")

    def broken(name):
        raise ValueError(name)

    with mock.patch("os.sysconf", broken), mock.patch.object(sys, "platform", "linux"):
        assert host_free_memory_bytes() is None


class HostEngine:
    """A host 'device' whose free memory is `host_free_memory_bytes`, as on an Apple GPU."""

    def to_device(self, array):
        return np.array(array, copy=True)

    def free_memory_bytes(self):
        return host_free_memory_bytes()


class Program:
    def __init__(self):
        self.plan, self.calls = RunPlan(Precision.FLOAT32, xla=False, loop=Loop.FUSED), []

    def epoch(self, xs, ys):
        self.calls.append(len(xs))
        return xs[:, 0, :1]


def test_loop_chunks_on_macos_when_data_exceeds_the_share():
    x = np.arange(40 * 256, dtype=np.float32).reshape(40, 256)
    y = np.zeros(40, dtype=np.int32)
    per_batch = 4 * 256 * 4 + 4 * 4
    memsize = int(3 * per_batch / loop_module.DEVICE_SHARE)  # the share holds 3 batches
    done = subprocess.CompletedProcess(["sysctl"], 0, stdout=f"{memsize}\n", stderr="")
    program = Program()
    with (
        mock.patch("os.sysconf", macos_sysconf()),
        mock.patch.object(sys, "platform", "darwin"),
        mock.patch("subprocess.run", return_value=done),
    ):
        loop = TrainingLoop(HostEngine(), program, 4)
        data = loop.arrange(x, y)
    assert not data.resident and data.chunk == 3
    assert "4 calls per epoch" in data.describe()
    losses = loop.run_epoch(data)
    assert program.calls == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.ravel(losses), x[::4, 0])


def test_info_shows_the_check_and_the_memory_budget():
    facts = environment()
    assert json.loads(json.dumps(facts)) == facts
    assert facts["tensorflow_metal_check"] == "not installed"  # Linux, no plugin
    budget = facts["memory_budget"]
    assert budget["device_share"] == loop_module.DEVICE_SHARE
    assert budget["data_bytes"] == int(loop_module.DEVICE_SHARE * budget["free_bytes"])
    lines = info_lines(facts)
    assert "tensorflow-metal check: not installed" in lines
    memory = [line for line in lines if line.startswith("Memory:")]
    assert len(memory) == 1 and "25% of" in memory[0] and "GiB free" in memory[0]
    # The other lines are as before: the two new ones are the only additions.
    old = [line for line in lines if line not in ("tensorflow-metal check: not installed", *memory)]
    assert old[0].startswith("Backend:") and "tensorflow-metal: not installed" in old
    assert (
        lines.index("tensorflow-metal check: not installed")
        == lines.index("tensorflow-metal: not installed") + 1
    )
    unknown = info_lines({**facts, "memory_budget": memory_budget(None)})
    assert "Memory:    free memory unknown: data is never chunked" in unknown
    clash = info_lines({**facts, "tensorflow_metal_check": metal.check_plugin(CLASH, MAC)})
    assert f"tensorflow-metal check: {metal.check_plugin(CLASH, MAC)}" in clash


def test_the_package_and_cli_check_the_plugin_before_keras_starts():
    # `from gometal_keras import Trainer` and the command line start Keras through
    # native_logs.import_backend: a clashing pair must stop there, in one sentence.
    from unittest import mock

    from gometal_keras.core import metal, native_logs

    clash = ImportError("tensorflow-metal 1.2.0 works with TensorFlow 2.18-2.19, but 2.21.0")
    with (
        mock.patch.object(metal, "keras_backend", return_value="tensorflow"),
        mock.patch.object(metal, "require_compatible", side_effect=clash) as check,
        mock.patch.object(native_logs.importlib, "import_module") as started,
        pytest.raises(ImportError, match=r"works with TensorFlow 2\.18-2\.19"),
    ):
        native_logs.import_backend()
    check.assert_called_once()
    started.assert_not_called()


def test_info_names_the_candidate_devices():
    from gometal_keras.core.device import DeviceInfo
    from gometal_keras.reporting.environment import candidate_devices

    metal = DeviceInfo("tensorflow", "metal", "Apple GPU", False, True, False)
    cuda = DeviceInfo("tensorflow", "cuda", "GPU", True, True, True, compute_capability=(9, 0))
    assert "timed too" in candidate_devices(metal, True)["the host CPU"]
    assert "fallback" in candidate_devices(cuda, True)["the host CPU"]
    assert list(candidate_devices(cuda, False)) == [cuda.describe()]
    facts = environment()
    facts["candidate_devices"] = candidate_devices(metal, True)
    assert any(line.startswith("Devices:   the host CPU: timed too") for line in info_lines(facts))
