"""The shape of the code: docs/architecture.md names every module, sizes stay small, imports never cycle.

Imports are read from the source (every `import` statement, at module level or inside a
function, except under `if TYPE_CHECKING:`), so a cycle that only closes at call time
fails here too.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nnpm", "registry_server")
CHECKED_FOR_SIZE = ("nnpm", "registry_server", "bench", "examples", "tests")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
SERVER_ONLY = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "jinja2", "markdown_it", "swagger_ui_bundle")


def python_files(*tops: str) -> Iterator[Path]:
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts) if path.is_relative_to(ROOT) else [path.stem]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(path: Path) -> Iterator[tuple[str, str | None]]:
    """(module, imported attribute or None) for every import executed at import or call time."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]

    def walk(node: ast.AST) -> Iterator[tuple[str, str | None]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from walk(other)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, None
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for alias in child.names:
                    yield base, alias.name
            yield from walk(child)

    yield from walk(tree)


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in python_files(*PACKAGES)}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for target, attr in imported_names(path):
            if attr and f"{target}.{attr}" in modules:
                graph[name].add(f"{target}.{attr}")
            elif target in modules:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_at_import_or_call_time() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_call_time_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e"]]


def test_imports_inside_functions_are_edges(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import skipped\n"
                    "def f():\n    from nnpm.format import spec\n    import nnpm.errors\n")
    assert set(imported_names(path)) == {("typing", "TYPE_CHECKING"), ("nnpm.format", "spec"), ("nnpm.errors", None)}


def test_every_module_is_named_in_docs_architecture() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [str(p.relative_to(ROOT)) for p in python_files(*PACKAGES) if f"`{p.relative_to(ROOT)}`" not in text]
    assert missing == [], "add these to docs/architecture.md: " + ", ".join(missing)


def test_docs_architecture_names_no_module_that_is_gone() -> None:
    import re

    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:nnpm|registry_server)/[\w/]+\.py)`", text))
    assert sorted(p for p in named if not (ROOT / p).is_file()) == []


def test_no_module_over_400_lines_and_no_function_over_60() -> None:
    too_long = []
    for path in python_files(*CHECKED_FOR_SIZE):
        source = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        if source.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{rel}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{rel}:{node.lineno} {node.name}() is {length} lines")
    assert too_long == []


# Spelled in two pieces so that this file, too, holds no reference to them.
OUTSIDE = ("DESIGN" + ".md", ".." + "/shared")


def test_nothing_refers_to_a_design_file_outside_the_repository() -> None:
    offenders = []
    for path in [*python_files(*CHECKED_FOR_SIZE), *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        if any(name in text for name in OUTSIDE):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_services_import_no_http_framework() -> None:
    for path in python_files("registry_server/services"):
        for target, _ in imported_names(path):
            assert target.split(".")[0] not in ("fastapi", "starlette"), f"{path.name} imports {target}"


def test_the_client_imports_no_server_package() -> None:
    """nnpm/ never imports the server stack itself; `nnpm registry` goes through registry_server/options.py."""
    for path in python_files("nnpm"):
        for target, _ in imported_names(path):
            assert target.split(".")[0] not in SERVER_ONLY, f"{path.relative_to(ROOT)} imports {target}"


# A `sitecustomize` that makes the server-only packages unimportable, as on a client-only install.
_BLOCK = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Block())
"""


def _client_only(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(_BLOCK.format(names=set(SERVER_ONLY)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNPM_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    env["NNPM_HOME"] = str(tmp_path / "home")
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_every_client_module_imports_without_the_server_extra(tmp_path: Path) -> None:
    names = [module_name(p) for p in python_files("nnpm") if p.name != "__main__.py"]
    proc = _client_only(tmp_path, "-c", "import importlib\n"
                        f"for name in {names!r}: importlib.import_module(name)\n"
                        f"print('imported', {len(names)})\n"
                        "try:\n    import fastapi\nexcept ModuleNotFoundError:\n    print('fastapi blocked')\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == [f"imported {len(names)}", "fastapi blocked"], proc.stdout


@pytest.mark.parametrize("command", [["registry", "serve"], ["registry", "user", "add", "alice"]])
def test_registry_commands_without_the_server_extra_say_what_to_install(tmp_path: Path, command: list[str]) -> None:
    proc = _client_only(tmp_path, "-m", "nnpm", *command)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'nnpm[server]'" in lines[0], proc.stderr


def test_packaging_keeps_the_server_stack_in_an_extra() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"]).lower()
    assert not [name for name in ("fastapi", "uvicorn", "sqlalchemy", "alembic", "jinja2") if name in base]
    server = " ".join(project["optional-dependencies"]["server"]).lower()
    assert all(name in server for name in ("fastapi", "uvicorn", "sqlalchemy", "alembic", "jinja2"))
