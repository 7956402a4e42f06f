"""Shared by the interop tests (Node grpc-js, Go crypto/tls): material made with the real CLI,
`grpcpki serve` in the background, `grpcpki greet --json`, and the cache outside the checkout.

A uniquely named module (not ``conftest``) so ``from interop_support import ...`` means this file;
tests/interop/conftest.py re-exports the fixtures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from support import run_grpcpki

SPIFFE_ID = "spiffe://example.org/web"
TIMEOUT = 20  # seconds, for any one subprocess step


def cache_root() -> Path:
    """Where interop tests keep what they install or build: ~/.cache/grpcpki-tests, not the checkout."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grpcpki-tests"


# --- background processes ----------------------------------------------------------------------


class Background:
    """A subprocess whose stdout and stderr lines are collected by threads, so tests can wait
    for a line without blocking on a pipe. ``stop()`` sends SIGTERM, then kills."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: Any, sink: list[str]) -> None:
        for line in stream:
            with self._changed:
                sink.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, found: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
        """Wait until ``found()`` is truthy (it is re-evaluated as lines arrive) and return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = found()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not any(t.is_alive() for t in self._threads)):
                    raise AssertionError(f"{what}: not seen (exit {self.proc.poll()})\n{self.describe()}")
                self._changed.wait(min(remaining, 0.5))

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in list(self.out) if line.startswith("{")]

    def stderr(self) -> str:
        return "".join(self.err)

    def describe(self) -> str:
        return f"$ {' '.join(self.argv)}\nstdout:\n{''.join(self.out)}stderr:\n{self.stderr()}"

    def stop(self, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for thread in self._threads:
                thread.join(5)
        return code


def start_server(argv: list[str], env: dict[str, str], what: str) -> tuple[Background, dict[str, Any]]:
    """Start a server that prints a JSON line with its "port" first; return it and that line."""
    server = Background(argv, env)
    try:
        announce = server.wait_for(server.json_lines, f"{what}'s JSON start line")[0]
        assert "port" in announce, server.describe()
    except BaseException:
        server.stop()
        raise
    return server, announce


def server_env() -> dict[str, str]:
    """Like support.run_grpcpki's environment; grpc's own log lines stay on (serve rewrites them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRPCPKI_") and k not in ("GRPC_VERBOSITY", "GRPC_TRACE")}
    env.update({"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    return env


# --- material made with the CLI ----------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    dir: Path
    intermediate: bool

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    def chain(self, name: str) -> Path:
        return self.dir / "certs" / name / "chain.pem"

    def leaf(self, name: str) -> Path:
        return self.dir / "certs" / name / "cert.pem"

    def key(self, name: str) -> Path:
        return self.dir / "certs" / name / "key.pem"

    def issuer_cn(self, name: str) -> str:
        """CN of the CA that signed NAME: the intermediate with --intermediate, else the root."""
        leaf = x509.load_pem_x509_certificates(self.chain(name).read_bytes())[0]
        return str(leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)

    def cli(self, *args: str, timeout: float = TIMEOUT) -> Any:
        return run_grpcpki("--pki", str(self.dir), *args, timeout=timeout)


def make_pki(directory: Path, *init_args: str, client: bool = True) -> Pki:
    pki = Pki(directory, "--intermediate" in init_args)
    steps = [("init-ca", *init_args), ("issue", "server", "localhost")]
    if client:
        steps.append(("issue", "client", "web", "--spiffe-id", SPIFFE_ID))
    for step in steps:
        result = pki.cli(*step)
        assert result.code == 0, f"grpcpki {' '.join(step)}: {result.output}"
    return pki


@pytest.fixture(scope="module", params=["root-ca", "intermediate-ca"])
def pki(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """The PKI every test runs against: a root CA alone, then `init-ca --intermediate`."""
    init_args = ("--intermediate",) if request.param == "intermediate-ca" else ()
    pki = make_pki(tmp_path_factory.mktemp(f"pki-{request.param}"), *init_args)
    chains = {name: len(x509.load_pem_x509_certificates(pki.chain(name).read_bytes())) for name in ("localhost", "web")}
    assert chains == ({"localhost": 2, "web": 2} if pki.intermediate else {"localhost": 1, "web": 1})
    return pki


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """An unrelated CA (with a server certificate of its own, for the SIGTERM tests)."""
    return make_pki(tmp_path_factory.mktemp("pki-other"), "--name", "Other CA", client=False)


# --- grpcpki's own side ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpcpki_serve(pki: Pki) -> Iterator[tuple[Background, int]]:
    """`grpcpki serve --name localhost --listen 127.0.0.1:0 --json` (mTLS) and its port."""
    server, announce = start_server(
        [sys.executable, "-m", "grpcpki", "--pki", str(pki.dir), "serve", "--name", "localhost",
         "--listen", "127.0.0.1:0", "--json", "--log-calls"],  # every call logged: tests look for theirs
        server_env(),
        "grpcpki serve",
    )
    try:
        assert announce["mode"] == "mtls", announce
        yield server, int(announce["port"])
    finally:
        server.stop()


def greet_json(pki: Pki, *args: str) -> tuple[int, dict[str, Any], str]:
    """`grpcpki greet --json ARGS`: (exit code, the first call's JSON line, all output)."""
    result = pki.cli("greet", "--json", "--timeout", "5s", *args)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    calls = [line for line in lines if not line.get("summary")]
    assert calls, result.output
    return result.code, calls[0], result.output
