"""The broken-material world for the diagnosis scenarios, and real `grpcpki serve` processes.

Everything runs through ``python -m grpcpki`` (the entry point users run) on 127.0.0.1 with
port 0. Certificates come from the engine (``CA.create`` / ``issue`` with ``now=`` for time
travel, ``Pki.init`` for a PKI with an intermediate) and from tests/badcerts.py for what the
engine refuses to make (CN-only, wrong EKU, a leaf signed by a non-CA).

A uniquely named module, not a conftest (see tests/greeter/greeter_support.py for why).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import badcerts as b
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from grpcpki.engine import CA, Pki, Role

TIMEOUT = 30
NOW = datetime.now(UTC)


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("GRPCPKI_", "GRPC_"))}
    # grpc's I-level handshake lines are what serve rewrites: keep the default verbosity.
    out.update({"NO_COLOR": "1", "COLUMNS": "400", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    return out


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        """stdout + stderr on one line: rich may wrap long sentences."""
        return " ".join((self.stdout + " " + self.stderr).split())

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def run_many(*commands: Sequence[str], cwd: Path | None = None) -> list[Run]:
    """Run several ``python -m grpcpki ...`` commands at once (two cores: halve the wall time)."""
    procs = [
        (
            tuple(args),
            subprocess.Popen(
                [sys.executable, "-m", "grpcpki", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                env=env(),
                cwd=cwd,
            ),
        )
        for args in commands
    ]
    runs = []
    for args, proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        runs.append(Run(args, proc.returncode, stdout, stderr))
    return runs


@dataclass
class Served:
    """A running ``grpcpki serve --json``: its port, and its stderr as it arrives."""

    name: str
    proc: subprocess.Popen[str]
    port: int = 0
    _lines: list[str] = field(default_factory=list)

    def stderr(self) -> str:
        return " ".join("".join(self._lines).split())

    def wait_for(self, fragment: str, timeout: float = 5.0) -> str:
        """The server's stderr once it contains ``fragment`` (log lines arrive asynchronously)."""
        deadline = time.monotonic() + timeout
        while fragment not in self.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.stderr()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_servers(specs: dict[str, list[str]]) -> dict[str, Served]:
    """Start every ``serve ARGS`` at once and wait for each JSON 'listening' line."""
    servers: dict[str, Served] = {}
    for name, args in specs.items():
        proc = subprocess.Popen(
            [sys.executable, "-m", "grpcpki", "serve", "--listen", "127.0.0.1:0", "--json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env(),
        )
        served = Served(name, proc)

        def pump(proc: subprocess.Popen[str] = proc, lines: list[str] = served._lines) -> None:
            assert proc.stderr is not None
            lines.extend(proc.stderr)  # appends line by line as they arrive

        threading.Thread(target=pump, daemon=True).start()
        servers[name] = served
    deadline = time.monotonic() + TIMEOUT
    for served in servers.values():
        assert served.proc.stdout is not None
        line = served.proc.stdout.readline()
        if not line.strip():
            served.proc.wait(max(0.1, deadline - time.monotonic()))
            raise AssertionError(f"serve {served.name} did not start: {served.stderr()}")
        served.port = int(json.loads(line)["port"])
    return servers


def free_port() -> int:
    """A port nothing listens on (free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_material(ca: CA) -> b.Material:
    """An engine CA as a badcerts issuer, to sign what the engine refuses to make."""
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    key = serialization.load_pem_private_key(ca.private_key_pem(None), password=None)
    return b.Material(cert, key)  # type: ignore[arg-type]


@dataclass(frozen=True)
class World:
    """PEM files in one directory: NAME.crt (chain) and NAME.key, ca.crt, other-ca.crt, and a
    PKI directory ``ipki`` with an intermediate CA (server ``localhost``, client ``web``)."""

    dir: Path

    def cert(self, name: str) -> str:
        return str(self.dir / f"{name}.crt")

    def key(self, name: str) -> str:
        return str(self.dir / f"{name}.key")

    @property
    def ca(self) -> str:
        return str(self.dir / "ca.crt")

    @property
    def other_ca(self) -> str:
        return str(self.dir / "other-ca.crt")

    @property
    def ipki(self) -> str:
        return str(self.dir / "ipki")

    def pair(self, name: str) -> list[str]:
        return ["--cert", self.cert(name), "--key", self.key(name)]

    def client(self, name: str, ca: str | None = None) -> list[str]:
        return [*self.pair(name), "--ca", ca or self.ca]

    def server(self, name: str) -> list[str]:
        return [*self.pair(name), "--ca", self.ca]


def build_world(directory: Path) -> World:
    world = World(directory)
    ca = CA.create("Diag CA")
    other = CA.create("Other CA")
    issuer = _as_material(ca)
    ago, ahead = NOW - timedelta(days=10), NOW + timedelta(days=10)
    spiffe = "spiffe://example.org/web"
    not_a_ca = b.make_leaf(issuer, "not-a-ca", sans=["DNS:not-a-ca.example"], eku=[b.SERVER_AUTH])
    engine_leaves = {
        "server": ca.issue(Role.SERVER, "localhost"),  # DNS:localhost, IP:127.0.0.1, IP:::1
        "client": ca.issue(Role.CLIENT, "web", sans=[spiffe]),
        "intruder": ca.issue(Role.CLIENT, "intruder", sans=["spiffe://example.org/intruder"]),
        "rogue": other.issue(Role.CLIENT, "rogue", sans=["spiffe://example.org/rogue"]),
        "server-expired": ca.issue(Role.SERVER, "localhost", days=1, now=ago),
        "server-future": ca.issue(Role.SERVER, "localhost", now=ahead),
        "client-expired": ca.issue(Role.CLIENT, "web", sans=[spiffe], days=1, now=ago),
        "client-future": ca.issue(Role.CLIENT, "web", sans=[spiffe], now=ahead),
    }
    for name, leaf in engine_leaves.items():
        _write(directory, name, leaf.chain_pem, leaf.key_pem)
    bad = {
        # docs/failures.md#hostname-mismatch: IP and DNS SANs are not interchangeable.
        "server-dns-only": b.make_leaf(issuer, "localhost", sans=["DNS:localhost"], eku=[b.SERVER_AUTH]),
        "server-ip-only": b.make_leaf(issuer, "ip-only", sans=["IP:127.0.0.1"], eku=[b.SERVER_AUTH]),
        # f / f2: no SAN at all, CN=localhost.
        "server-cn-only": b.make_leaf(issuer, "localhost", sans=None, eku=[b.SERVER_AUTH]),
        # j / k: EKU of the other role.
        "server-client-eku": b.make_leaf(issuer, "localhost", eku=[b.CLIENT_AUTH]),
        "client-server-eku": b.make_leaf(issuer, "web", sans=[f"URI:{spiffe}"], eku=[b.SERVER_AUTH]),
    }
    for name, material in bad.items():
        _write(directory, name, material.cert_pem, material.key_pem)
    # o3: a leaf signed by a CA:FALSE certificate that chains to the trusted root, sent as intermediate.
    signed_by_leaf = b.make_leaf(not_a_ca, "localhost", eku=[b.SERVER_AUTH])
    _write(directory, "server-non-ca-issuer", b.pem(signed_by_leaf, not_a_ca), signed_by_leaf.key_pem)
    (directory / "ca.crt").write_bytes(ca.root_pem)
    (directory / "other-ca.crt").write_bytes(other.root_pem)
    # p: a PKI with an intermediate; its server will be started with cert.pem (leaf only).
    pki = Pki.init(directory / "ipki", name="Inter CA", intermediate=True)
    pki.issue(Role.SERVER, "localhost")
    pki.issue(Role.CLIENT, "web", sans=[spiffe])
    return world


def _write(directory: Path, name: str, chain_pem: bytes, key_pem: bytes) -> None:
    (directory / f"{name}.crt").write_bytes(chain_pem)
    key = directory / f"{name}.key"
    key.write_bytes(key_pem)
    key.chmod(0o600)
