"""The docs tell the truth: their Python runs, their links resolve, README's layout is the tree.

Every ```python block in README.md and docs/*.md runs, in a fresh temporary folder; a block
that states a fact asserts it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            rel = doc.relative_to(ROOT)
            found.append(pytest.param(match.group(1), id=f"{rel}:{line}"))
    return found


BLOCKS = _blocks()


PYTHON_FENCE = re.compile(r"^\s*```\s*(python3?|py|pycon)\b", re.M)


def test_every_python_fence_is_a_tested_block():
    # A fence the pattern above misses (indented, "py", "python3", "pycon") would never run.
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        rel = str(doc.relative_to(ROOT))
        tested = sum(1 for block in BLOCKS if block.id.startswith(f"{rel}:"))
        assert len(PYTHON_FENCE.findall(text)) == tested, f"{rel} has Python no test runs"
        assert text.count("```") % 2 == 0, f"{rel} has an unclosed code fence"


@pytest.mark.parametrize("code", BLOCKS)
def test_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<doc block>", "exec"), {"__name__": "__doc_block__"})


def test_docs_link_to_existing_files():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"


LAYOUT_ROW = re.compile(r"^\|(?P<modules>[^|]*)\|(?P<concept>[^|]*)\|\s*$", re.M)


def layout_entries() -> set[str]:
    """The names in the first column of README's "## Layout" table, relative to gometal_keras/."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    rows = [m["modules"] for m in LAYOUT_ROW.finditer(section)][2:]  # header, rule
    assert rows, "README's Layout section has no table"
    return {name for cell in rows for name in re.findall(r"`([^`]+)`", cell)}


def test_readme_layout_names_every_module_and_only_existing_ones():
    package = ROOT / "gometal_keras"
    entries = layout_entries()
    for entry in sorted(entries):
        path = package / entry
        if entry.endswith("/"):
            assert (path / "__init__.py").is_file(), f"README's layout names {entry}: no package"
        else:
            assert entry.endswith(".py") and path.is_file(), f"README's layout names {entry}"
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.name == "__init__.py":
            continue
        folders = {f"{parent.as_posix()}/" for parent in rel.parents if parent != Path(".")}
        assert rel.as_posix() in entries or folders & entries, (
            f"gometal_keras/{rel.as_posix()} is missing from README's layout table"
        )
