"""The package's layout: its subpackages and top-level modules import one another without a cycle, so each
stage can be read, tested and changed from the basics up."""

from __future__ import annotations

import ast
from collections import defaultdict

from tests.conftest import REPO

PACKAGE = REPO / "src" / "comcl"


def unit(module: str) -> str:
    """The part of the package a module belongs to: ``comcl.patches`` for ``comcl.patches.store``, itself for a
    top-level module such as ``comcl.images``."""
    return ".".join(module.split(".")[:2])


def imports_between_units() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] if node.module != "comcl" else [f"comcl.{alias.name}" for alias in node.names]
            for name in names:
                if name.startswith("comcl.") and unit(name) != unit(module):
                    graph[unit(module)].add(unit(name))
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph``, as the path that closes it; empty when there is none."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str]:
        state[node] = "open"
        for after in sorted(graph.get(node, ())):
            if state.get(after) == "open":
                return [*path[path.index(after) :], after] if after in path else [node, after]
            if after not in state and (found := visit(after, [*path, after])):
                return found
        state[node] = "done"
        return []

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return []


def test_the_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"c"}}) == []


def test_no_import_cycle_between_the_parts_of_the_package():
    graph = imports_between_units()
    assert graph["comcl.report"] >= {"comcl.finetune", "comcl.pretrain"}  # the graph is read
    assert cycle(graph) == []


def test_the_shared_basics_import_no_stage():
    graph = imports_between_units()
    stages = {f"comcl.{path.name}" for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    for basic in ("comcl.levels", "comcl.images", "comcl.fov", "comcl.augment"):
        assert not graph.get(basic, set()) & stages, basic


def test_the_readme_layout_names_every_folder_of_the_repository_and_every_part_of_the_package():
    text = (REPO / "README.md").read_text()
    layout = text[text.index("## Repository layout") :].split("```")[1]
    folders = [f"{path.name}/" for path in REPO.iterdir() if path.is_dir() and not path.name.startswith(".")]
    parts = [
        f"{path.name}/" if path.is_dir() else path.name
        for path in PACKAGE.iterdir()
        if path.name not in ("__init__.py", "py.typed", "__pycache__")
    ]
    missing = [name for name in folders + parts if name not in layout and name not in ("results/", ".venv/")]
    assert not missing, f"the README's repository layout does not name {missing}"
