"""The house rules, checked on the source: rooms import only what their docstring allows, roles never
import each other, production code never imports the local stack or the test doubles, no module imports
itself back through others (function-level imports included), no module outgrows 400 lines, and the
README's package map names exactly the rooms on disk."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "orchestrator"
ROLES = ("planners", "workers", "judge")
# What each room of orchestrator/ may import (besides itself and third-party packages).
ALLOWED = {
    "config": set(),
    "untrusted": set(),
    "state": {"config"},
    "git": {"config", "untrusted"},
    "agent": {"config", "untrusted"},
    "queues": {"config", "state"},
    "landing": {"config", "state", "git", "untrusted"},
    "flow": {"config", "state", "git", "agent", "queues", "untrusted"},
    "recovery": {"config", "state", "git", "queues", "flow", "landing"},
    "cli": {"config", "state", "git", "agent", "queues", "flow", "landing", "recovery", "untrusted"},
    "testing": {"config", "state", "queues"},
    "local": {"config", "state", "git", "agent", "queues", "flow", "landing", "cli", "untrusted", "testing"},
}
# The only commands that may reach into the local room, and only inside their own function.
LOCAL_COMMANDS = {"up", "demo", "sample_repo"}


def modules(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def imports(path: Path) -> list[tuple[str, str | None]]:
    """(module imported, name of the enclosing top-level function or None) for every import in `path`."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for top in tree.body:
        function = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
        for node in ast.walk(top):
            if isinstance(node, ast.Import):
                found += [(alias.name, function) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((node.module, function))
    return found


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "orchestrator" and len(parts) > 1 else None


@pytest.mark.parametrize("path", modules("orchestrator"), ids=lambda p: str(p.relative_to(ROOT)))
def test_rooms_import_only_what_they_may(path: Path) -> None:
    room = path.relative_to(CORE).parts[0] if len(path.relative_to(CORE).parts) > 1 else None
    for module, function in imports(path):
        assert module.split(".")[0] not in ROLES, f"{path.name} imports the role {module}: name tasks by string"
        target = room_of(module)
        if room is None or target is None or target == room:
            continue
        if target == "local" and room == "cli":
            assert function in LOCAL_COMMANDS, f"cli imports {module} outside the demo, up and sample-repo commands"
            continue
        assert target in ALLOWED[room], f"orchestrator/{room} may not import orchestrator.{target} ({module})"


@pytest.mark.parametrize("role", ROLES)
def test_roles_import_only_the_core(role: str) -> None:
    for path in modules(role):
        for module, _function in imports(path):
            top = module.split(".")[0]
            assert top == role or top not in ROLES, f"{path.relative_to(ROOT)} imports another role: {module}"
            assert room_of(module) not in {"local", "testing"}, f"{path.relative_to(ROOT)} imports {module}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Cadre's modules and, for each, the Cadre modules it imports anywhere in it: at the top, inside a
    function, under `if TYPE_CHECKING`. `from package import name` counts as importing `package.name` when
    that is a module."""
    paths = modules("orchestrator", *ROLES)
    names = {module_name(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        me, found = module_name(path), set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
        graph[me] = {name for name in found if name in names and name != me}
    return graph


def cycles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return groups


def test_no_import_cycle_anywhere_function_level_imports_included() -> None:
    graph = import_graph()
    assert len(graph) > 80 and graph["workers.attempt"], "the graph sees Cadre's modules and their imports"
    assert not cycles_in(graph), f"modules that import each other (break the cycle): {cycles_in(graph)}"


def test_the_cycle_finder_finds_a_cycle_hidden_in_a_function() -> None:
    """The check above cannot pass vacuously: a two-module cycle closed by a function-level import is found."""
    graph = import_graph()
    graph["orchestrator.landing.rescue"] = graph["orchestrator.landing.rescue"] | {"workers.attempt"}
    assert ["orchestrator.landing.rescue", "workers.attempt"] in [
        [m for m in group if m in {"orchestrator.landing.rescue", "workers.attempt"}] for group in cycles_in(graph)]
    assert cycles_in({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_gitpython_pygit2_and_litellm_each_have_one_door() -> None:
    gitpython = {p for p in modules("orchestrator", *ROLES) for m, _ in imports(p) if m.split(".")[0] == "git"}
    pygit2 = {p for p in modules("orchestrator", *ROLES) for m, _ in imports(p) if m.split(".")[0] == "pygit2"}
    assert pygit2 == {CORE / "git" / "objects.py"}
    litellm = {p for p in modules("orchestrator", *ROLES) for m, _ in imports(p) if m.split(".")[0] == "litellm"}
    assert gitpython == {CORE / "git" / "runner.py"}
    assert litellm == {CORE / "agent" / "model_access.py"}


def test_no_module_over_400_lines() -> None:
    long = [f"{p.relative_to(ROOT)} ({n})" for p in modules("orchestrator", *ROLES, "tests", "bench")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    assert not long, f"split these by responsibility: {long}"


def test_every_room_says_what_it_holds() -> None:
    for room in ALLOWED:
        doc = ast.get_docstring(ast.parse((CORE / room / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"orchestrator/{room}/__init__.py must say what it holds and may import"


def test_readme_package_map_matches_the_tree() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    mapped = set(re.findall(r"orchestrator/(\w+)/", section))
    on_disk = {p.name for p in CORE.iterdir() if (p / "__init__.py").is_file()}
    assert mapped == on_disk, f"README map {sorted(mapped)} != rooms on disk {sorted(on_disk)}"
    for path in re.findall(r"`((?:orchestrator|planners|workers|judge)/[\w/]+\.py)`", section):
        assert (ROOT / path).is_file(), f"the README names {path}, which does not exist"
