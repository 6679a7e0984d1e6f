"""The code stays ruff-clean, strictly typed, free of import cycles and of overlong files:
checked with every test run."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.skipif(
    shutil.which("ruff", path=str(Path(sys.executable).parent)) is None,
    reason="ruff is not installed (pip install -e '.[test]')",
)
def test_ruff() -> None:
    ruff = str(Path(sys.executable).parent / "ruff")
    lint = _run(ruff, "check", "src", "tests")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    formatting = _run(ruff, "format", "--check", "src", "tests")
    assert formatting.returncode == 0, formatting.stdout + formatting.stderr


def test_mypy_strict() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


# ── No import cycle, and no file too long ────────────────────────────────────────────────────

SOURCE = ROOT / "src"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_at_load(path: Path, name: str, modules: set[str]) -> set[str]:
    """The deskside modules ``path`` imports when it is loaded: top-level imports (in ``if`` and
    ``try`` blocks too), not those under ``TYPE_CHECKING`` nor inside functions."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package[: len(package) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    found.add(submodule if submodule in modules else base)

    visit(ast.parse(path.read_text(encoding="utf-8")).body)
    return found & modules


def test_no_module_imports_itself_back_when_loaded() -> None:
    """A cycle of imports at load time makes a module's names depend on which one was imported
    first: none may exist (a cycle broken only inside a function is the function's business)."""
    paths = {_module_name(path): path for path in SOURCE.rglob("*.py")}
    graph = {name: _imports_at_load(path, name, set(paths)) for name, path in paths.items()}
    cycles = []
    for start in sorted(graph):
        trail, seen = [(start, [start])], set()
        while trail:
            node, route = trail.pop()
            for target in sorted(graph[node]):
                if target == start:
                    cycles.append(" → ".join([*route, start]))
                elif target not in seen:
                    seen.add(target)
                    trail.append((target, [*route, target]))
    assert not cycles, cycles[:5]


def test_no_source_file_is_over_500_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted(SOURCE.rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long
