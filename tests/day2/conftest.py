"""Fixtures for the day-2 tests; helpers live in day2_support.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from day2_support import java_tools, need

JAVA_SOURCE = Path(__file__).parent / "java" / "GrpcpkiTlsClient.java"


@pytest.fixture(scope="session")
def jsse_client(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """argv prefix that runs the compiled JSSE client (compiled once per session into a temp dir)."""
    javac, java = java_tools()
    need(javac, "javac not found (Debian: apt-get install default-jdk-headless)")
    assert javac is not None and java is not None
    classes = tmp_path_factory.mktemp("jsse-classes")
    compiled = subprocess.run([javac, "-d", str(classes), str(JAVA_SOURCE)], capture_output=True, text=True, timeout=120)
    assert compiled.returncode == 0, compiled.stderr
    return [java, "-cp", str(classes), "GrpcpkiTlsClient"]
