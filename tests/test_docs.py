"""Every ```python block in README.md and docs/*.md runs, in a fresh temporary folder."""

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


def test_docs_have_python_blocks():
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("code", BLOCKS)
def test_python_block_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "<doc block>", "exec"), {"__name__": "__doc_block__"})


OWN = (
    "getting-started.md",
    "go-metal-mapping.md",
    "mixed-precision.md",
    "cli.md",
    "json-schema.md",
)


def test_docs_link_to_existing_files():
    for doc in [ROOT / "docs" / name for name in OWN]:
        for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text(encoding="utf-8")):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
