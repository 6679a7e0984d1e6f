"""The code stays ruff-clean and strictly typed: checked with every test run."""

from __future__ import annotations

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
