"""Shared test helpers: run the real `grpcpki` entry point, assert clean errors, list files.

A uniquely named module (not ``conftest``) so ``from support import ...`` means this file from
any test directory, whatever conftest.py files sit nearer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

# property -> hypothesis cases run (tests/hostile); summed over xdist workers by tests/conftest.py.
HYPOTHESIS_CASES: Counter[str] = Counter()

OPENSSL = shutil.which("openssl")
requires_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl CLI not installed")


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a test runs grpcpki in: none of the user's GRPCPKI_* or GRPC_VERBOSITY."""
    # No LINES either: pytest-xdist's workers export LINES=24, and rich would take it over the
    # size of the pseudo-terminal a test gives grpcpki.
    dropped = {"GRPC_VERBOSITY", "LINES"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPCPKI_") and k not in dropped}
    # A wide terminal keeps rich from wrapping the lines tests look for.
    env.update({"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def run_grpcpki(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60,
    input: str | None = None,
) -> Result:
    """Run `python -m grpcpki ARGS` in a subprocess, as a user would, with no TTY."""
    proc = subprocess.run(
        [sys.executable, "-m", "grpcpki", *args],
        cwd=cwd, env=cli_env(env), capture_output=True, text=True, timeout=timeout,
        input=input if input is not None else "",
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_clean_error(result: Result, *fragments: str, code: int = 1) -> None:
    """One clear line on stderr, the expected exit code, and no traceback."""
    assert result.code == code, result.output
    assert "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    if code == 1:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def tree(path: Path) -> list[str]:
    """Every file under path, relative, sorted: to assert nothing was written."""
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def threads_started_since(before: set[threading.Thread], prefix: str) -> list[threading.Thread]:
    """The live threads named ``prefix...`` that were not in ``before`` (a server's handler pool)."""
    return [t for t in set(threading.enumerate()) - before if t.name.startswith(prefix)]


def assert_threads_end(threads: list[threading.Thread]) -> None:
    """Each thread ends within 10 s: a server's stop() shut down the pool it gave grpc."""
    for thread in threads:
        thread.join(timeout=10)
        assert not thread.is_alive(), thread.name
