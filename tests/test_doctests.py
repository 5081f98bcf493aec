"""Every ``>>>`` example in gometal_keras runs, and none is a placeholder.

Modules are found on disk (gometal_keras/, and the folders pyproject.toml maps into the
package, i.e. the examples), so a new module is covered without touching this file. Each
module is one test: its examples run with `doctest` (ELLIPSIS and NORMALIZE_WHITESPACE) in
a temporary working folder, and a failure names the module and shows doctest's report.
A module whose backend is not installed (``engines/jax.py`` without jax,
``engines/torch.py`` without torch) is skipped with that reason; any other import error
fails.

A placeholder is an example that never runs: a ``>>> # some_call(...)`` comment or an
example marked ``# doctest: +SKIP``. They are found in the source text, so modules whose
backend is missing are checked too.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import io
import os
import re
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # effective when TensorFlow starts here

import keras
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gometal_keras"
#: Third-party packages a module may need that a default install lacks.
OPTIONAL = frozenset({"jax", "jaxlib", "torch", "matplotlib", "sklearn"})
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
COMMENT_ONLY = re.compile(r"^\s*>>>\s*(#.*)?$")
DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")
#: Lines the TensorFlow/XLA C++ runtime and absl write to stderr (not the examples' output).
NATIVE_LOG = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|"
    r"To enable the following instructions|.*cuda_?\w*\.cc:\d+\])"
)


def mapped_packages() -> dict[str, Path]:
    """Subpackages pyproject.toml maps from folders outside gometal_keras/ (the examples)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the examples are not checked
        return {}
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = config.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    return {name: ROOT / folder for name, folder in mapping.items() if name.startswith("gometal")}


def module_files() -> dict[str, Path]:
    """Dotted name -> source file of every module in the package, subpackages included."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for package, folder in mapped_packages().items():
        for path in sorted(folder.glob("*.py")):
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


MODULES = module_files()


def import_or_skip(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing in OPTIONAL:
            pytest.skip(f"{name} needs {missing}, which is not installed")
        raise


def placeholders(path: Path) -> list[str]:
    """``file:line: text`` of every example in `path`'s docstrings that never runs."""
    found = []
    parser = doctest.DocTestParser()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node, clean=False)
        if not doc or ">>>" not in doc:
            continue
        first = node.body[0].lineno if node.body else 1
        for offset, line in enumerate(doc.splitlines()):
            if COMMENT_ONLY.match(line):
                found.append(f"{path.name}:{first + offset}: {line.strip()}")
        for example in parser.get_examples(doc):
            if example.options.get(doctest.SKIP):
                code = DIRECTIVE.sub("", example.source.splitlines()[0])
                found.append(f"{path.name}:{first + example.lineno}: >>> {code}  (+SKIP)")
    return sorted(set(found), key=lambda text: int(text.split(":")[1]))


def without_native_logs(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not NATIVE_LOG.match(line))


def test_every_module_is_found():
    assert "gometal_keras" in MODULES and "gometal_keras.model.builder" in MODULES
    assert any(name.startswith("gometal_keras.engines.") for name in MODULES)
    assert any(name.startswith("gometal_keras.bench.") for name in MODULES)
    assert all(path.is_file() for path in MODULES.values())


def test_placeholder_finder_sees_comments_and_skips(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'def f():\n    """Run.\n\n    >>> 1 + 1\n    2\n    >>> # f()\n'
        '    >>> f()  # doctest: +SKIP\n    """\n',
        encoding="utf-8",
    )
    assert placeholders(sample) == [
        "sample.py:6: >>> # f()",
        "sample.py:7: >>> f()  (+SKIP)",
    ]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_placeholder_examples(name):
    found = placeholders(MODULES[name])
    assert not found, f"{name} has examples that never run:\n" + "\n".join(found)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_examples_run(name, capfd, tmp_path, monkeypatch):
    module = import_or_skip(name)
    monkeypatch.chdir(tmp_path)  # an example that writes a file leaves nothing behind
    policy = keras.config.dtype_policy().name
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = io.StringIO()
    for test in doctest.DocTestFinder().find(module):
        runner.run(test, out=report.write)
    results = runner.summarize(verbose=False)
    _, stderr = capfd.readouterr()  # consumed here, so TensorFlow's logs stay out
    stderr = without_native_logs(stderr)
    assert results.failed == 0, (
        f"{results.failed} of {results.attempted} examples in {name} failed:\n"
        f"{report.getvalue()}" + (f"\nstderr:\n{stderr[-3000:]}" if stderr else "")
    )
    assert keras.config.dtype_policy().name == policy, f"{name}'s examples changed the policy"
