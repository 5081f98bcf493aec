"""The package's layout: concept folders whose imports run one way, and a small top level."""

from __future__ import annotations

import ast
from pathlib import Path

import gometal_keras

PACKAGE = Path(gometal_keras.__file__).parent
#: The concept folders, lowest first: a module may import its own folder and those above it.
LAYERS = ("core", "model", "engines", "data", "vision", "planning", "training", "shipping",
          "reporting", "bench", "cli")


def imports(path: Path) -> list[tuple[int, str]]:
    """Every `gometal_keras` module `path` imports (type-checking and function-level ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gometal_keras" or node.module.startswith("gometal_keras."):
                if node.module != "gometal_keras":  # the root imports nothing eagerly
                    found.append((node.lineno, node.module))  # the package runs first
                for alias in node.names:  # `from package import module` names the module too
                    sub = f"{node.module}.{alias.name}"
                    where = PACKAGE.parent.joinpath(*sub.split("."))
                    if where.with_suffix(".py").is_file() or where.is_dir():
                        found.append((node.lineno, sub))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names
                      if a.name.startswith("gometal_keras.")]
    return found


def test_every_module_lives_in_a_known_concept_folder_or_is_one_of_few_top_level_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    folders = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert set(folders) == set(LAYERS), folders


def test_imports_run_one_way_down_the_layers():
    rank = {name: i for i, name in enumerate(LAYERS)}
    back = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:  # the top level (the public face) may import anything
            continue
        for line, module in imports(path):
            other = [*module.split("."), ""][1]  # "" for the package itself
            if rank.get(other, -1) > rank[parts[0]]:
                back.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    assert not back, "imports that run back up the layers:\n" + "\n".join(back)


def test_no_module_imports_the_examples():
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, module in imports(path):
            assert not module.startswith("gometal_keras.examples"), f"{path}:{line}"
    assert not (PACKAGE / "examples").exists()


def test_no_import_cycle_between_modules():
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("gometal_keras", *path.relative_to(PACKAGE).with_suffix("").parts))
        modules[name.removesuffix(".__init__")] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for _, module in imports(path):
            graph[name].add(module if module in modules else module.rsplit(".", 1)[0])
    done, on_path = set(), []

    def visit(name: str) -> None:
        on_path.append(name)
        for other in sorted(graph[name] & modules.keys()):
            assert other not in on_path or other == name, " -> ".join(
                [*on_path[on_path.index(other):], other])
            if other not in done and other != name:
                visit(other)
        on_path.pop()
        done.add(name)

    for name in sorted(modules):
        if name not in done:
            visit(name)
