"""Helpers and fixtures for the CA service tests: a real `grpcpki ca-server` on 127.0.0.1 (ports from
the OS) in front of a PKI made by the real CLI. A unique module name (not conftest) so tests can import it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from grpcpki.engine.pki import Pki
from grpcpki.engine.profiles import Role
from support import Result, cli_env, run_grpcpki


@dataclass
class CaService:
    """One ca-server process."""

    proc: subprocess.Popen[str]
    mtls: str  # 127.0.0.1:PORT, Renew and all
    enroll: str  # 127.0.0.1:PORT, Enroll without a client certificate
    replica: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.stdout:
                self.proc.stdout.close()

    def stderr(self) -> str:
        return self.log.read_text()


@dataclass
class Setup:
    tmp: Path
    pki: Path
    start: Callable[..., CaService]

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return run_grpcpki("--pki", str(self.pki), *args, cwd=self.tmp, env=env)

    def token(self, name: str, *args: str, kind: str = "client") -> str:
        result = self.cli("token", "create", name, "--kind", kind, *args)
        assert result.code == 0, result.output
        return result.stdout.strip()

    def enroll(self, service: CaService, token: str, out: str, *args: str) -> Result:
        return run_grpcpki("enroll", "--ca-server", service.enroll, "--ca-bundle", str(self.pki / "ca.crt"),
                           "--out", str(self.tmp / out), *args, cwd=self.tmp, env={"GRPCPKI_ENROLL_TOKEN": token})

    def daemon(self, service: CaService, out: str, *args: str) -> Result:
        return run_grpcpki("renew", "--daemon", "--once", "--ca-server", service.mtls, "--dir", str(self.tmp / out),
                           *args, cwd=self.tmp)


def start_ca_server(
    tmp: Path, pki: Path, *args: str, replica: str = "r1", env: dict[str, str] | None = None
) -> CaService:
    log = tmp / f"ca-server-{replica}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpcpki", "--pki", str(pki), "ca-server", "--name", "localhost",
         "--listen", "127.0.0.1:0", "--enroll-listen", "127.0.0.1:0", "--json", "--replica-id", replica,
         "--grace", "0", *args],
        cwd=tmp, env=cli_env(env), stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=10)
        pytest.fail(f"ca-server did not start: {log.read_text()}")
    event = json.loads(line)
    return CaService(proc, event["mtls_address"], event["enroll_address"], replica, log)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """A PKI with a CA and the service's own certificate (localhost), and a way to start replicas."""
    pki = tmp_path / "pki"
    # In-process: what these tests prove is the service and its clients, not `init-ca` (two
    # subprocesses per test were most of this directory's run time).
    Pki.init(pki, name="Service CA").issue(Role.SERVER, "localhost")
    started: list[CaService] = []

    def start(*args: str, replica: str = "r1", pki_dir: Path = pki) -> CaService:
        service = start_ca_server(tmp_path, pki_dir, *args, replica=replica)
        started.append(service)
        return service

    yield Setup(tmp_path, pki, start)
    for service in started:
        if service.proc.poll() is None:
            service.stop(signal.SIGKILL)


@pytest.fixture
def service(setup: Setup) -> CaService:
    return setup.start()


def file_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def stop_all(services: list[CaService]) -> None:
    """SIGKILL every replica still running: a module's fleet, at teardown (before its database goes)."""
    for service in services:
        if service.proc.poll() is None:
            service.stop(signal.SIGKILL)
