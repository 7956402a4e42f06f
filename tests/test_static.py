"""Static checks as tests: type hints hold (mypy) and no bug-class lint (ruff F/E9/B/UP).

Both tools are pinned in the test extra; configuration lives in pyproject.toml.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run_tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip(module, reason=f"{module} is in the test extra: pip install '.[test]'")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_mypy_is_clean() -> None:
    result = _run_tool("mypy", "grpcpki")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    result = _run_tool("ruff", "check", "grpcpki", "tests", "bench", "protos/generate.py")
    assert result.returncode == 0, result.stdout + result.stderr
