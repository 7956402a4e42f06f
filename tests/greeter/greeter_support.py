"""Helpers and fixtures for the Greeter tests: certificate files from the in-memory engine, and
`grpcpki serve` run as a real subprocess through ``python -m grpcpki`` (the entry point users run).

A uniquely named module rather than a second ``conftest`` so that ``from conftest import ...``
in other test folders keeps meaning tests/conftest.py; tests/greeter/conftest.py re-exports
the fixtures.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from grpcpki.engine import CA, Role, cert_info
from support import cli_env

TIMEOUT = 20


@dataclass(frozen=True)
class Files:
    """One directory of PEM files: <name>.crt (chain), <name>.key, plus ca.crt and other-ca.crt."""

    dir: Path
    serials: dict[str, str]

    def cert(self, name: str) -> Path:
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.dir / f"{name}.key"

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def other_ca(self) -> Path:
        return self.dir / "other-ca.crt"

    def server_args(self, name: str = "server") -> list[str]:
        return ["--cert", str(self.cert(name)), "--key", str(self.key(name)), "--ca", str(self.ca)]

    def client_args(self, name: str = "client", ca: Path | None = None) -> list[str]:
        return ["--cert", str(self.cert(name)), "--key", str(self.key(name)), "--ca", str(ca or self.ca)]


def write_leaf(directory: Path, name: str, chain_pem: bytes, key_pem: bytes) -> None:
    (directory / f"{name}.crt").write_bytes(chain_pem)
    key = directory / f"{name}.key"
    key.write_bytes(key_pem)
    key.chmod(0o600)


@pytest.fixture(scope="session")
def ca() -> CA:
    return CA.create("Greeter Test CA")


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory, ca: CA) -> Files:
    directory = tmp_path_factory.mktemp("greeter-pki")
    other = CA.create("Some Other CA")
    leaves = {
        "server": ca.issue(Role.SERVER, "localhost"),
        "server2": ca.issue(Role.SERVER, "localhost"),  # same names, new key: the rotation target
        "otherhost": ca.issue(Role.SERVER, "other.example"),
        "client": ca.issue(Role.CLIENT, "web", sans=["spiffe://example.org/web"]),
        "intruder": ca.issue(Role.CLIENT, "intruder", sans=["spiffe://example.org/intruder"]),
        "rogue": other.issue(Role.CLIENT, "rogue", sans=["spiffe://example.org/rogue"]),
    }
    for name, leaf in leaves.items():
        write_leaf(directory, name, leaf.chain_pem, leaf.key_pem)
    (directory / "ca.crt").write_bytes(ca.root_pem)
    (directory / "other-ca.crt").write_bytes(other.root_pem)
    return Files(directory, {name: leaf.info.serial_hex for name, leaf in leaves.items()})


def run_cli(*args: str, timeout: float = TIMEOUT, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m grpcpki ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "grpcpki", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(),
        cwd=cwd,
    )


@dataclass
class Served:
    """A running ``grpcpki serve``: its announced JSON line and a collector for stderr."""

    proc: subprocess.Popen[str]
    announce: dict[str, object]
    _stderr: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.announce["port"])  # type: ignore[call-overload]

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    def stderr(self) -> str:
        return "".join(self._stderr)

    def stderr_with(self, *fragments: str, timeout: float = TIMEOUT) -> str:
        """stderr (whitespace folded) once it holds every fragment, or as it is after ``timeout``:
        serve writes from grpc's threads and a pump thread collects it, so a line lags the event."""
        deadline = time.monotonic() + timeout
        while True:
            text = " ".join(self.stderr().split())
            if all(f in text for f in fragments) or time.monotonic() > deadline:
                return text
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = TIMEOUT) -> tuple[int, str, str]:
        """Signal, wait, and return (exit code, rest of stdout, all of stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        rest = self.proc.stdout.read() if self.proc.stdout else ""
        if self._reader is not None:
            self._reader.join(5)
        return code, rest, self.stderr()


def start_serve(*args: str, timeout: float = TIMEOUT) -> Served:
    """Start ``python -m grpcpki serve --listen 127.0.0.1:0 --json ARGS`` and wait for its JSON line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpcpki", "serve", "--listen", "127.0.0.1:0", "--json", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    chunks: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            chunks.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    result: list[str] = []
    line_reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    line_reader.start()
    line_reader.join(timeout)
    if not result or not result[0].strip():
        proc.kill()
        proc.wait()
        reader.join(5)
        raise AssertionError(f"serve did not announce itself (exit {proc.returncode}): {''.join(chunks)}")
    return Served(proc=proc, announce=json.loads(result[0]), _stderr=chunks, _reader=reader)


@pytest.fixture
def serve() -> Iterator[type[Served]]:
    """Start servers with ``serve(*args)``; every one is stopped (then killed) at teardown."""
    started: list[Served] = []

    def factory(*args: str) -> Served:
        server = start_serve(*args)
        started.append(server)
        return server

    yield factory  # type: ignore[misc]
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


@pytest.fixture(scope="module")
def mtls_server(files: Files) -> Iterator[Served]:
    """One mTLS server for the whole module, allowing only spiffe://example.org/web."""
    # --log-calls: tests here look for the log line of calls after the first from one identity.
    server = start_serve(*files.server_args(), "--allow", "spiffe://example.org/web", "--log-calls")
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def served_serial(port: int, files: Files, client: str = "client") -> str:
    """Serial of the certificate a new TLS connection to ``port`` is shown (stdlib ssl handshake)."""
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(files.cert(client), files.key(client))
    context.set_alpn_protocols(["h2"])  # grpc servers negotiate HTTP/2 via ALPN
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return cert_info(ssl.DER_cert_to_PEM_cert(der).encode()).serial_hex
