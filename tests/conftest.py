"""Fixtures shared by every test directory; helpers live in support.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from support import Result, run_grpcpki


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Result]:
    """`cli("issue", "server", "x")` runs grpcpki against tmp_path/pki."""
    pki = tmp_path / "pki"

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
        return run_grpcpki("--pki", str(pki), *args, cwd=tmp_path, env=env, input=input)

    return run
